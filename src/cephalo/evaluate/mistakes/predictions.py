"""What is wrong with predictions made by any pipeline: metrics, mistakes undone, diagnosis."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from ..diagnosis import DEFAULT_DIAGNOSIS_THRESHOLDS, diagnose
from ..diagnosis_report import Diagnosis
from ..metrics import radial_errors_mm, summarise
from .report import Mistake, explain, mistakes_of

__all__ = ["PredictionsReport", "diagnose_predictions"]


@dataclass
class PredictionsReport:
    """:func:`diagnose_predictions` result: metrics, mistakes found and undone, the diagnosis.

    Attributes:
        label: run name (in every title).
        mre_mm: MRE (mm) of the predictions as given; mre_after_mm: after undoing the mistakes.
        metrics, metrics_after: :func:`cephalo.evaluate.metrics.summarise` of both.
        mistakes: the :class:`Mistake` s (per group when the groups differ).
        groups: one row per explained group: ``group, n_images, mre_mm, mre_after_mm, mistakes``.
        diagnosis: :func:`diagnose` of the predictions as given; diagnosis_after: of the undone
            ones (None when nothing was undone).
        summary: the plain-words verdict.
        undone: (N, K, 2) float64 predictions with every accepted mistake undone (original px).
        input: counts of what the file held (rows, duplicates, NaN, unknown and missing images).
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
    groups: list = field(default_factory=list)
    undone: np.ndarray | None = None
    input: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-serialisable dict (no arrays)."""
        return {
            "label": self.label,
            "summary": self.summary,
            "mre_mm": self.mre_mm,
            "mre_after_mm": self.mre_after_mm,
            "metrics": self.metrics,
            "metrics_after": self.metrics_after,
            "mistakes": [asdict(m) for m in self.mistakes],
            "groups": self.groups,
            "input": self.input,
            "diagnosis": self.diagnosis.to_dict(),
            "diagnosis_after": self.diagnosis_after.to_dict() if self.diagnosis_after else None,
        }

    def to_markdown(self) -> str:
        """The ``diagnosis.md`` report."""
        t = [
            f"# Diagnosis of predictions{': ' + self.label if self.label else ''}",
            "",
            self.summary,
            "",
            "## Mistakes found",
            "",
        ]
        if self.mistakes:
            t += [
                "| # | group | mistake | evidence | MRE before (mm) | MRE after undoing (mm) | fix |",
                "| --- | --- | --- | --- | --- | --- | --- |",
            ]
            for i, m in enumerate(self.mistakes, 1):
                after = "not invertible" if not np.isfinite(m.mre_after_mm) else f"{m.mre_after_mm:.2f}"
                t.append(
                    f"| {i} | {m.group or 'all images'} | {m.title} | {m.evidence} | {m.mre_before_mm:.2f} | "
                    f"{after} | {m.fix} |"
                )
        else:
            t.append("None: no frame, unit, axis or landmark-order mistake explains the errors.")
        if len(self.groups) > 1:
            t += [
                "",
                "## Per group",
                "",
                "| group | images | MRE as given (mm) | after (mm) | mistakes |",
                "| --- | --- | --- | --- | --- |",
            ]
            t += [
                f"| {g['group']} | {g['n_images']} | {g['mre_mm']:.2f} | {g['mre_after_mm']:.2f} | "
                f"{', '.join(g['mistakes']) or 'none'} |"
                for g in self.groups
            ]
        if self.input:
            t += ["", "## Input", ""] + [f"- {k.replace('_', ' ')}: {v}" for k, v in self.input.items()]
        t += [
            "",
            "## Metrics (mm)",
            "",
            "| | MRE | SD | SDR@2 | SDR@2.5 | SDR@3 | SDR@4 |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for name, m in (("as given", self.metrics), ("after undoing", self.metrics_after)):
            sd = m.get("sdr", {})
            t.append(
                f"| {name} | {m['mre_mm']:.2f} | {m['sd_mm']:.2f} | "
                + " | ".join(
                    f"{100 * sd[k]:.1f} %" if sd.get(k) is not None else "-" for k in ("2.0", "2.5", "3.0", "4.0")
                )
                + " |"
            )
        d = self.diagnosis_after or self.diagnosis
        body = d.to_markdown().split("\n", 2)[2]  # drop its title line
        t += ["", "## Diagnosis " + ("after undoing the mistakes" if self.diagnosis_after else "as given"), "", body]
        return "\n".join(t).rstrip() + "\n"


def _collapse(d0: Diagnosis, mre0: float) -> tuple[list, str]:
    f = next(f for f in d0.findings if f.code == "collapse")
    rx, gx = d0.ranges_px["x"]["pred"], d0.ranges_px["x"]["gt"]
    m = Mistake(
        "collapse",
        "predictions collapsed" + (" toward the image centre" if "centre" in f.observation else ""),
        f"{f.observation} Predicted x {rx[0]:.0f}-{rx[1]:.0f} px where the ground truth spans "
        f"{gx[0]:.0f}-{gx[1]:.0f} px; mean offset dx {d0.offset_px[0]:+.0f}, dy {d0.offset_px[1]:+.0f} px.",
        f.likely_cause,
        mre0,
        float("nan"),
        {"constellation_ratio": d0.constellation_ratio},
    )
    return [m], (
        f"MRE {mre0:.2f} mm as given. {m.evidence} This cannot be undone from the predictions: the "
        f"model's input was wrong. Likely cause: {f.likely_cause}"
    )


def diagnose_predictions(
    pred: np.ndarray,
    gt: np.ndarray,
    spacing: np.ndarray,
    image_sizes: np.ndarray,
    names: Sequence[str],
    *,
    relabelled: dict | None = None,
    groups: Mapping[str, Sequence] | None = None,
    units: str = "px",
    thresholds: dict | None = None,
    label: str = "",
) -> PredictionsReport:
    """What is wrong with predictions made by any pipeline: :func:`explain` + :func:`diagnose`.

    Args:
        pred: (N, K, 2) float64 xy as the file gives them (meant as original px, origin at the
            centre of the top-left pixel; mm columns already divided by each image's spacing), NaN =
            missing.
        gt: (N, K, 2) float64 original px; spacing: (N, 2) float64 mm/px (x, y); image_sizes: (N, 2)
            int (width, height) px.
        names: K landmark names.
        relabelled: ``{catalogue key: (N, K, 2)}`` the file's landmark indices read in that catalogue.
        groups: ``{index column: (N,) labels}`` to explain each device / size / ... on its own.
        units: ``"px"`` or ``"mm"``: the file's columns.
        thresholds: overrides of ``DEFAULT_DIAGNOSIS_THRESHOLDS``; label: run name.

    Returns:
        :class:`PredictionsReport` (metrics in mm through :mod:`cephalo.evaluate.metrics`).

    Raises:
        ValueError: shapes disagree, or no (image, landmark) pair has both a prediction and a truth.
    """
    th = {**DEFAULT_DIAGNOSIS_THRESHOLDS, **(thresholds or {})}
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[-1] != 2:
        raise ValueError(f"predictions {pred.shape} and ground truth {gt.shape} must both be (N, K, 2)")
    d0 = diagnose(pred, gt, spacing, names, image_sizes=image_sizes, thresholds=th, label=label)
    found, undone = explain(
        {"": pred, **(relabelled or {})}, gt, spacing, image_sizes, groups=groups, units=units, thresholds=th
    )
    mistakes = [m for lab, ex in found for m in mistakes_of(lab, ex)]
    rows = [
        {
            "group": lab or "all images",
            "n_images": int(len(ex.rows)),
            "mre_mm": ex.mre_before_mm,
            "mre_after_mm": ex.mre_after_mm,
            "mistakes": [m.code for m in mistakes_of(lab, ex)],
        }
        for lab, ex in found
    ]
    m0 = summarise(radial_errors_mm(pred, gt, spacing))
    m1 = summarise(radial_errors_mm(undone, gt, spacing))
    mre0, mre1 = float(m0["mre_mm"]), float(m1["mre_mm"])
    d1 = diagnose(undone, gt, spacing, names, image_sizes=image_sizes, thresholds=th, label=label) if mistakes else None
    if mistakes:
        by_group = []
        for lab, ex in found:
            ms = mistakes_of(lab, ex)
            if ms:
                by_group.append(
                    (f"{lab}: " if lab else "")
                    + "; ".join(m.title for m in ms)
                    + f" (MRE {ex.mre_before_mm:.2f} -> {ex.mre_after_mm:.2f} mm)"
                )
        clean = [lab for lab, ex in found if not mistakes_of(lab, ex)]
        summary = (
            f"MRE {mre0:.2f} mm as given, {mre1:.2f} mm once undone. Found: "
            + ". ".join(by_group)
            + "."
            + (f" No mistake in {', '.join(clean)}." if clean else "")
            + f" Fix: {mistakes[0].fix}."
        )
        if d1 is not None:
            summary += " After undoing: " + d1.summary
    elif any(f.code == "collapse" for f in d0.findings):
        mistakes, summary = _collapse(d0, mre0)
    else:
        worst = sorted((r for r in d0.per_landmark if r["n"]), key=lambda r: -r["mre_mm"])[:5]
        summary = (
            f"MRE {mre0:.2f} mm as given. No frame, unit, axis or landmark-order mistake explains the "
            "errors. "
            + d0.summary
            + " Worst landmarks: "
            + ", ".join(f"{r['landmark']} {r['mre_mm']:.1f} mm" for r in worst)
            + "."
        )
    return PredictionsReport(
        label=label,
        mre_mm=mre0,
        mre_after_mm=mre1,
        metrics=m0,
        metrics_after=m1,
        mistakes=mistakes,
        diagnosis=d0,
        diagnosis_after=d1,
        summary=summary,
        groups=rows,
        undone=undone,
    )
