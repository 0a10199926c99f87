"""What a diagnosis says and how it reads: its records, its Markdown report, its plain words.

:class:`Finding` (one pattern, what was seen, the likely cause) and :class:`Diagnosis` (the measures
and findings, with the ``diagnosis.md`` report); :func:`preprocessing_words` names a run's
preprocessing mismatch and :func:`bias_words` one biased landmark. The measuring and the naming of
the patterns are :func:`cephalo.evaluate.diagnosis.diagnose`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

__all__ = ["Finding", "Diagnosis", "preprocessing_words", "bias_words"]


@dataclass
class Finding:
    """One diagnosed pattern: a code (``collapse``, ``offset``, ...), what was seen, likely cause."""

    code: str
    observation: str
    likely_cause: str


@dataclass
class Diagnosis:
    """Result of :func:`cephalo.evaluate.diagnosis.diagnose`. All coordinates are original-image pixels;
    mm uses the spacing.

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
        t += [
            "",
            f"Constellation size ratio (pred/GT, median over images): {self.constellation_ratio:.2f}. "
            f"MRE {self.mre_mm:.2f} mm over {self.n_points} points in {self.n_images} images.",
        ]
        if self.confidence:
            c = self.confidence
            t.append(
                f"Decoder confidence: mean {c['mean']:.3f}, median {c['median']:.3f}, "
                f"Spearman vs error {c['spearman_vs_error']:.2f}."
            )
        t += [
            "",
            "## Per-landmark bias (mm)",
            "",
            "| landmark | n | MRE | mean dx | mean dy |",
            "| --- | --- | --- | --- | --- |",
        ]
        for r in self.per_landmark:
            t.append(
                f"| {r['landmark']} | {r['n']} | {r['mre_mm']:.2f} | {r['bias_dx_mm']:+.2f} | {r['bias_dy_mm']:+.2f} |"
            )
        return "\n".join(t) + "\n"


def bias_words(r: dict) -> str:
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
        parts.append(
            f"the images were given to the model as {_NORM_WORDS.get(used['normalisation'], used['normalisation'])}, "
            f"but it was trained on {_NORM_WORDS.get(exp.get('normalisation'), exp.get('normalisation'))}, "
            "so it sees images unlike those it learnt from"
        )
    if used.get("decoder") and used.get("decoder") != exp.get("decoder"):
        parts.append(f"the heatmaps were read with {_DECODER_WORDS.get(used['decoder'], used['decoder'])}")
    if not parts:
        return ""
    fix = (
        f" Fix: use the preprocessing the model was trained with (variant {preprocessing.get('variant')}, "
        f"{exp.get('normalisation')} normalisation, {exp.get('decoder')} decoder)"
    )
    if preprocessing.get("fix_run"):
        fix += f", as in the run {preprocessing['fix_run']}"
    else:
        fix += ", as the zero-shot run of the same variant does"
    return "a preprocessing mismatch: " + "; and ".join(parts) + "." + fix + "."


def _fmt_range(r: Sequence[float]) -> str:
    return f"{r[0]:.0f} .. {r[1]:.0f}"
