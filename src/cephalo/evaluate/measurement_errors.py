"""How wrong are the *measurements* (SNA, ANB, ...) computed from predicted landmarks?

For each measurement of :mod:`cephalo.measurements` that the evaluated landmarks support, comparing
the value from the predicted landmarks with the value from the ground-truth landmarks of the same
image (both in mm with the image's own spacing per axis):

* ``mae``: mean absolute error, in the measurement's unit, with a 95 % percentile bootstrap CI over
  images (Efron & Tibshirani 1993, ch. 13; the same resampling unit as the landmark MRE);
* ``bias``: mean signed error (prediction - ground truth) and ``sd``;
* ``human_mae``: the same statistic between two annotators (the two-annotator limit), where the data
  hold two or more (mean over annotator pairs), with its own CI;
* ``vs_each_mae``: the model against each annotator in turn (mean over annotators and images), with
  its CI -- the like-with-like partner of ``human_mae`` (one reading against another reading; the
  ``mae`` against the annotators' mean is smoothed by the averaging and is not comparable with it),
  and ``vs_each_accuracy`` beside ``human_accuracy``;
* for measurements with classes (the ISBI 2015 eight): ``accuracy`` = the fraction of images whose
  class from the predicted landmarks equals the class from the ground truth (the challenge's
  "successful classification rate", Wang et al., Medical Image Analysis 31, 2016, section 4.2) with a
  bootstrap CI, the confusion matrix (rows = ground-truth class, columns = predicted class), and the
  annotators' own agreement (``human_accuracy``).

:func:`measurement_errors` computes the block that goes into ``metrics.json`` under
``measurements``; :func:`write_outputs` writes ``measurements.csv`` (one row per measurement),
``measurements_per_image.csv`` (long: image x measurement, values from prediction and ground
truth) and ``plots/measurements.png``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations
from pathlib import Path

import numpy as np

from .. import measurements as MS
from .plots import _plt, _save

__all__ = ["measurement_errors", "write_outputs", "CSV_COLUMNS"]

CSV_COLUMNS = [
    "measurement",
    "unit",
    "n",
    "mae",
    "mae_ci_lo",
    "mae_ci_hi",
    "bias",
    "sd",
    "vs_each_mae",
    "vs_each_mae_ci_lo",
    "vs_each_mae_ci_hi",
    "human_mae",
    "human_mae_ci_lo",
    "human_mae_ci_hi",
    "human_n",
    "accuracy",
    "accuracy_ci_lo",
    "accuracy_ci_hi",
    "vs_each_accuracy",
    "human_accuracy",
    "normal_lo",
    "normal_hi",
]


def _boot_mean(x: np.ndarray, n_boot: int, seed: int, confidence: float = 0.95) -> list[float]:
    """Percentile bootstrap CI of the mean of the finite entries of ``x`` (images resampled)."""
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return [float("nan"), float("nan")]
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(int(n_boot), x.size))].mean(axis=1)
    q = [100 * (1 - confidence) / 2, 100 * (1 + confidence) / 2]
    return [float(v) for v in np.percentile(means, q)]


def _f(v) -> float:
    return float(v) if v is not None and np.isfinite(v) else float("nan")


def measurement_errors(
    pred: np.ndarray,
    gt: np.ndarray,
    spacing: np.ndarray,
    names: Sequence[str],
    *,
    image_ids: Sequence[str] | None = None,
    annotators: Mapping[str, np.ndarray] | None = None,
    keys: Sequence[str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """Errors of cephalometric measurements computed from predicted vs ground-truth landmarks.

    Args:
        pred, gt: (N, K, 2) float, xy original-image pixels, NaN = missing.
        spacing: (N, 2) mm/px (x, y) per image.
        names: K canonical landmark names.
        image_ids: N ids (for the per-image table).
        annotators: name -> (N, K, 2) original px per annotator (same images and landmarks), for the
            two-annotator limit; fewer than two -> no human limit.
        keys: measurements to report (default every one the landmarks support).
        n_boot, seed: bootstrap replicates and seed.

    Returns:
        ``{"keys": [...], "n_images": N, "definitions": {key: Measurement.to_dict()},
        "per_measurement": {key: {unit, n, mae, mae_ci95, bias, sd, vs_each_mae, vs_each_mae_ci95, human_mae,
        human_mae_ci95, human_n, accuracy, accuracy_ci95, confusion {labels, matrix}, vs_each_accuracy,
        human_accuracy}},
        "per_image": {"image_ids", key: {"pred": [...], "gt": [...]}}}`` (NaN where undefined); an empty
        ``keys`` list when the landmarks support no measurement.

    Raises:
        ValueError: inconsistent shapes or invalid spacing.
    """
    names = [str(n) for n in names]
    keys = MS.available(names) if keys is None else MS.available(names, keys)
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    n = gt.shape[0]
    ids = [str(i) for i in (image_ids if image_ids is not None else range(n))]
    out: dict = {
        "keys": list(keys),
        "n_images": int(n),
        "bootstrap": {"n_boot": int(n_boot), "confidence": 0.95, "unit": "image"},
        "definitions": {k: MS.MEASUREMENTS[k].to_dict() for k in keys},
        "per_measurement": {},
        "per_image": {"image_ids": ids},
    }
    if not keys:
        return out
    vp = MS.compute(pred, names, spacing, keys)
    vg = MS.compute(gt, names, spacing, keys)
    anns = {a: np.asarray(v, dtype=np.float64) for a, v in (annotators or {}).items() if a != "mean"}
    pairs = list(combinations(sorted(anns), 2)) if len(anns) >= 2 else []
    va = {a: MS.compute(anns[a], names, spacing, keys) for a in sorted(anns)} if pairs else {}
    for i, k in enumerate(keys):
        m = MS.MEASUREMENTS[k]
        d = vp[k] - vg[k]
        ok = np.isfinite(d)
        row: dict = {
            "unit": m.unit,
            "n": int(ok.sum()),
            "mae": _f(np.abs(d[ok]).mean()) if ok.any() else float("nan"),
            "mae_ci95": _boot_mean(np.abs(d), n_boot, seed + i),
            "bias": _f(d[ok].mean()) if ok.any() else float("nan"),
            "sd": _f(d[ok].std()) if ok.any() else float("nan"),
            "human_mae": float("nan"),
            "human_mae_ci95": [float("nan")] * 2,
            "human_n": 0,
            "vs_each_mae": float("nan"),
            "vs_each_mae_ci95": [float("nan")] * 2,
        }
        if pairs:
            ed = np.concatenate([vp[k] - va[a][k] for a in sorted(va)])
            eok = np.isfinite(ed)
            row.update(
                vs_each_mae=_f(np.abs(ed[eok]).mean()) if eok.any() else float("nan"),
                vs_each_mae_ci95=_boot_mean(np.abs(ed), n_boot, seed + 300 + i),
            )
            hd = np.concatenate([va[a][k] - va[b][k] for a, b in pairs])
            hok = np.isfinite(hd)
            row.update(
                human_mae=_f(np.abs(hd[hok]).mean()) if hok.any() else float("nan"),
                human_mae_ci95=_boot_mean(np.abs(hd), n_boot, seed + 100 + i),
                human_n=int(hok.sum()),
                human_pairs=[list(p) for p in pairs],
            )
        if m.classes:
            labels = sorted(c.label for c in m.classes)
            cp, cg = MS.classify(k, vp[k]), MS.classify(k, vg[k])
            both = (cp > 0) & (cg > 0)
            hit = (cp == cg).astype(np.float64)
            hit[~both] = np.nan
            mat = [[int(((cg == a) & (cp == b) & both).sum()) for b in labels] for a in labels]
            row.update(
                accuracy=_f(np.nanmean(hit)) if both.any() else float("nan"),
                accuracy_ci95=_boot_mean(hit, n_boot, seed + 200 + i),
                confusion={
                    "labels": labels,
                    "names": {c.label: c.name for c in m.classes},
                    "rows": "ground truth",
                    "columns": "prediction",
                    "matrix": mat,
                },
                human_accuracy=float("nan"),
            )
            if pairs:
                agree = []
                for a, b in pairs:
                    ca, cb = MS.classify(k, va[a][k]), MS.classify(k, va[b][k])
                    okh = (ca > 0) & (cb > 0)
                    agree.append((ca == cb)[okh])
                allh = np.concatenate(agree)
                row["human_accuracy"] = _f(allh.mean()) if allh.size else float("nan")
                mine = []
                for a in sorted(va):
                    ca = MS.classify(k, va[a][k])
                    okm = (ca > 0) & (cp > 0)
                    mine.append((ca == cp)[okm])
                allm = np.concatenate(mine)
                row["vs_each_accuracy"] = _f(allm.mean()) if allm.size else float("nan")
        out["per_measurement"][k] = row
        out["per_image"][k] = {"pred": vp[k].tolist(), "gt": vg[k].tolist()}
    return out


def summary_table(block: Mapping) -> list[dict]:
    """One flat row per measurement (columns :data:`CSV_COLUMNS`)."""
    rows = []
    for k in block.get("keys", []):
        r = block["per_measurement"][k]
        d = block["definitions"][k]

        def g(key, j=None, r=r):  # r bound now: called only within this iteration
            v = r.get(key)
            if j is not None:
                v = None if v is None else v[j]
            return float("nan") if v is None else v

        rows.append(
            {
                "measurement": k,
                "unit": r["unit"],
                "n": r["n"],
                "mae": g("mae"),
                "mae_ci_lo": g("mae_ci95", 0),
                "mae_ci_hi": g("mae_ci95", 1),
                "bias": g("bias"),
                "sd": g("sd"),
                "vs_each_mae": g("vs_each_mae"),
                "vs_each_mae_ci_lo": g("vs_each_mae_ci95", 0) if "vs_each_mae_ci95" in r else float("nan"),
                "vs_each_mae_ci_hi": g("vs_each_mae_ci95", 1) if "vs_each_mae_ci95" in r else float("nan"),
                "vs_each_accuracy": g("vs_each_accuracy"),
                "human_mae": g("human_mae"),
                "human_mae_ci_lo": g("human_mae_ci95", 0),
                "human_mae_ci_hi": g("human_mae_ci95", 1),
                "human_n": r.get("human_n", 0),
                "accuracy": g("accuracy"),
                "accuracy_ci_lo": g("accuracy_ci95", 0) if "accuracy_ci95" in r else float("nan"),
                "accuracy_ci_hi": g("accuracy_ci95", 1) if "accuracy_ci95" in r else float("nan"),
                "human_accuracy": g("human_accuracy"),
                "normal_lo": d["normal"][0],
                "normal_hi": d["normal"][1],
            }
        )
    return rows


def write_outputs(block: Mapping, out_dir: str | Path, make_plot: bool = True, title: str = "") -> list[Path]:
    """Write ``measurements.csv``, ``measurements_per_image.csv`` and ``plots/measurements.png`` into
    ``out_dir`` (already a temporary folder of an atomic write). Nothing is written when the block has no
    measurement. Returns the paths written."""
    import pandas as pd

    out_dir = Path(out_dir)
    keys = list(block.get("keys", []))
    if not keys:
        return []
    written = []
    pd.DataFrame(summary_table(block), columns=CSV_COLUMNS).to_csv(
        out_dir / "measurements.csv", index=False, float_format="%.4f"
    )
    written.append(out_dir / "measurements.csv")
    ids = block["per_image"]["image_ids"]
    long = [
        {
            "image_id": i,
            "measurement": k,
            "unit": block["per_measurement"][k]["unit"],
            "from_prediction": p,
            "from_ground_truth": g,
        }
        for k in keys
        for i, p, g in zip(ids, block["per_image"][k]["pred"], block["per_image"][k]["gt"], strict=False)
    ]
    pd.DataFrame(long).to_csv(out_dir / "measurements_per_image.csv", index=False, float_format="%.4f")
    written.append(out_dir / "measurements_per_image.csv")
    if make_plot:
        (out_dir / "plots").mkdir(exist_ok=True)
        written.append(_plot(block, out_dir / "plots" / "measurements.png", title))
    return written


def _plot(block: Mapping, path: Path, title: str) -> Path:
    plt = _plt()
    keys = list(block["keys"])
    units = [u for u in ("deg", "mm", "ratio") if any(block["per_measurement"][k]["unit"] == u for k in keys)]
    classified = [k for k in keys if "accuracy" in block["per_measurement"][k]]
    ncols = len(units) + (1 if classified else 0)
    fig, axes = plt.subplots(1, ncols, figsize=(4.2 * ncols, 0.35 * max(len(keys), 6) + 1.5), squeeze=False)
    for ax, unit in zip(axes[0], units, strict=False):
        ks = [k for k in keys if block["per_measurement"][k]["unit"] == unit]
        y = np.arange(len(ks))
        r = [block["per_measurement"][k] for k in ks]
        each = np.array([x.get("vs_each_mae", np.nan) for x in r], dtype=float)
        like = np.isfinite(each).any()  # two annotators: model vs each annotator beside annotator vs annotator
        key = "vs_each_mae" if like else "mae"
        mae = np.array([x[key] for x in r], dtype=float)
        lo = np.array([x[key + "_ci95"][0] for x in r], dtype=float)
        hi = np.array([x[key + "_ci95"][1] for x in r], dtype=float)
        ax.barh(
            y - 0.18,
            mae,
            height=0.35,
            color="tab:red",
            label="model vs each annotator (95% CI)" if like else "model (95% CI)",
            xerr=np.nan_to_num(np.vstack([mae - lo, hi - mae])),
            capsize=2,
        )
        hm = np.array([x["human_mae"] for x in r], dtype=float)
        if np.isfinite(hm).any():
            hlo = np.array([x["human_mae_ci95"][0] for x in r], dtype=float)
            hhi = np.array([x["human_mae_ci95"][1] for x in r], dtype=float)
            ax.barh(
                y + 0.18,
                hm,
                height=0.35,
                color="tab:blue",
                label="annotator vs annotator (95% CI)",
                xerr=np.nan_to_num(np.vstack([hm - hlo, hhi - hm])),
                capsize=2,
            )
        ax.set_yticks(y)
        ax.set_yticklabels(ks, fontsize=8)
        ax.set_ylim(max(len(ks), 4) - 0.5, -0.5)  # top to bottom; a lone measurement keeps a thin bar
        ax.set_xlabel(f"mean absolute error ({unit})")
        ax.grid(axis="x", alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    if classified:
        ax = axes[0][-1]
        y = np.arange(len(classified))
        acc_each = np.array(
            [block["per_measurement"][k].get("vs_each_accuracy", np.nan) for k in classified], dtype=float
        )
        if np.isfinite(acc_each).any():
            ax.barh(y - 0.18, 100 * acc_each, height=0.35, color="tab:red", label="model vs each annotator")
        else:
            acc = np.array([block["per_measurement"][k]["accuracy"] for k in classified], dtype=float)
            lo = np.array([block["per_measurement"][k]["accuracy_ci95"][0] for k in classified], dtype=float)
            hi = np.array([block["per_measurement"][k]["accuracy_ci95"][1] for k in classified], dtype=float)
            ax.barh(
                y - 0.18,
                100 * acc,
                height=0.35,
                color="tab:red",
                label="model (95% CI)",
                xerr=100 * np.nan_to_num(np.vstack([acc - lo, hi - acc])),
                capsize=2,
            )
        ha = np.array([block["per_measurement"][k].get("human_accuracy", np.nan) for k in classified], dtype=float)
        if np.isfinite(ha).any():
            ax.barh(y + 0.18, 100 * ha, height=0.35, color="tab:blue", label="annotator agreement")
        ax.set_yticks(y)
        ax.set_yticklabels(classified, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, 100)
        ax.set_xlabel("classification accuracy (%)")
        ax.grid(axis="x", alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    fig.suptitle(title or "measurement errors", fontsize=10)
    return _save(fig, path)


def comparison_rows(runs: Sequence[tuple[str, Mapping]]) -> list[dict]:
    """One row per run x measurement from evaluated runs' ``metrics.json`` (``measurements`` block), for
    ``cephalo compare``: ``run, measurement, unit, mae, mae_ci_lo, mae_ci_hi, bias, human_mae, accuracy,
    human_accuracy``, and a ``coverage`` pseudo-measurement per level when the run has ``uncertainty``."""
    rows = []
    for name, m in runs:
        block = m.get("measurements") or {}
        for k in block.get("keys", []):
            r = block["per_measurement"][k]
            ci = r.get("mae_ci95") or [None, None]
            rows.append(
                {
                    "run": name,
                    "measurement": k,
                    "unit": r.get("unit"),
                    "mae": r.get("mae"),
                    "mae_ci_lo": ci[0],
                    "mae_ci_hi": ci[1],
                    "bias": r.get("bias"),
                    "human_mae": r.get("human_mae"),
                    "accuracy": r.get("accuracy"),
                    "human_accuracy": r.get("human_accuracy"),
                    "vs_each_mae": r.get("vs_each_mae"),
                    "vs_each_accuracy": r.get("vs_each_accuracy"),
                }
            )
        for lv, c in ((m.get("uncertainty") or {}).get("coverage") or {}).items():
            rows.append(
                {
                    "run": name,
                    "measurement": f"coverage@{lv}",
                    "unit": "fraction",
                    "mae": None,
                    "mae_ci_lo": None,
                    "mae_ci_hi": None,
                    "bias": None,
                    "human_mae": None,
                    "accuracy": c.get("overall"),
                    "human_accuracy": None,
                }
            )
    return rows


def comparison_markdown(rows: Sequence[Mapping]) -> str:
    """Markdown: per measurement, each run's MAE [95 % CI] (class accuracy %), and the two-annotator limit."""
    if not rows:
        return ""
    runs = list(dict.fromkeys(r["run"] for r in rows))
    keys = list(dict.fromkeys(r["measurement"] for r in rows))
    by = {(r["run"], r["measurement"]): r for r in rows}

    def cell(r: Mapping | None) -> str:
        if r is None:
            return "-"
        if r["mae"] is None:
            return "-" if r["accuracy"] is None else f"{100 * r['accuracy']:.1f} %"
        s = f"{r['mae']:.2f}"
        if r["mae_ci_lo"] is not None and r["mae_ci_hi"] is not None:
            s += f" [{r['mae_ci_lo']:.2f}, {r['mae_ci_hi']:.2f}]"
        if r.get("accuracy") is not None:
            s += f" ({100 * r['accuracy']:.0f} %)"
        if r.get("vs_each_mae") is not None and np.isfinite(r["vs_each_mae"]):
            s += f"; vs each annotator {r['vs_each_mae']:.2f}"
        return s

    out = [
        "",
        "## Cephalometric measurements (MAE [95 % CI], class accuracy %; coverage of the radii)",
        "",
        "MAE against the reference labels; where the images have two annotators, the model is also scored "
        "against each annotator (`vs each annotator`), the like-with-like partner of the last column "
        "(annotator vs annotator).",
        "",
        "A `coverage@level` row is the fraction of test landmarks within their calibrated radius; `-` there "
        "means no finite radius (the calibration split has too few images for that level: "
        "`ceil((n + 1) * level) > n`) or no calibration.",
        "",
    ]
    # the two-annotator limit is a property of the images: one run's images, named in the header
    human_run = next((r["run"] for r in rows if r.get("human_mae") is not None), None)
    out += [
        "| measurement | unit | "
        + " | ".join(runs)
        + (f" | annotator vs annotator (images of {human_run}) |" if human_run else " | annotator vs annotator |"),
        "| " + " | ".join("---" for _ in range(len(runs) + 3)) + " |",
    ]
    for k in keys:
        rs = [by.get((run, k)) for run in runs]
        unit = next((r["unit"] for r in rs if r), "")
        hum = by.get((human_run, k)) or {}
        htxt = (
            "-"
            if hum.get("human_mae") is None
            else (
                f"{hum['human_mae']:.2f}"
                + (f" ({100 * hum['human_accuracy']:.0f} %)" if hum.get("human_accuracy") is not None else "")
            )
        )
        out.append(f"| {k} | {unit} | " + " | ".join(cell(r) for r in rs) + f" | {htxt} |")
    return "\n".join(out) + "\n"
