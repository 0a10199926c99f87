"""Compare evaluated runs: one table with confidence intervals, and paired Wilcoxon tests.

Each run is an evaluation folder (``metrics.json`` + ``predictions.parquet``). Pairs of runs
evaluated on the same images (same split, overlapping image ids) are compared image by image
(:func:`cephalo.evaluate.metrics.paired_wilcoxon`) over the landmarks both runs report.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import DataError
from .metrics import paired_wilcoxon
from .runner import read_metrics

__all__ = ["load_run", "compare_runs", "to_markdown"]


def load_run(run_dir: str | Path) -> dict:
    """``{"name", "dir", "metrics", "image_ids", "landmarks", "errors" (N, K) mm}`` of one run.

    Raises:
        DataError: missing/invalid metrics.json or predictions.parquet.
    """
    import pandas as pd

    run_dir = Path(run_dir)
    m = read_metrics(run_dir)
    p = run_dir / "predictions.parquet"
    try:
        df = pd.read_parquet(p, columns=["image_id", "landmark_name", "error_mm"])
    except FileNotFoundError:
        raise DataError("no predictions.parquet (not an evaluation folder)", p) from None
    except Exception as e:  # noqa: BLE001 - corrupt parquet
        raise DataError(f"cannot read ({type(e).__name__}: {e})".splitlines()[0], p) from None
    wide = df.pivot_table(index="image_id", columns="landmark_name", values="error_mm", aggfunc="first",
                          dropna=False, sort=False)
    return {"name": m.get("name") or run_dir.name, "dir": str(run_dir), "metrics": m,
            "image_ids": [str(i) for i in wide.index], "landmarks": [str(c) for c in wide.columns],
            "errors": wide.to_numpy(dtype=np.float64)}


def _fmt_ci(v, ci, scale=1.0, nd=2) -> str:
    if v is None:
        return "-"
    s = f"{scale * v:.{nd}f}"
    if ci and ci[0] is not None and ci[1] is not None:
        s += f" [{scale * ci[0]:.{nd}f}, {scale * ci[1]:.{nd}f}]"
    return s


def compare_runs(run_dirs: Sequence[str | Path]) -> tuple[list[dict], list[dict]]:
    """Table rows (one per run) and paired tests (one per pair of runs on shared images).

    Returns:
        (rows, pairs). A row: ``run, variant, split, stage, n_images, mre_mm, mre_ci95, sdr_2.0 ...
        (percent, with CIs), human_mre_mm, n_seen``. A pair: ``run_a, run_b, n_images,
        mean_diff_mm, median_diff_mm, statistic, p_value, n_a_better, n_b_better``.

    Raises:
        DataError: a run folder is not an evaluation folder.
    """
    runs = [load_run(d) for d in run_dirs]
    rows = []
    for r in runs:
        m = r["metrics"]
        o = m.get("overall") or {}
        ci = o.get("ci95") or {}
        row = {"run": r["name"], "variant": m.get("variant", ""), "split": m.get("split", ""),
               "stage": m.get("stage", ""), "n_images": o.get("n_images"),
               "mre_mm": o.get("mre_mm"), "mre_ci95": _fmt_ci(o.get("mre_mm"), ci.get("mre_mm"))}
        for t, v in (o.get("sdr") or {}).items():
            row[f"sdr_{t}_pct"] = None if v is None else 100 * v
            row[f"sdr_{t}_ci95"] = _fmt_ci(v, (ci.get("sdr") or {}).get(t), 100, 1)
        hl = m.get("human_limit") or {}
        row["human_mre_mm"] = (hl.get("overall") or {}).get("mre_mm")
        row["n_seen"] = (m.get("leakage") or {}).get("n_seen", 0)
        rows.append(row)
    pairs = []
    for a, b in combinations(runs, 2):
        common_lm = [n for n in a["landmarks"] if n in b["landmarks"]]
        if not common_lm or not set(a["image_ids"]) & set(b["image_ids"]):
            continue
        ea = a["errors"][:, [a["landmarks"].index(n) for n in common_lm]]
        eb = b["errors"][:, [b["landmarks"].index(n) for n in common_lm]]
        res = paired_wilcoxon(ea, eb, a["image_ids"], b["image_ids"])
        if res["n_images"] == 0:
            continue
        pairs.append({"run_a": a["name"], "run_b": b["name"], "n_images": res["n_images"],
                      "n_landmarks": len(common_lm), "mre_a_mm": res["mre_a_mm"], "mre_b_mm": res["mre_b_mm"],
                      "mean_diff_mm": res["mean_diff_mm"], "median_diff_mm": res["median_diff_mm"],
                      "statistic": res["statistic"], "p_value": res["p_value"],
                      "n_a_better": res["n_a_better"], "n_b_better": res["n_b_better"]})
    return rows, pairs


def _cell(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if not np.isfinite(v):
            return "-"
        return f"{v:.3g}" if abs(v) < 1e-2 and v != 0 else f"{v:.2f}"
    return str(v)


def to_markdown(rows: list[dict], pairs: list[dict]) -> str:
    """The comparison as Markdown: a runs table and a paired-test table."""
    cols = ["run", "variant", "split", "n_images", "mre_ci95"] + \
        [c for c in (rows[0] if rows else {}) if c.endswith("_ci95") and c.startswith("sdr_")] + \
        ["human_mre_mm", "n_seen"]
    out = ["## Runs (MRE mm, SDR %; 95 % bootstrap CI over images)", "",
           "| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    out += ["| " + " | ".join(_cell(r.get(c)) for c in cols) + " |" for r in rows]
    out += ["", "## Paired comparisons (per-image MRE, a - b; Wilcoxon signed-rank, two-sided)", ""]
    if pairs:
        pc = ["run_a", "run_b", "n_images", "mre_a_mm", "mre_b_mm", "mean_diff_mm", "p_value", "n_a_better",
              "n_b_better"]
        out += ["| " + " | ".join(pc) + " |", "| " + " | ".join("---" for _ in pc) + " |"]
        out += ["| " + " | ".join(_cell(p.get(c)) for c in pc) + " |" for p in pairs]
    else:
        out.append("No two runs share images.")
    return "\n".join(out) + "\n"
