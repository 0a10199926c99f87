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
arguments (params ``evaluate.diagnosis``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from ..config.schema import DiagnosisConfig
from .metrics import offsets_mm, radial_errors_mm, spread_ratio

__all__ = ["Finding", "Diagnosis", "diagnose", "DEFAULT_DIAGNOSIS_THRESHOLDS", "biased_landmarks",
           "preprocessing_words"]

#: default thresholds (params ``evaluate.diagnosis``; their meaning and defaults: cephalo.config.schema.DiagnosisConfig)
DEFAULT_DIAGNOSIS_THRESHOLDS: dict = DiagnosisConfig().model_dump()


@dataclass
class Finding:
    """One diagnosed pattern: a code (``collapse``, ``offset``, ...), what was seen, likely cause."""

    code: str
    observation: str
    likely_cause: str


@dataclass
class Diagnosis:
    """Result of :func:`diagnose`. All coordinates are original-image pixels; mm uses the spacing.

    Attributes:
        n_images, n_points: images and (image, landmark) pairs with both prediction and GT.
        mre_mm: pooled MRE over the shared landmarks.
        ranges_px: per axis ``{"x": {"pred": [min, max], "gt": [min, max]}, "y": ...}``.
        spread_ratio: per axis, std of the predictions / std of the GT, pooled over all points.
        constellation_ratio: median over images of the RMS distance of the predicted landmarks
            from their own centroid / the same for the GT (1 = right size; < 0.5 = collapse).
        offset_px, offset_mm: mean (dx, dy) prediction - GT.
        correlation: per axis Pearson r of pred vs GT coordinates (pooled), plus ``x_vs_gt_y``.
        per_landmark: rows ``landmark, n, mre_mm, bias_dx_mm, bias_dy_mm, bias_mm``.
        confidence: ``{"mean", "median", "spearman_vs_error"}`` of the decoder confidence, or None.
        findings: the patterns found, most important first.
        summary: one paragraph in plain words.
    """

    n_images: int
    n_points: int
    mre_mm: float
    ranges_px: dict
    spread_ratio: dict
    constellation_ratio: float
    offset_px: list
    offset_mm: list
    correlation: dict
    per_landmark: list
    confidence: dict | None
    findings: list[Finding] = field(default_factory=list)
    summary: str = ""
    label: str = ""

    def to_dict(self) -> dict:
        """JSON-serialisable dict (floats, lists)."""
        return asdict(self)

    def to_markdown(self) -> str:
        """A short Markdown report (the ``diagnosis.md`` of an evaluation)."""
        t = [f"# Diagnosis{': ' + self.label if self.label else ''}", "", self.summary, ""]
        t += ["## Findings", ""]
        if self.findings:
            t += [f"- **{f.code}**: {f.observation} Likely cause: {f.likely_cause}" for f in self.findings]
        else:
            t.append("- none")
        t += ["", "## Measures", "", "| measure | x | y |", "| --- | --- | --- |"]
        rx, ry = self.ranges_px["x"], self.ranges_px["y"]
        t.append(f"| predicted range (px) | {_fmt_range(rx['pred'])} | {_fmt_range(ry['pred'])} |")
        t.append(f"| ground-truth range (px) | {_fmt_range(rx['gt'])} | {_fmt_range(ry['gt'])} |")
        t.append(f"| spread ratio pred/GT | {self.spread_ratio['x']:.2f} | {self.spread_ratio['y']:.2f} |")
        t.append(f"| mean offset (px) | {self.offset_px[0]:+.1f} | {self.offset_px[1]:+.1f} |")
        t.append(f"| mean offset (mm) | {self.offset_mm[0]:+.2f} | {self.offset_mm[1]:+.2f} |")
        t.append(f"| correlation pred/GT | {self.correlation['x']:.2f} | {self.correlation['y']:.2f} |")
        t += ["", f"Constellation size ratio (pred/GT, median over images): {self.constellation_ratio:.2f}. "
              f"MRE {self.mre_mm:.2f} mm over {self.n_points} points in {self.n_images} images."]
        if self.confidence:
            c = self.confidence
            t.append(f"Decoder confidence: mean {c['mean']:.3f}, median {c['median']:.3f}, "
                     f"Spearman vs error {c['spearman_vs_error']:.2f}.")
        t += ["", "## Per-landmark bias (mm)", "", "| landmark | n | MRE | mean dx | mean dy |",
              "| --- | --- | --- | --- | --- |"]
        for r in self.per_landmark:
            t.append(f"| {r['landmark']} | {r['n']} | {r['mre_mm']:.2f} | {r['bias_dx_mm']:+.2f} | "
                     f"{r['bias_dy_mm']:+.2f} |")
        return "\n".join(t) + "\n"


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
    rows = [r for r in per_landmark if r.get("n", 0) >= 2 and np.isfinite(r.get("bias_mm", np.nan))
            and r["bias_mm"] >= th["landmark_bias_mm"] and r["bias_mm"] >= th["landmark_bias_fraction"] * r["mre_mm"]]
    return sorted(rows, key=lambda r: -r["bias_mm"])


def _bias_words(r: dict) -> str:
    """``"sella 3.1 mm (dx +0.4, dy -3.1)"``: one biased landmark in words."""
    return f"{r['landmark']} {r['bias_mm']:.1f} mm (dx {r['bias_dx_mm']:+.1f}, dy {r['bias_dy_mm']:+.1f})"


#: plain words for the input normalisations (cephalo.preprocess.normalise) a run can use
_NORM_WORDS = {
    "raw": "raw grey values 0-255",
    "unit": "grey values scaled to 0-1 without the ImageNet mean/std",
    "imagenet": "grey values scaled to 0-1 and normalised with the ImageNet mean and standard deviation",
    "zscore": "grey values standardised per image",
}
_DECODER_WORDS = {
    "soft_argmax": "a soft-argmax over the raw network outputs (as the public HRNet demo reads its heatmaps), "
                   "which lands every landmark near the image centre when a heatmap has no sharp logit peak",
    "dark": "the DARK sub-pixel peak of each heatmap",
    "argmax": "the highest pixel of each heatmap",
}


def preprocessing_words(preprocessing: dict | None) -> str:
    """Plain-words cause of a collapse when a run's preprocessing differs from the model's training.

    Args:
        preprocessing: ``{"used": {"normalisation", "decoder"}, "expected": {...}, "variant": name,
            "fix_run": run name}``; ``None`` or no difference -> ``""``.

    Returns:
        one or two sentences a clinic can act on (what was wrong, and what fixes it), or ``""``.
    """
    if not preprocessing:
        return ""
    used, exp = dict(preprocessing.get("used") or {}), dict(preprocessing.get("expected") or {})
    parts = []
    if used.get("normalisation") and used.get("normalisation") != exp.get("normalisation"):
        parts.append(f"the images were given to the model as {_NORM_WORDS.get(used['normalisation'], used['normalisation'])}, "
                     f"but it was trained on {_NORM_WORDS.get(exp.get('normalisation'), exp.get('normalisation'))}, "
                     "so it sees images unlike those it learnt from")
    if used.get("decoder") and used.get("decoder") != exp.get("decoder"):
        parts.append(f"the heatmaps were read with {_DECODER_WORDS.get(used['decoder'], used['decoder'])}")
    if not parts:
        return ""
    fix = (f" Fix: use the preprocessing the model was trained with (variant {preprocessing.get('variant')}, "
           f"{exp.get('normalisation')} normalisation, {exp.get('decoder')} decoder)")
    if preprocessing.get("fix_run"):
        fix += f", as in the run {preprocessing['fix_run']}"
    else:
        fix += ", as the zero-shot run of the same variant does"
    return "a preprocessing mismatch: " + "; and ".join(parts) + "." + fix + "."


def _fmt_range(r: Sequence[float]) -> str:
    return f"{r[0]:.0f} .. {r[1]:.0f}"


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 2 or np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 3:
        return float("nan")
    from scipy import stats

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
            "expected": {...}, "variant": ..., "fix_run": ...}`` (see :func:`preprocessing_words`).

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

    ranges = {ax: {"pred": [float(p[:, i].min()), float(p[:, i].max())],
                   "gt": [float(g[:, i].min()), float(g[:, i].max())]} for i, ax in enumerate("xy")}
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

    corr = {"x": _corr(p[:, 0], g[:, 0]), "y": _corr(p[:, 1], g[:, 1]),
            "x_vs_gt_y": _corr(p[:, 0], g[:, 1]), "y_vs_gt_x": _corr(p[:, 1], g[:, 0])}
    off_px = [float(d_px[:, 0].mean()), float(d_px[:, 1].mean())]
    dmm = d_mm[ok]
    off_mm = [float(dmm[:, 0].mean()), float(dmm[:, 1].mean())]

    per_lm = []
    for k, name in enumerate(names):
        sel = ok[:, k]
        if not sel.any():
            per_lm.append({"landmark": str(name), "n": 0, "mre_mm": float("nan"), "bias_dx_mm": float("nan"),
                           "bias_dy_mm": float("nan"), "bias_mm": float("nan")})
            continue
        bx, by = float(d_mm[sel, k, 0].mean()), float(d_mm[sel, k, 1].mean())
        per_lm.append({"landmark": str(name), "n": int(sel.sum()), "mre_mm": float(err[sel, k].mean()),
                       "bias_dx_mm": bx, "bias_dy_mm": by, "bias_mm": float(np.hypot(bx, by))})

    conf = None
    if confidence is not None:
        c = np.asarray(confidence, dtype=np.float64)
        if c.shape != err.shape:
            raise ValueError(f"confidence {c.shape} does not match errors {err.shape}")
        cv = c[ok & np.isfinite(c)]
        if cv.size:
            conf = {"mean": float(cv.mean()), "median": float(np.median(cv)),
                    "spearman_vs_error": _spearman(c[ok & np.isfinite(c)], err[ok & np.isfinite(c)])}

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
        findings.append(Finding(
            "collapse",
            f"predictions collapsed{where}: the predicted landmark constellation is "
            f"{constellation:.2f} x the size of the ground truth's (spread ratio x {cx[0]}, y {cx[1]}).",
            preprocessing_words(preprocessing) or (
                "the network does not recognise its input - check normalisation (mean/std, 0-1 vs 0-255), "
                "input size / letterbox, and the mapping of heatmap coordinates back to the image."),
        ))
    elif np.isfinite(constellation) and not th["scale_low"] <= constellation <= th["scale_high"]:
        findings.append(Finding(
            "scale",
            f"the predicted constellation is {constellation:.2f} x the size of the ground truth's "
            f"(spread ratio x {cx[0]}, y {cx[1]}).",
            "a wrong resize factor or inverse affine when mapping back, a different heatmap stride, "
            "or a field of view / magnification unlike the training data.",
        ))
    if corr["x"] < th["flip_corr"] or corr["y"] < th["flip_corr"]:
        axes = [a for a in "xy" if corr[a] < th["flip_corr"]]
        findings.append(Finding(
            "flip",
            f"predicted {'/'.join(axes)} coordinates are anti-correlated with the ground truth "
            f"(r x {corr['x']:.2f}, y {corr['y']:.2f}).",
            "the image is mirrored (patient facing the other way) or an axis is flipped in the mapping.",
        ))
    if (np.isfinite(corr["x_vs_gt_y"]) and np.isfinite(corr["x"]) and corr["x_vs_gt_y"] > corr["x"] + 0.3
            and corr["y_vs_gt_x"] > corr["y"] + 0.3):
        findings.append(Finding(
            "axis_swap",
            f"predicted x follows ground-truth y (r {corr['x_vs_gt_y']:.2f}) better than ground-truth x "
            f"(r {corr['x']:.2f}).",
            "x and y swapped (row/column vs xy order) somewhere between decoder and evaluation.",
        ))
    if off_norm >= th["offset_min_mm"] and off_norm >= th["offset_fraction"] * mre:
        findings.append(Finding(
            "offset",
            f"systematic offset: predictions are shifted by mean dx {off_px[0]:+.1f} px ({off_mm[0]:+.2f} mm), "
            f"dy {off_px[1]:+.1f} px ({off_mm[1]:+.2f} mm), {100 * off_norm / mre:.0f} % of the MRE.",
            "letterbox padding or crop offset not undone, or a pixel-centre vs pixel-corner convention "
            "mismatch (half a heatmap stride); a constant shift is also what a different head position "
            "or field of view produces.",
        ))
    words = preprocessing_words(preprocessing)
    if words and not any(f.code == "collapse" for f in findings):
        findings.insert(0, Finding(
            "preprocessing", "this run did not feed or read the model the way it was trained.", words))
    if conf is not None and np.isfinite(conf["spearman_vs_error"]) and conf["spearman_vs_error"] < -0.3:
        findings.append(Finding(
            "confidence",
            f"decoder confidence tracks the error (Spearman {conf['spearman_vs_error']:.2f}).",
            "low-confidence landmarks are the failing ones: the model is uncertain there "
            "(appearance shift); confidence can flag them for review.",
        ))
    geometric = {"collapse", "scale", "flip", "axis_swap", "offset", "preprocessing"}
    if not any(f.code in geometric for f in findings) and mre > th["good_mre_mm"]:
        worst = sorted((r for r in per_lm if r["n"]), key=lambda r: -r["mre_mm"])[:3]
        findings.append(Finding(
            "landmark_specific",
            "no global geometric pattern; errors concentrate on "
            + ", ".join("{} ({:.1f} mm)".format(r["landmark"], r["mre_mm"]) for r in worst) + ".",
            "appearance domain shift (device, contrast, anatomy) or annotation-definition differences "
            "between data sets: fine-tune on the target data, or try intensity preprocessing.",
        ))

    # per-landmark bias beyond the global pattern: with a global offset named, what each landmark
    # adds to it; with another global pattern (collapse, scale, flip) per-landmark bias means nothing
    codes = {f.code for f in findings}
    if codes & {"collapse", "scale", "flip", "axis_swap", "preprocessing"}:
        biased = []
    elif "offset" in codes:
        rel = [dict(r, bias_dx_mm=r["bias_dx_mm"] - off_mm[0], bias_dy_mm=r["bias_dy_mm"] - off_mm[1],
                    bias_mm=float(np.hypot(r["bias_dx_mm"] - off_mm[0], r["bias_dy_mm"] - off_mm[1])))
               for r in per_lm if r["n"]]
        biased = biased_landmarks(rel, th)
    else:
        biased = biased_landmarks(per_lm, th)
    if biased:
        beyond = " beyond the global offset" if "offset" in codes else ""
        findings.append(Finding(
            "landmark_bias",
            f"{len(biased)} landmark(s) are displaced in a consistent direction{beyond} by "
            f"{th['landmark_bias_mm']:g} mm or more: " + "; ".join(_bias_words(r) for r in biased) + ".",
            "these landmarks are defined or annotated differently in the two data sets, or the anatomy "
            "around them looks different on the target devices: fine-tune on target annotations, and "
            "check the landmark definitions.",
        ))

    # informative findings (confidence, per-landmark bias) come after the failure patterns
    informative = {"confidence", "landmark_bias"}
    findings.sort(key=lambda f: (f.code in informative, f.code == "confidence"))
    failures = [f for f in findings if f.code not in informative]
    if not failures and mre <= th["good_mre_mm"]:
        summary = (f"The model works on these images: MRE {mre:.2f} mm over {int(ok.sum())} landmarks in "
                   f"{n_images} images, with no global geometric pattern.")
        if biased:
            summary += " But " + findings[0].observation
        elif findings:
            summary += " " + findings[0].observation
    else:
        head = findings[0]
        summary = (f"MRE {mre:.2f} mm over {int(ok.sum())} landmarks in {n_images} images. "
                   f"Main finding: {head.observation} Likely cause: {head.likely_cause}")
        rest = [f for f in findings[1:] if f.code != "landmark_bias"]
        if rest:
            summary += " Also: " + "; ".join(f.code for f in rest) + "."
        if biased and head.code != "landmark_bias":
            summary += " Per landmark: " + "; ".join(_bias_words(r) for r in biased) + "."
    return Diagnosis(
        n_images=n_images, n_points=int(ok.sum()), mre_mm=mre, ranges_px=ranges, spread_ratio=spread,
        constellation_ratio=constellation, offset_px=off_px, offset_mm=off_mm, correlation=corr,
        per_landmark=per_lm, confidence=conf, findings=findings, summary=summary, label=label,
    )


# ----------------------------------------------------------------------------------------------
# Mistakes in predictions made outside cephalo: hypotheses, each undone and measured


#: input sizes public landmark models use (tried beside the size fitted from the data)
COMMON_INPUT_SIZES = (128, 192, 224, 256, 288, 320, 384, 416, 448, 512, 576, 640, 768, 800, 1024, 1280)
#: the heatmap stride of HRNet-style landmark models (input px per heatmap px)
HEATMAP_STRIDE = 4


@dataclass
class Mistake:
    """One identified mistake in a predictions file, with its evidence and the MRE once undone.

    Attributes:
        code: ``letterbox_frame``, ``stretch_frame``, ``heatmap_frame``, ``normalised``,
            ``swapped_axes``, ``mirror``, ``mm_not_px``, ``constant_spacing``,
            ``landmark_order``, ``residual_offset``, ``residual_scale``, ``collapse``.
        title: the mistake in plain words.
        evidence: what in the predictions shows it (fitted sizes, scales, pads, correlations).
        fix: what to change in the pipeline that wrote the predictions.
        mre_before_mm, mre_after_mm: MRE (mm) before and after undoing it (``after`` NaN when the
            mistake cannot be undone from the predictions alone, e.g. a collapse).
        details: fitted parameters (JSON-serialisable).
    """

    code: str
    title: str
    evidence: str
    fix: str
    mre_before_mm: float
    mre_after_mm: float
    details: dict = field(default_factory=dict)


@dataclass
class _Hypothesis:
    code: str
    title: str
    evidence: str
    fix: str
    undone: np.ndarray  # (N, K, 2) predictions with the mistake undone, original px
    details: dict


def _mre(pred: np.ndarray, gt: np.ndarray, spacing: np.ndarray) -> float:
    e = radial_errors_mm(pred, gt, spacing)
    return float(np.nanmean(e)) if np.isfinite(e).any() else float("nan")


def _per_image(affines: Sequence[np.ndarray], pred: np.ndarray) -> np.ndarray:
    """Apply one ``(2, 3)`` affine per image (``geometry.apply_affine``)."""
    from ..geometry import apply_affine

    return np.stack([apply_affine(m, p) for m, p in zip(affines, pred)])


def _fit_scales(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image least-squares scale of the centred prediction vs the centred GT.

    Returns:
        (iso (N,), per_axis (N, 2)) float64; NaN for images with fewer than 2 shared points.
    """
    n = pred.shape[0]
    iso, axes = np.full(n, np.nan), np.full((n, 2), np.nan)
    for i in range(n):
        ok = np.isfinite(pred[i]).all(axis=1) & np.isfinite(gt[i]).all(axis=1)
        if ok.sum() < 2:
            continue
        pc = pred[i, ok] - pred[i, ok].mean(axis=0)
        gc = gt[i, ok] - gt[i, ok].mean(axis=0)
        den = (gc**2).sum()
        if den > 0:
            iso[i] = (pc * gc).sum() / den
        for a in range(2):
            d = (gc[:, a] ** 2).sum()
            if d > 0:
                axes[i, a] = (pc[:, a] * gc[:, a]).sum() / d
    return iso, axes


def _size_candidates(estimate: float, step: int = 1) -> list[int]:
    """Integer sizes near ``estimate`` (multiples of ``step``) plus common input sizes within 6 %."""
    if not np.isfinite(estimate) or estimate < 4:
        return []
    base = int(round(estimate / step)) * step
    out = {base + d * step for d in range(-3, 4) if base + d * step >= 4}
    out |= {s for s in COMMON_INPUT_SIZES if abs(s - estimate) <= 0.06 * estimate and s % step == 0}
    return sorted(out)


def _round_values(v: float) -> list[float]:
    """``v`` and its roundings to 1-3 significant digits (a spacing or scale someone typed)."""
    if not np.isfinite(v) or v <= 0:
        return []
    return sorted({float(v)} | {float(f"{v:.{d}g}") for d in (1, 2, 3)})


def _geometric_hypotheses(pred, gt, spacing, sizes) -> list[_Hypothesis]:
    """Every frame / unit / axis mistake, each undone with ``cephalo.geometry`` affines."""
    from ..geometry import compose, invert, letterbox_geometry, resize_affine, scale_translate

    hyps: list[_Hypothesis] = []
    wh = [(int(w), int(h)) for w, h in sizes]
    iso, axes = _fit_scales(pred, gt)
    longest = np.array([max(w, h) for w, h in wh], dtype=np.float64)

    # letterbox frame of a square input S: x' = (x + 0.5) * new_w / w - 0.5 + pad (geometry.Letterbox)
    s_est = float(np.nanmedian(iso * longest)) if np.isfinite(iso).any() else float("nan")
    for size in _size_candidates(s_est):
        lbs = [letterbox_geometry(s, size) for s in wh]
        undo = [invert(lb.affine()) for lb in lbs]
        hyps.append(_Hypothesis(
            "letterbox_frame", f"coordinates left in the {size} x {size} letterbox input frame",
            f"the predicted constellation is {np.nanmedian(iso):.3f} x the size of the ground truth's, which is "
            f"{size} px / the longest image side; undoing a {size} px letterbox (e.g. scale "
            f"{lbs[0].scale:.4f}, pads {list(lbs[0].pad)} px for a {wh[0][0]} x {wh[0][1]} image) fits",
            "map predictions back through the inverse of the letterbox (subtract the pads, divide by the "
            "scale) before saving them",
            _per_image(undo, pred),
            {"size": [size, size], "scale_example": lbs[0].scale, "pads_example": list(lbs[0].pad),
             "image_example": list(wh[0])}))
        # heatmap frame of that letterbox input (stride 4): letterbox, then resize S -> S / 4
    h_est = s_est * HEATMAP_STRIDE
    for size in _size_candidates(h_est, step=HEATMAP_STRIDE):
        hm = size // HEATMAP_STRIDE
        undo = [invert(compose(letterbox_geometry(s, size).affine(), resize_affine((size, size), (hm, hm))))
                for s in wh]
        hyps.append(_Hypothesis(
            "heatmap_frame", f"coordinates left in the {hm} x {hm} heatmap frame (stride {HEATMAP_STRIDE} of a "
            f"{size} px letterbox input)",
            f"the predicted constellation is {np.nanmedian(iso):.3f} x the ground truth's = {hm} heatmap px / the "
            f"longest image side; undoing the heatmap -> input ({HEATMAP_STRIDE}x) -> original mapping fits",
            f"multiply heatmap coordinates by the stride ({HEATMAP_STRIDE}, pixel-centre convention) and invert "
            "the letterbox before saving them",
            _per_image(undo, pred), {"input_size": [size, size], "heatmap_size": [hm, hm],
                                     "stride": HEATMAP_STRIDE}))
    # stretch frame: x' = (x + 0.5) * S_w / w - 0.5 (anisotropic resize, no pads)
    if np.isfinite(axes).any():
        sw_est = float(np.nanmedian(axes[:, 0] * [w for w, _ in wh]))
        sh_est = float(np.nanmedian(axes[:, 1] * [h for _, h in wh]))
        for sw in _size_candidates(sw_est):
            for sh in _size_candidates(sh_est):
                if abs(sw - sh) > 0.06 * max(sw, sh) and (sw, sh) != (round(sw_est), round(sh_est)):
                    continue
                undo = [invert(resize_affine(s, (sw, sh))) for s in wh]
                hyps.append(_Hypothesis(
                    "stretch_frame", f"coordinates left in the {sw} x {sh} stretched (resized) input frame",
                    f"x and y are scaled by different factors ({np.nanmedian(axes[:, 0]):.3f}, "
                    f"{np.nanmedian(axes[:, 1]):.3f}) = {sw} / width and {sh} / height",
                    f"map predictions back with x * width / {sw}, y * height / {sh} (pixel-centre convention)",
                    _per_image(undo, pred), {"size": [sw, sh]}))
    # normalised [0, 1] coordinates: x / width (or (x + 0.5) / width)
    for half, how in ((0.0, "x / width"), (0.5, "(x + 0.5) / width")):
        undo = [scale_translate(w, h, -half, -half) for w, h in wh]
        hyps.append(_Hypothesis(
            "normalised", f"coordinates normalised to [0, 1] ({how})",
            f"predictions lie in [{np.nanmin(pred):.2f}, {np.nanmax(pred):.2f}]; multiplying by each image's "
            "width and height fits",
            "multiply normalised coordinates by the image width / height before saving them",
            _per_image(undo, pred), {"convention": how}))
    # swapped axes and mirrors
    swap = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    hyps.append(_Hypothesis(
        "swapped_axes", "x and y swapped (row, column instead of x, y)",
        "predicted x follows the ground-truth y and predicted y the ground-truth x",
        "write x = column, y = row (numpy arrays index [row, column])",
        _per_image([swap] * len(wh), pred), {}))
    hyps.append(_Hypothesis(
        "mirror", "the image mirrored left-right (x -> width - 1 - x)",
        "predicted x runs opposite to the ground-truth x",
        "do not flip the image (or flip the predictions back) - a lateral cephalogram faces one way",
        _per_image([scale_translate(-1, 1, w - 1, 0) for w, _ in wh], pred), {}))
    hyps.append(_Hypothesis(
        "mirror", "the image flipped upside down (y -> height - 1 - y)",
        "predicted y runs opposite to the ground-truth y",
        "do not flip the image vertically (or flip the predictions back)",
        _per_image([scale_translate(1, -1, 0, h - 1) for _, h in wh], pred), {"axis": "y"}))
    # combined: swapped axes of a mirrored image (a transposed / rotated array), and a 180 degree turn
    for mir, what in (((lambda w, h: scale_translate(-1, 1, w - 1, 0)), "left-right"),
                      ((lambda w, h: scale_translate(1, -1, 0, h - 1)), "upside-down")):
        hyps.append(_Hypothesis(
            "swapped_axes", f"x and y swapped, and the image mirrored {what}",
            "predicted x follows the ground-truth y in reverse (a transposed or rotated image array)",
            "write x = column, y = row, and do not flip the image",
            _per_image([compose(swap, mir(w, h)) for w, h in wh], pred), {"mirror": what}))
    hyps.append(_Hypothesis(
        "mirror", "the image turned by 180 degrees (mirrored left-right and upside down)",
        "predicted x and y both run opposite to the ground truth",
        "do not rotate the image (or turn the predictions back)",
        _per_image([scale_translate(-1, -1, w - 1, h - 1) for w, h in wh], pred), {"axis": "xy"}))
    # units: mm instead of px (each image's spacing, or one spacing for all)
    sp = np.asarray(spacing, dtype=np.float64)
    hyps.append(_Hypothesis(
        "mm_not_px", "x/y in millimetres, not pixels",
        f"the predicted constellation is {np.nanmedian(iso):.3f} x the ground truth's, matching the pixel "
        f"spacing ({np.median(sp[:, 0]):.3g} mm/px); dividing by each image's spacing fits",
        "save pixel coordinates (or divide mm by the image's pixel spacing)",
        _per_image([scale_translate(1 / sx, 1 / sy) for sx, sy in sp], pred), {}))
    if np.isfinite(iso).any():
        c_const = float(np.nanmedian(iso))
        for c in _round_values(c_const):
            hyps.append(_Hypothesis(
                "mm_not_px", f"x/y in millimetres with one spacing of {c:g} mm/px for every image",
                f"every image's constellation is {c_const:.4g} x the ground truth's",
                f"save pixel coordinates (the pipeline multiplied them by {c:g} mm/px)",
                _per_image([scale_translate(1 / c, 1 / c)] * len(wh), pred), {"spacing_mm": c}))
        c_img = float(np.nanmedian(iso * sp[:, 0]))
        if np.ptp(sp[:, 0]) > 1e-9:
            for c in _round_values(c_img):
                hyps.append(_Hypothesis(
                    "constant_spacing", f"one constant pixel spacing ({c:g} mm/px) used for every image "
                    "instead of each image's own",
                    f"the per-image scale of the predictions times the image's spacing is constant "
                    f"({c_img:.4g} mm/px) while the spacings range {sp[:, 0].min():.3g}-{sp[:, 0].max():.3g} mm/px",
                    "convert between mm and px with each image's own pixel spacing (DICOM PixelSpacing or the "
                    "data set's device table)",
                    _per_image([scale_translate(sx / c, sy / c) for sx, sy in sp], pred), {"spacing_mm": c}))
    return hyps


def _order_hypotheses(pred, gt, spacing, names, relabelled: dict | None) -> list[_Hypothesis]:
    """Landmark order: reinterpretations of the file's landmark indices, and the best permutation."""
    from scipy.optimize import linear_sum_assignment

    hyps = []
    for key, alt in (relabelled or {}).items():
        hyps.append(_Hypothesis(
            "landmark_order", f"landmarks in the order of another catalogue ({key})",
            f"reading the file's landmark indices as positions in the {key} catalogue puts every landmark "
            "on its ground truth",
            f"write landmark names, or indices in the catalogue the file declares (the model's are in {key} order)",
            np.asarray(alt, dtype=np.float64), {"catalogue": key}))
    # the best one-to-one assignment of predicted slots to ground-truth landmarks (mean distance in mm)
    k = pred.shape[1]
    if k >= 2:
        have_p = np.isfinite(pred).all(-1).any(0)
        have_g = np.isfinite(gt).all(-1).any(0)
        pi, gi = np.flatnonzero(have_p), np.flatnonzero(have_g)
        if pi.size >= 2 and gi.size >= 2:
            sp = np.asarray(spacing, dtype=np.float64)
            # (N, P, G) radial distance in mm of every predicted slot to every GT landmark
            d = (pred[:, pi, None, :] - gt[:, None, gi, :]) * sp[:, None, None, :]
            e = np.hypot(d[..., 0], d[..., 1])
            with np.errstate(invalid="ignore"):
                cost = np.where(np.isfinite(e).any(0), np.nanmean(np.where(np.isfinite(e), e, np.nan), axis=0)
                                if np.isfinite(e).any() else 1e9, 1e9)
            r, c = linear_sum_assignment(cost)
            mapping = {int(pi[a]): int(gi[b]) for a, b in zip(r, c)}
            if any(j != kk for j, kk in mapping.items()):
                alt = np.full_like(gt, np.nan)
                for j, kk in mapping.items():
                    alt[:, kk] = pred[:, j]
                moved = [f"{names[j]} -> {names[kk]}" for j, kk in mapping.items() if j != kk]
                hyps.append(_Hypothesis(
                    "landmark_order", "landmarks in another order (a permutation of the landmark labels)",
                    f"{len(moved)} landmark labels fit another landmark's ground truth: " + ", ".join(moved[:8])
                    + (" ..." if len(moved) > 8 else ""),
                    "label predictions by landmark name, not by position",
                    alt, {"permutation": {names[j]: names[kk] for j, kk in mapping.items() if j != kk}}))
    return hyps


def _residual(pred, gt, spacing) -> list[_Hypothesis]:
    """A global offset, and a global isotropic scale + offset, fitted by least squares in px."""
    from ..geometry import scale_translate

    ok = np.isfinite(pred).all(-1) & np.isfinite(gt).all(-1)
    if ok.sum() < 3:
        return []
    p, g = pred[ok], gt[ok]
    t = (g - p).mean(axis=0)
    hyps = [_Hypothesis(
        "residual_offset", "a constant offset of every landmark",
        f"the mean error is dx {-t[0]:+.1f} px, dy {-t[1]:+.1f} px",
        "look for a crop, pad or half-pixel (pixel corner vs centre) shift in the pipeline",
        _per_image([scale_translate(1, 1, t[0], t[1])] * pred.shape[0], pred),
        {"offset_px": [float(-t[0]), float(-t[1])]})]
    pc, gc = p - p.mean(axis=0), g - g.mean(axis=0)
    if (pc**2).sum() > 0:
        a = float((pc * gc).sum() / (pc**2).sum())
        b = g.mean(axis=0) - a * p.mean(axis=0)
        hyps.append(_Hypothesis(
            "residual_scale", "a global scale (and offset) of the predictions",
            f"the predictions fit the ground truth after scaling by {a:.3f} about the origin and shifting by "
            f"({b[0]:+.1f}, {b[1]:+.1f}) px",
            "check the resize factor, the input size and the pixel spacing used to map predictions back",
            _per_image([scale_translate(a, a, b[0], b[1])] * pred.shape[0], pred),
            {"scale": a, "offset_px": [float(b[0]), float(b[1])]}))
    return hyps


def find_mistakes(
    pred: np.ndarray,
    gt: np.ndarray,
    spacing: np.ndarray,
    image_sizes: np.ndarray,
    names: Sequence[str],
    *,
    relabelled: dict | None = None,
    thresholds: dict | None = None,
    rounds: int = 2,
) -> list[Mistake]:
    """Find the mistakes that explain bad predictions, undo each, and measure the MRE after.

    Every hypothesis (a letterbox / stretch / heatmap input frame of a fitted size, normalised
    [0, 1] coordinates, swapped axes, a mirror, mm instead of px, one constant spacing, another
    catalogue's landmark order or any permutation) is undone with ``cephalo.geometry`` affines
    per image and scored by the MRE it leaves. The best one is accepted when it leaves at most
    ``mistake_max_fraction`` of the MRE and gains ``mistake_min_gain_mm``; the search repeats on
    the undone predictions (``rounds`` times, e.g. swapped axes *and* a mirror), then a residual
    global offset or scale is fitted. Sizes are fitted from the data (per-image least-squares scale
    x longest side) and tried with their neighbours and the common input sizes, so an exact
    mistake is undone exactly.

    Args:
        pred, gt: (N, K, 2) float64, xy; ``pred`` as the file gives it, ``gt`` original px.
        spacing: (N, 2) mm/px per image; image_sizes: (N, 2) original (width, height) px.
        names: K landmark names.
        relabelled: ``{catalogue key: (N, K, 2) predictions}`` re-read with the file's landmark
            indices as positions in that catalogue.
        thresholds: overrides of :data:`DEFAULT_DIAGNOSIS_THRESHOLDS`.

    Returns:
        the accepted :class:`Mistake` s in the order they were undone (empty: nothing explains the
        errors); each one's ``mre_after_mm`` includes the undoing of those before it.
    """
    return _search(pred, gt, spacing, image_sizes, names, relabelled, thresholds, rounds)[0]


def _search(pred, gt, spacing, image_sizes, names, relabelled, thresholds, rounds=2):
    """:func:`find_mistakes`, also returning the predictions with every accepted mistake undone."""
    th = {**DEFAULT_DIAGNOSIS_THRESHOLDS, **(thresholds or {})}
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    found: list[Mistake] = []
    current = pred
    for rnd in range(rounds):
        base = _mre(current, gt, spacing)
        if not np.isfinite(base):
            break
        hyps = _geometric_hypotheses(current, gt, spacing, image_sizes)
        hyps += _order_hypotheses(current, gt, spacing, names, relabelled if rnd == 0 else None)
        scored = [(_mre(h.undone, gt, spacing), i, h) for i, h in enumerate(hyps)]
        scored = [s for s in scored if np.isfinite(s[0])]
        if not scored:
            break
        after, _, best = min(scored, key=lambda s: (s[0], s[1]))
        if after > th["mistake_max_fraction"] * base or base - after < th["mistake_min_gain_mm"]:
            break
        found.append(Mistake(best.code, best.title, best.evidence, best.fix, base, after, best.details))
        current = best.undone
    base = _mre(current, gt, spacing)
    iso, _ = _fit_scales(current, gt)
    if np.isfinite(iso).any() and float(np.nanmedian(iso)) < th["collapse_ratio"]:
        return found, current  # a collapse: a global scale-up would not undo a mistake, it would fake one
    res = [(_mre(h.undone, gt, spacing), h) for h in _residual(current, gt, spacing)]
    if res and np.isfinite(base):
        off_after, off = res[0]
        pick = res[0]
        if len(res) > 1 and res[1][0] < off_after - max(0.1, 0.1 * base):
            pick = res[1]  # the scale earns its parameter
        after, h = pick
        if base - after >= th["residual_min_gain_mm"] and after <= (1 - th["residual_min_fraction"]) * base:
            found.append(Mistake(h.code, h.title, h.evidence, h.fix, base, after, h.details))
            current = h.undone
    return found, current


@dataclass
class PredictionsReport:
    """:func:`diagnose_predictions` result: metrics, mistakes found and undone, the diagnosis.

    Attributes:
        label: run name (in every title).
        mre_mm: MRE (mm) of the predictions as given; mre_after_mm: after undoing the mistakes.
        metrics, metrics_after: :func:`cephalo.evaluate.metrics.summarise` of both.
        mistakes: the :class:`Mistake` s, in the order they were undone.
        diagnosis: :func:`diagnose` of the predictions as given; diagnosis_after: of the undone
            ones (None when nothing was undone).
        summary: the plain-words verdict.
    """

    label: str
    mre_mm: float
    mre_after_mm: float
    metrics: dict
    metrics_after: dict
    mistakes: list
    diagnosis: Diagnosis
    diagnosis_after: Diagnosis | None
    summary: str

    def to_dict(self) -> dict:
        return {"label": self.label, "summary": self.summary, "mre_mm": self.mre_mm,
                "mre_after_mm": self.mre_after_mm, "metrics": self.metrics, "metrics_after": self.metrics_after,
                "mistakes": [asdict(m) for m in self.mistakes], "diagnosis": self.diagnosis.to_dict(),
                "diagnosis_after": self.diagnosis_after.to_dict() if self.diagnosis_after else None}

    def to_markdown(self) -> str:
        t = [f"# Diagnosis of predictions{': ' + self.label if self.label else ''}", "", self.summary, "",
             "## Mistakes found", ""]
        if self.mistakes:
            t += ["| # | mistake | evidence | MRE before (mm) | MRE after undoing (mm) | fix |",
                  "| --- | --- | --- | --- | --- | --- |"]
            for i, m in enumerate(self.mistakes, 1):
                after = "not invertible" if not np.isfinite(m.mre_after_mm) else f"{m.mre_after_mm:.2f}"
                t.append(f"| {i} | {m.title} | {m.evidence} | {m.mre_before_mm:.2f} | {after} | {m.fix} |")
        else:
            t.append("None: no frame, unit, axis or landmark-order mistake explains the errors.")
        t += ["", "## Metrics (mm)", "", "| | MRE | SD | SDR@2 | SDR@2.5 | SDR@3 | SDR@4 |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
        for name, m in (("as given", self.metrics), ("after undoing", self.metrics_after)):
            sd = m.get("sdr", {})
            t.append(f"| {name} | {m['mre_mm']:.2f} | {m['sd_mm']:.2f} | "
                     + " | ".join(f"{100 * sd[k]:.1f} %" if sd.get(k) is not None else "-"
                                  for k in ("2.0", "2.5", "3.0", "4.0")) + " |")
        d = self.diagnosis_after or self.diagnosis
        body = d.to_markdown().split("\n", 2)[2]  # drop its title line
        t += ["", "## Diagnosis " + ("after undoing the mistakes" if self.diagnosis_after else "as given"), "",
              body]
        return "\n".join(t).rstrip() + "\n"


def diagnose_predictions(
    pred: np.ndarray,
    gt: np.ndarray,
    spacing: np.ndarray,
    image_sizes: np.ndarray,
    names: Sequence[str],
    *,
    relabelled: dict | None = None,
    thresholds: dict | None = None,
    label: str = "",
) -> PredictionsReport:
    """What is wrong with predictions made by any pipeline: :func:`find_mistakes` + :func:`diagnose`.

    Args:
        pred: (N, K, 2) float64 as the file gives them (meant as original px, xy); NaN = missing.
        gt: (N, K, 2) float64 original px; spacing (N, 2) mm/px; image_sizes (N, 2) (w, h) px.
        names: K landmark names; relabelled, thresholds: see :func:`find_mistakes`.

    Returns:
        :class:`PredictionsReport` (metrics in mm through :mod:`cephalo.evaluate.metrics`).

    Raises:
        ValueError: no (image, landmark) pair with both a prediction and a ground truth.
    """
    from .metrics import summarise

    th = {**DEFAULT_DIAGNOSIS_THRESHOLDS, **(thresholds or {})}
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    d0 = diagnose(pred, gt, spacing, names, image_sizes=image_sizes, thresholds=th, label=label)
    mistakes, undone = _search(pred, gt, spacing, image_sizes, names, relabelled, th)
    d1 = diagnose(undone, gt, spacing, names, image_sizes=image_sizes, thresholds=th, label=label) \
        if mistakes else None
    m0 = summarise(radial_errors_mm(pred, gt, spacing))
    m1 = summarise(radial_errors_mm(undone, gt, spacing))
    mre0, mre1 = float(m0["mre_mm"]), float(m1["mre_mm"])
    if mistakes:
        steps = "; then ".join(f"{m.title} ({m.evidence}): undone, MRE {m.mre_after_mm:.2f} mm" for m in mistakes)
        summary = (f"MRE {mre0:.2f} mm as given. Found: {steps}. Fix: {mistakes[0].fix}.")
        if d1 is not None:
            summary += " After undoing: " + d1.summary
    elif any(f.code == "collapse" for f in d0.findings):
        f = next(f for f in d0.findings if f.code == "collapse")
        rx, gx = d0.ranges_px["x"]["pred"], d0.ranges_px["x"]["gt"]
        mistakes = [Mistake("collapse", "predictions collapsed" + (" toward the image centre" if "centre" in
                                                                    f.observation else ""),
                            f"{f.observation} Predicted x {rx[0]:.0f}-{rx[1]:.0f} px where the ground truth "
                            f"spans {gx[0]:.0f}-{gx[1]:.0f} px; mean offset dx {d0.offset_px[0]:+.0f}, dy "
                            f"{d0.offset_px[1]:+.0f} px.", f.likely_cause, mre0, float("nan"),
                            {"constellation_ratio": d0.constellation_ratio})]
        summary = (f"MRE {mre0:.2f} mm as given. {mistakes[0].evidence} This cannot be undone from the "
                   f"predictions: the model's input was wrong. Likely cause: {f.likely_cause}")
    else:
        worst = sorted((r for r in d0.per_landmark if r["n"]), key=lambda r: -r["mre_mm"])[:5]
        summary = (f"MRE {mre0:.2f} mm as given. No frame, unit, axis or landmark-order mistake explains the "
                   "errors. " + d0.summary + " Worst landmarks: "
                   + ", ".join(f"{r['landmark']} {r['mre_mm']:.1f} mm" for r in worst) + ".")
    return PredictionsReport(label=label, mre_mm=mre0, mre_after_mm=mre1, metrics=m0, metrics_after=m1,
                             mistakes=mistakes, diagnosis=d0, diagnosis_after=d1, summary=summary)

