"""Compare evaluated runs over the same landmarks: figures, paired Wilcoxon tests, provenance check.

Each run is an evaluation folder (``metrics.json`` + ``predictions.parquet``). Runs may score
different landmark sets (a 19-landmark source model zero-shot on a 29-landmark target, a
fine-tuned 29-landmark model), so every run-level figure names the set it is over:

* ``/shared`` - the landmarks common to **all** compared runs (the primary figures: like with
  like), recomputed here from each run's per-image errors, with the bootstrap CI the run itself
  used (``settings.n_boot``, ``settings.confidence_level``, ``settings.bootstrap_seed``);
* ``/all`` - every landmark the run scores (as in its ``metrics.json``).

One naming scheme, used by ``comparison.md``/``.csv``, ``metrics.json["figures"]``, the DVC
summaries and MLflow (:func:`figure_names`): ``n_images``, ``n_landmarks/<set>``,
``mre_mm/<set>`` (+ ``/ci95_lo``, ``/ci95_hi``), ``sdr_<t>mm/<set>`` in **percent** (+ CI),
and the human figures, each over the same set as the model figure beside it:
``human_mre_mm/<set>`` (annotator vs annotator), ``vs_each_mre_mm/<set>`` (the model against
each annotator, pooled: compare with ``human_mre_mm``), ``human_vs_mean_mre_mm/<set>`` (each
annotator against the annotators' mean: compare with ``mre_mm`` when the ground truth is that
mean). Pairs of runs evaluated on the same images are compared image by image
(:func:`cephalo.evaluate.metrics.paired_wilcoxon`) over the landmarks both runs report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from ..provenance import differences
from . import metrics as M
from .leakage import file_sha256
from .results import SUMMARY_KEYS, figure_names, read_metrics, run_figures, set_figures

__all__ = [
    "load_run",
    "compare_runs",
    "to_markdown",
    "run_figures",
    "figure_names",
    "summary_figures",
    "provenance_warnings",
    "SUMMARY_KEYS",
]


def load_run(run_dir: str | Path) -> dict:
    """``{"name", "dir", "metrics", "metrics_sha256", "image_ids", "landmarks", "errors" (N, K) mm}`` of one run.

    Raises:
        DataError: missing/invalid metrics.json or predictions.parquet.
    """
    run_dir = Path(run_dir)
    m = read_metrics(run_dir)
    p = run_dir / "predictions.parquet"
    try:
        df = pd.read_parquet(p, columns=["image_id", "landmark_name", "error_mm"])
    except FileNotFoundError:
        raise DataError("no predictions.parquet (not an evaluation folder)", p) from None
    except Exception as e:  # noqa: BLE001 - corrupt parquet
        raise DataError(f"cannot read ({type(e).__name__}: {e})".splitlines()[0], p) from None
    wide = df.pivot_table(
        index="image_id", columns="landmark_name", values="error_mm", aggfunc="first", dropna=False, sort=False
    )

    return {
        "name": m.get("name") or run_dir.name,
        "dir": str(run_dir),
        "metrics": m,
        "metrics_sha256": file_sha256(run_dir / "metrics.json"),
        "image_ids": [str(i) for i in wide.index],
        "landmarks": [str(c) for c in wide.columns],
        "errors": wide.to_numpy(dtype=np.float64),
    }


def _fmt_ci(v, lo, hi, nd=2) -> str:
    if v is None:
        return "-"
    s = f"{v:.{nd}f}"
    if lo is not None and hi is not None:
        s += f" [{lo:.{nd}f}, {hi:.{nd}f}]"
    return s


def shared_landmarks(runs: Sequence[dict]) -> list[str]:
    """Landmarks every run scores, in the first run's order."""
    if not runs:
        return []
    common = set(runs[0]["landmarks"])
    for r in runs[1:]:
        common &= set(r["landmarks"])
    return [n for n in runs[0]["landmarks"] if n in common]


def provenance_warnings(runs: Sequence[dict]) -> list[str]:
    """Plain-words warnings when the compared runs differ in code or environment (or lack provenance)."""
    d = differences({r["name"]: (r["metrics"].get("provenance") or None) for r in runs})
    out = []
    if d["missing"]:
        out.append(f"no provenance recorded for {', '.join(d['missing'])} (evaluated by an older cephalo)")
    if d["code"]:
        out.append(
            "runs were produced by different code ("
            + ", ".join(d["code"])
            + "): "
            + "; ".join(
                f"{r['name']} {((r['metrics'].get('provenance') or {}).get('git_commit') or '?')[:10]}"
                + ("+dirty" if (r["metrics"].get("provenance") or {}).get("git_dirty") else "")
                for r in runs
            )
        )
    if d["environment"]:
        out.append(
            "runs were produced in different environments ("
            + ", ".join(d["environment"])
            + "): float results may differ in the last digits"
        )
    return out


def compare_runs(run_dirs: Sequence[str | Path]) -> tuple[list[dict], list[dict]]:
    """Table rows (one per run, figures over shared and all landmarks) and paired tests.

    Returns:
        (rows, pairs). A row: ``run, stage, variant, split, n_images, shared_landmarks`` (count
        note), the :func:`figure_names` figures for ``shared`` and ``all``, ``n_seen``. A pair:
        ``run_a, run_b, n_images, n_landmarks, mre_a_mm, mre_b_mm, mean_diff_mm, median_diff_mm,
        statistic, p_value, n_a_better, n_b_better``. ``rows[i]["_run"]`` holds the loaded run
        (errors, landmarks) for plots; ``rows[i]["_warnings"]`` nothing (see
        :func:`provenance_warnings`).

    Raises:
        DataError: a run folder is not an evaluation folder, or the runs share no landmark.
    """
    runs = [load_run(d) for d in run_dirs]
    shared = shared_landmarks(runs)
    if runs and not shared:
        raise DataError("the runs share no landmark: nothing to compare like with like", run_dirs[0])
    rows = []
    for r in runs:
        m = r["metrics"]
        o = m.get("overall") or {}
        st = m.get("settings") or {}
        thresholds = [float(t) for t in (m.get("thresholds_mm") or M.DEFAULT_THRESHOLDS_MM)]
        idx = [r["landmarks"].index(n) for n in shared]
        e = r["errors"][:, idx]
        s_sum = M.summarise(e, thresholds)
        s_ci = M.bootstrap_ci(
            e,
            thresholds,
            n_boot=int(st.get("n_boot", (o.get("ci95") or {}).get("n_boot", 1000))),
            confidence=float(st.get("confidence_level", 0.95)),
            seed=int(st.get("bootstrap_seed", 0)),
        )
        row = {
            "run": r["name"],
            "stage": m.get("stage", ""),
            "variant": m.get("variant", ""),
            "split": m.get("split", ""),
            "n_images": o.get("n_images"),
        }
        row.update(set_figures(s_sum, s_ci, shared, "shared", m.get("human_limit"), m.get("human_comparison")))
        all_names = list(m.get("landmarks") or r["landmarks"])
        row.update(
            set_figures(o, o.get("ci95") or {}, all_names, "all", m.get("human_limit"), m.get("human_comparison"))
        )
        row["gt_policy"] = m.get("gt_policy")
        row["n_seen"] = (m.get("leakage") or {}).get("n_seen", 0)
        row["_run"] = r
        rows.append(row)
    pairs = []
    for a, b in combinations(runs, 2):
        common_lm = [n for n in a["landmarks"] if n in b["landmarks"]]
        if not common_lm or not set(a["image_ids"]) & set(b["image_ids"]):
            continue
        ea = a["errors"][:, [a["landmarks"].index(n) for n in common_lm]]
        eb = b["errors"][:, [b["landmarks"].index(n) for n in common_lm]]
        res = M.paired_wilcoxon(ea, eb, a["image_ids"], b["image_ids"])
        if res["n_images"] == 0:
            continue
        pairs.append(
            {
                "run_a": a["name"],
                "run_b": b["name"],
                "n_images": res["n_images"],
                "n_landmarks": len(common_lm),
                "mre_a_mm": res["mre_a_mm"],
                "mre_b_mm": res["mre_b_mm"],
                "mean_diff_mm": res["mean_diff_mm"],
                "median_diff_mm": res["median_diff_mm"],
                "statistic": res["statistic"],
                "p_value": res["p_value"],
                "n_a_better": res["n_a_better"],
                "n_b_better": res["n_b_better"],
            }
        )
    return rows, pairs


def public_rows(rows: Sequence[dict]) -> list[dict]:
    """Rows without the private ``_run`` entries (for CSV/JSON)."""
    return [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]


def summary_figures(row: Mapping) -> dict:
    """The compact per-run summary (:data:`SUMMARY_KEYS`, rounded to 4 significant digits) for DVC."""
    out = {}
    for k in SUMMARY_KEYS:
        v = row.get(k)
        out[k] = float(f"{v:.4g}") if isinstance(v, float) else v
    return out


def _cell(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if not np.isfinite(v):
            return "-"
        return f"{v:.3g}" if abs(v) < 1e-2 and v != 0 else f"{v:.2f}"
    return str(v)


def to_markdown(rows: list[dict], pairs: list[dict], warnings: Sequence[str] = ()) -> str:
    """The comparison as Markdown: runs over the shared landmarks, over all, human limits, pairs."""
    if not rows:
        return "No runs.\n"
    r0 = rows[0]
    n_shared = r0.get("n_landmarks/shared")
    thr = [k.split("mm/")[0][4:] for k in r0 if k.startswith("sdr_") and k.endswith("mm/shared")]

    def table(cols, header):
        out = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
        for r in rows:
            out.append("| " + " | ".join(c(r) if callable(c) else _cell(r.get(c)) for c in cols) + " |")
        return out

    def mre(s):
        return lambda r: _fmt_ci(r.get(f"mre_mm/{s}"), r.get(f"mre_mm/{s}/ci95_lo"), r.get(f"mre_mm/{s}/ci95_hi"))

    def sdr(t, s):
        return lambda r: _fmt_ci(
            r.get(f"sdr_{t}mm/{s}"), r.get(f"sdr_{t}mm/{s}/ci95_lo"), r.get(f"sdr_{t}mm/{s}/ci95_hi"), 1
        )

    out = []
    if warnings:
        out += ["> **Warning:** " + w for w in warnings] + [""]
    out += [
        f"## Runs over the {n_shared} landmarks all runs share (`/shared`; MRE mm, SDR %, 95 % bootstrap CI "
        "over images)",
        "",
    ]
    out += table(
        ["run", "stage", "variant", "split", "n_images", "n_landmarks/shared", mre("shared")]
        + [sdr(t, "shared") for t in thr],
        ["run", "stage", "variant", "split", "n_images", "n_landmarks/shared", "mre_mm/shared"]
        + [f"sdr_{t}mm/shared" for t in thr],
    )
    out += ["", "## Runs over all the landmarks each run scores (`/all`)", ""]
    out += table(
        ["run", "n_landmarks/all", mre("all")] + [sdr(t, "all") for t in thr],
        ["run", "n_landmarks/all", "mre_mm/all"] + [f"sdr_{t}mm/all" for t in thr],
    )
    out += [
        "",
        f"## Against the annotators, like with like (MRE mm over the {n_shared} shared landmarks)",
        "",
        "Each model figure sits beside the human figure measured the same way: the model against each "
        "annotator (`vs_each`) beside annotator against annotator (`human`); the model against the mean "
        "of the annotators (`mre_mm`, when that mean is the ground truth) beside each annotator against "
        "that mean (`human_vs_mean`). With two annotators an annotator is exactly half their distance from "
        "the mean, so `human_vs_mean` is half of `human`: a model below it is not better than a human, "
        "it is scored against a reference half-made of that human.",
        "",
    ]
    out += table(
        [
            "run",
            "gt_policy",
            "vs_each_mre_mm/shared",
            "human_mre_mm/shared",
            "mre_mm/shared",
            "human_vs_mean_mre_mm/shared",
        ],
        [
            "run",
            "ground truth",
            "vs_each_mre_mm/shared",
            "human_mre_mm/shared",
            "mre_mm/shared",
            "human_vs_mean_mre_mm/shared",
        ],
    )
    out += [
        "",
        "## Paired comparisons (per-image MRE over the landmarks both runs score, a - b; Wilcoxon "
        "signed-rank, two-sided)",
        "",
    ]
    if pairs:
        pc = [
            "run_a",
            "run_b",
            "n_images",
            "n_landmarks",
            "mre_a_mm",
            "mre_b_mm",
            "mean_diff_mm",
            "p_value",
            "n_a_better",
            "n_b_better",
        ]
        out += ["| " + " | ".join(pc) + " |", "| " + " | ".join("---" for _ in pc) + " |"]
        out += ["| " + " | ".join(_cell(p.get(c)) for c in pc) + " |" for p in pairs]
    else:
        out.append("No two runs share images.")
    per = per_landmark_markdown(rows)
    if per:
        out += ["", per.rstrip("\n")]
    return "\n".join(out) + "\n"


def per_landmark_table(rows: Sequence[Mapping]) -> tuple[list[str], dict[str, list[float]], list[float], str | None]:
    """Per-landmark MRE of every run, for where a difference comes from.

    Args:
        rows: :func:`compare_runs` rows (each with its loaded run under ``_run``).

    Returns:
        ``(landmarks, {run: [MRE mm per landmark, NaN where the run does not score it]}, human,
        human_run)``: landmarks are the union of the runs' landmarks, those all runs share first;
        ``human`` is the annotator-vs-annotator MRE per landmark on the images of ``human_run``, the
        first run that records one (NaN / None without).
    """
    runs = [r["_run"] for r in rows if "_run" in r]
    names = list(shared_landmarks(runs)) if runs else []
    for run in runs:
        names += [n for n in run["landmarks"] if n not in names]
    table: dict[str, list[float]] = {}
    human: dict[str, float] = {}
    human_run: str | None = None
    for r in rows:
        run = r.get("_run")
        if run is None:
            continue
        mre = {s["landmark"]: s["mre_mm"] for s in M.summarise_per_landmark(run["errors"], run["landmarks"], ())}
        table[str(r["run"])] = [float(mre.get(n, float("nan"))) for n in names]
        met = run["metrics"]
        block = (met.get("human_comparison") or {}).get("annotator_vs_annotator") or met.get("human_limit") or {}
        if human_run is None and any(
            v is not None and np.isfinite(v) for v in (block.get("per_landmark") or {}).values()
        ):
            human_run = str(r["run"])
            human = {str(n): float(v) for n, v in block["per_landmark"].items() if v is not None and np.isfinite(v)}
    return names, table, [human.get(n, float("nan")) for n in names], human_run


def per_landmark_markdown(rows: Sequence[Mapping]) -> str:
    """Markdown: one row per landmark, one column per run (MRE mm), and the human limit; "" without runs."""
    names, table, human, human_run = per_landmark_table(rows)
    if not names or not table:
        return ""
    runs = list(table)
    has_human = human_run is not None
    head = ["landmark", *runs] + ([f"human (annotator vs annotator, images of {human_run})"] if has_human else [])
    out = [
        "## Per landmark (MRE mm over each run's test images; where a difference comes from)",
        "",
        "| " + " | ".join(head) + " |",
        "| " + " | ".join("---" for _ in head) + " |",
    ]
    for i, n in enumerate(names):
        cells = [n] + [_cell(table[r][i]) for r in runs] + ([_cell(human[i])] if has_human else [])
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"
