"""Zero-shot diagnosis: *why* does a model fail on a new data set?

Given predictions and ground truth in original-image pixels (over the landmarks the model and
the data share, matched by name), this module measures simple geometric patterns and names
the likely cause in plain words:

* **collapse** - the predicted landmark constellation is much smaller than the true one
  (spread ratio << 1), often sitting near the image centre: the network sees an input it does
  not recognise (wrong normalisation, wrong input size) or predictions are not mapped back;
* **scale mismatch** - the constellation is too large/small by a factor: a resize factor or
  the inverse affine is wrong, or the spacing is;
* **systematic offset** - all landmarks shifted by the same (dx, dy): padding/letterbox offset,
  crop, or a pixel-centre vs pixel-corner convention (half a heatmap stride);
* **flip / axis swap** - negative correlation along an axis, or x correlating with y;
* otherwise **landmark-specific errors** - appearance domain shift: fine-tune / adapt.

The measures are plain descriptive statistics (no published algorithm); thresholds are
arguments (params ``evaluate.diagnosis``). The result's records, its Markdown report and the
plain words for causes are :mod:`cephalo.evaluate.diagnosis_report`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

from ..config.schema import DiagnosisConfig
from .diagnosis_report import Diagnosis, Finding, bias_words, preprocessing_words
from .metrics import offsets_mm, radial_errors_mm, spread_ratio

__all__ = ["diagnose", "DEFAULT_DIAGNOSIS_THRESHOLDS", "biased_landmarks"]

#: default thresholds (params ``evaluate.diagnosis``; their meaning and defaults: cephalo.config.schema.DiagnosisConfig)
DEFAULT_DIAGNOSIS_THRESHOLDS: dict = DiagnosisConfig().model_dump()


def biased_landmarks(per_landmark: Sequence[dict], thresholds: dict | None = None) -> list[dict]:
    """Rows of ``per_landmark`` whose mean error vector is a systematic bias, largest first.

    A landmark is biased when ``bias_mm >= landmark_bias_mm`` (mm of a real head: errors are
    converted with each image's own pixel spacing) and ``bias_mm >= landmark_bias_fraction x``
    its MRE (the bias, not the scatter, makes its error), with at least 2 images.

    Args:
        per_landmark: rows with ``landmark, n, mre_mm, bias_dx_mm, bias_dy_mm, bias_mm``.
        thresholds: overrides of :data:`DEFAULT_DIAGNOSIS_THRESHOLDS`.
    """
    th = {**DEFAULT_DIAGNOSIS_THRESHOLDS, **(thresholds or {})}
    rows = [
        r
        for r in per_landmark
        if r.get("n", 0) >= 2
        and np.isfinite(r.get("bias_mm", np.nan))
        and r["bias_mm"] >= th["landmark_bias_mm"]
        and r["bias_mm"] >= th["landmark_bias_fraction"] * r["mre_mm"]
    ]
    return sorted(rows, key=lambda r: -r["bias_mm"])


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 2 or np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 3:
        return float("nan")
    r = stats.spearmanr(a, b).statistic
    return float(r) if np.isfinite(r) else float("nan")


def diagnose(
    pred: np.ndarray,
    gt: np.ndarray,
    spacing: np.ndarray,
    names: Sequence[str],
    confidence: np.ndarray | None = None,
    image_sizes: np.ndarray | None = None,
    thresholds: dict | None = None,
    label: str = "",
    preprocessing: dict | None = None,
) -> Diagnosis:
    """Diagnose systematic failure patterns of predictions against ground truth.

    Args:
        pred: (N, K, 2) float, xy, original-image pixels (already mapped back), NaN = missing.
        gt: (N, K, 2) float, xy, original-image pixels, NaN = missing; same landmark order.
        spacing: (N, 2) float mm/px (x, y) per image.
        names: K canonical landmark names.
        confidence: optional (N, K) decoder confidence (higher = surer).
        image_sizes: optional (N, 2) int original (width, height), to tell collapse *toward the
            centre* from collapse elsewhere.
        thresholds: overrides of :data:`DEFAULT_DIAGNOSIS_THRESHOLDS`.
        label: a name for the report (e.g. the preprocessing variant).
        preprocessing: what the run did vs what the model was trained with, to name a collapse's
            cause in plain words: ``{"used": {"normalisation": ..., "decoder": ...},
            "expected": {...}, "variant": ..., "fix_run": ...}``
            (see :func:`cephalo.evaluate.diagnosis_report.preprocessing_words`).

    Returns:
        :class:`Diagnosis`.

    Raises:
        ValueError: shapes disagree, or there is no (image, landmark) pair with both values.
    """
    th = {**DEFAULT_DIAGNOSIS_THRESHOLDS, **(thresholds or {})}
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    err = radial_errors_mm(pred, gt, spacing)
    d_mm = offsets_mm(pred, gt, spacing)
    if len(names) != pred.shape[1]:
        raise ValueError(f"{len(names)} names for {pred.shape[1]} landmarks")
    ok = np.isfinite(err)
    if not ok.any():
        raise ValueError("diagnosis: no landmark has both a prediction and a ground truth")
    n_images = int(ok.any(axis=1).sum())
    p, g = pred[ok], gt[ok]  # (M, 2)
    d_px = p - g
    mre = float(err[ok].mean())

    ranges = {
        ax: {"pred": [float(p[:, i].min()), float(p[:, i].max())], "gt": [float(g[:, i].min()), float(g[:, i].max())]}
        for i, ax in enumerate("xy")
    }
    spread = spread_ratio(pred, gt)

    # constellation size per image: RMS distance from the centroid of the landmarks present in both
    ratios = []
    for n in range(pred.shape[0]):
        sel = ok[n]
        if sel.sum() < 2:
            continue
        pc = pred[n, sel] - pred[n, sel].mean(axis=0)
        gc = gt[n, sel] - gt[n, sel].mean(axis=0)
        gs = np.sqrt((gc**2).sum(axis=1).mean())
        if gs > 0:
            ratios.append(np.sqrt((pc**2).sum(axis=1).mean()) / gs)
    constellation = float(np.median(ratios)) if ratios else float("nan")

    corr = {
        "x": _corr(p[:, 0], g[:, 0]),
        "y": _corr(p[:, 1], g[:, 1]),
        "x_vs_gt_y": _corr(p[:, 0], g[:, 1]),
        "y_vs_gt_x": _corr(p[:, 1], g[:, 0]),
    }
    off_px = [float(d_px[:, 0].mean()), float(d_px[:, 1].mean())]
    dmm = d_mm[ok]
    off_mm = [float(dmm[:, 0].mean()), float(dmm[:, 1].mean())]

    per_lm = []
    for k, name in enumerate(names):
        sel = ok[:, k]
        if not sel.any():
            per_lm.append(
                {
                    "landmark": str(name),
                    "n": 0,
                    "mre_mm": float("nan"),
                    "bias_dx_mm": float("nan"),
                    "bias_dy_mm": float("nan"),
                    "bias_mm": float("nan"),
                }
            )
            continue
        bx, by = float(d_mm[sel, k, 0].mean()), float(d_mm[sel, k, 1].mean())
        per_lm.append(
            {
                "landmark": str(name),
                "n": int(sel.sum()),
                "mre_mm": float(err[sel, k].mean()),
                "bias_dx_mm": bx,
                "bias_dy_mm": by,
                "bias_mm": float(np.hypot(bx, by)),
            }
        )

    conf = None
    if confidence is not None:
        c = np.asarray(confidence, dtype=np.float64)
        if c.shape != err.shape:
            raise ValueError(f"confidence {c.shape} does not match errors {err.shape}")
        cv = c[ok & np.isfinite(c)]
        if cv.size:
            conf = {
                "mean": float(cv.mean()),
                "median": float(np.median(cv)),
                "spearman_vs_error": _spearman(c[ok & np.isfinite(c)], err[ok & np.isfinite(c)]),
            }

    findings: list[Finding] = []
    off_norm = float(np.hypot(*off_mm))
    cx = [f"{v:.2f}" for v in (spread["x"], spread["y"])]
    if np.isfinite(constellation) and constellation < th["collapse_ratio"]:
        where = ""
        if image_sizes is not None:
            sz = np.asarray(image_sizes, dtype=np.float64)
            centre = (sz - 1) / 2.0  # pixel-centre convention: the centre of a w-px axis is (w-1)/2
            cen = np.nanmean(pred, axis=1)  # (N, 2) centroid of predictions
            good = np.isfinite(cen).all(axis=1)
            rel = np.abs(cen[good] - centre[good]) / sz[good]
            if good.any() and float(np.median(rel.max(axis=1))) <= th["centre_fraction"]:
                where = " toward the image centre"
        findings.append(
            Finding(
                "collapse",
                f"predictions collapsed{where}: the predicted landmark constellation is "
                f"{constellation:.2f} x the size of the ground truth's (spread ratio x {cx[0]}, y {cx[1]}).",
                preprocessing_words(preprocessing)
                or (
                    "the network does not recognise its input - check normalisation (mean/std, 0-1 vs 0-255), "
                    "input size / letterbox, and the mapping of heatmap coordinates back to the image."
                ),
            )
        )
    elif np.isfinite(constellation) and not th["scale_low"] <= constellation <= th["scale_high"]:
        findings.append(
            Finding(
                "scale",
                f"the predicted constellation is {constellation:.2f} x the size of the ground truth's "
                f"(spread ratio x {cx[0]}, y {cx[1]}).",
                "a wrong resize factor or inverse affine when mapping back, a different heatmap stride, "
                "or a field of view / magnification unlike the training data.",
            )
        )
    if corr["x"] < th["flip_corr"] or corr["y"] < th["flip_corr"]:
        axes = [a for a in "xy" if corr[a] < th["flip_corr"]]
        findings.append(
            Finding(
                "flip",
                f"predicted {'/'.join(axes)} coordinates are anti-correlated with the ground truth "
                f"(r x {corr['x']:.2f}, y {corr['y']:.2f}).",
                "the image is mirrored (patient facing the other way) or an axis is flipped in the mapping.",
            )
        )
    if (
        np.isfinite(corr["x_vs_gt_y"])
        and np.isfinite(corr["x"])
        and corr["x_vs_gt_y"] > corr["x"] + 0.3
        and corr["y_vs_gt_x"] > corr["y"] + 0.3
    ):
        findings.append(
            Finding(
                "axis_swap",
                f"predicted x follows ground-truth y (r {corr['x_vs_gt_y']:.2f}) better than ground-truth x "
                f"(r {corr['x']:.2f}).",
                "x and y swapped (row/column vs xy order) somewhere between decoder and evaluation.",
            )
        )
    if off_norm >= th["offset_min_mm"] and off_norm >= th["offset_fraction"] * mre:
        findings.append(
            Finding(
                "offset",
                f"systematic offset: predictions are shifted by mean dx {off_px[0]:+.1f} px ({off_mm[0]:+.2f} mm), "
                f"dy {off_px[1]:+.1f} px ({off_mm[1]:+.2f} mm), {100 * off_norm / mre:.0f} % of the MRE.",
                "letterbox padding or crop offset not undone, or a pixel-centre vs pixel-corner convention "
                "mismatch (half a heatmap stride); a constant shift is also what a different head position "
                "or field of view produces.",
            )
        )
    words = preprocessing_words(preprocessing)
    if words and not any(f.code == "collapse" for f in findings):
        findings.insert(
            0, Finding("preprocessing", "this run did not feed or read the model the way it was trained.", words)
        )
    if conf is not None and np.isfinite(conf["spearman_vs_error"]) and conf["spearman_vs_error"] < -0.3:
        findings.append(
            Finding(
                "confidence",
                f"decoder confidence tracks the error (Spearman {conf['spearman_vs_error']:.2f}).",
                "low-confidence landmarks are the failing ones: the model is uncertain there "
                "(appearance shift); confidence can flag them for review.",
            )
        )
    geometric = {"collapse", "scale", "flip", "axis_swap", "offset", "preprocessing"}
    if not any(f.code in geometric for f in findings) and mre > th["good_mre_mm"]:
        worst = sorted((r for r in per_lm if r["n"]), key=lambda r: -r["mre_mm"])[:3]
        findings.append(
            Finding(
                "landmark_specific",
                "no global geometric pattern; errors concentrate on "
                + ", ".join("{} ({:.1f} mm)".format(r["landmark"], r["mre_mm"]) for r in worst)
                + ".",
                "appearance domain shift (device, contrast, anatomy) or annotation-definition differences "
                "between data sets: fine-tune on the target data, or try intensity preprocessing.",
            )
        )

    # per-landmark bias beyond the global pattern: with a global offset named, what each landmark
    # adds to it; with another global pattern (collapse, scale, flip) per-landmark bias means nothing
    codes = {f.code for f in findings}
    if codes & {"collapse", "scale", "flip", "axis_swap", "preprocessing"}:
        biased = []
    elif "offset" in codes:
        rel = [
            dict(
                r,
                bias_dx_mm=r["bias_dx_mm"] - off_mm[0],
                bias_dy_mm=r["bias_dy_mm"] - off_mm[1],
                bias_mm=float(np.hypot(r["bias_dx_mm"] - off_mm[0], r["bias_dy_mm"] - off_mm[1])),
            )
            for r in per_lm
            if r["n"]
        ]
        biased = biased_landmarks(rel, th)
    else:
        biased = biased_landmarks(per_lm, th)
    if biased:
        beyond = " beyond the global offset" if "offset" in codes else ""
        findings.append(
            Finding(
                "landmark_bias",
                f"{len(biased)} landmark(s) are displaced in a consistent direction{beyond} by "
                f"{th['landmark_bias_mm']:g} mm or more: " + "; ".join(bias_words(r) for r in biased) + ".",
                "these landmarks are defined or annotated differently in the two data sets, or the anatomy "
                "around them looks different on the target devices: fine-tune on target annotations, and "
                "check the landmark definitions.",
            )
        )

    # informative findings (confidence, per-landmark bias) come after the failure patterns
    informative = {"confidence", "landmark_bias"}
    findings.sort(key=lambda f: (f.code in informative, f.code == "confidence"))
    failures = [f for f in findings if f.code not in informative]
    if not failures and mre <= th["good_mre_mm"]:
        summary = (
            f"The model works on these images: MRE {mre:.2f} mm over {int(ok.sum())} landmarks in "
            f"{n_images} images, with no global geometric pattern."
        )
        if biased:
            summary += " But " + findings[0].observation
        elif findings:
            summary += " " + findings[0].observation
    else:
        head = findings[0]
        summary = (
            f"MRE {mre:.2f} mm over {int(ok.sum())} landmarks in {n_images} images. "
            f"Main finding: {head.observation} Likely cause: {head.likely_cause}"
        )
        rest = [f for f in findings[1:] if f.code != "landmark_bias"]
        if rest:
            summary += " Also: " + "; ".join(f.code for f in rest) + "."
        if biased and head.code != "landmark_bias":
            summary += " Per landmark: " + "; ".join(bias_words(r) for r in biased) + "."
    return Diagnosis(
        n_images=n_images,
        n_points=int(ok.sum()),
        mre_mm=mre,
        ranges_px=ranges,
        spread_ratio=spread,
        constellation_ratio=constellation,
        offset_px=off_px,
        offset_mm=off_mm,
        correlation=corr,
        per_landmark=per_lm,
        confidence=conf,
        findings=findings,
        summary=summary,
        label=label,
    )


# Mistakes in predictions made outside cephalo (frames, units, axes, order): cephalo.evaluate.mistakes
