"""Mistakes in predictions made by any pipeline: searched globally and per image group, named."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..diagnosis import DEFAULT_DIAGNOSIS_THRESHOLDS
from .search import Explanation, explain_group
from .stats import errors_mm, significantly_lower
from .transforms import Structure
from .words import components, describe

__all__ = ["Mistake", "explain", "find_mistakes", "mistakes_of"]


@dataclass
class Mistake:
    """One identified mistake in a predictions file, with its evidence and the MRE once undone.

    Attributes:
        code: ``letterbox_frame``, ``stretch_frame``, ``heatmap_frame``, ``normalised``,
            ``swapped_axes``, ``mirror``, ``mm_not_px``, ``px_as_mm``, ``constant_spacing``,
            ``global_scale``, ``landmark_order``, ``residual_offset``, ``residual_scale``, ``collapse``.
        title: the mistake in plain words (frame size, padding side, label formula as in code).
        evidence: what shows it (MRE gain on held-out images, group, equally fitting readings).
        fix: what to change in the pipeline that wrote the predictions.
        mre_before_mm, mre_after_mm: MRE (mm) of its group as given and once its whole composition
            is undone (``after`` NaN when it cannot be undone, e.g. a collapse).
        details: fitted parameters (JSON-serialisable).
        group: ``""`` (every image) or ``"column=value"`` (e.g. ``device=B``).
        alternatives: other compositions that fit equally well (same fix on the coordinates).
    """

    code: str
    title: str
    evidence: str
    fix: str
    mre_before_mm: float
    mre_after_mm: float
    details: dict = field(default_factory=dict)
    group: str = ""
    alternatives: list = field(default_factory=list)


def _sub(pred: Mapping[str, np.ndarray], rows: np.ndarray) -> dict:
    return {k: v[rows] for k, v in pred.items()}


def explain(
    pred: Mapping[str, np.ndarray],
    gt: np.ndarray,
    spacing: np.ndarray,
    sizes: np.ndarray,
    *,
    groups: Mapping[str, Sequence] | None = None,
    units: str = "px",
    thresholds: dict | None = None,
) -> tuple[list[tuple[str, Explanation]], np.ndarray]:
    """Explain the whole file, or each group of one index column where that fits significantly better.

    A global explanation is replaced by per-group ones when the per-group errors are lower by more
    than 3 standard errors, or when the global one makes some group worse than as given.

    Args:
        pred: ``{catalogue key: (N, K, 2) float64}``, ``""`` = the file as read (px; mm columns
            already divided by each image's spacing).
        gt: (N, K, 2) float64 original px; spacing: (N, 2) mm/px; sizes: (N, 2) int (width, height).
        groups: ``{column: (N,) labels}`` (device, image size, ...).
        units: ``"px"`` or ``"mm"`` (the file's columns).

    Returns:
        ``([(group label, Explanation)], undone (N, K, 2) float64)``; label ``""`` = every image.

    Raises:
        ValueError: a prediction array, the spacings or the sizes do not match ``gt``'s shape.
    """
    th = {**DEFAULT_DIAGNOSIS_THRESHOLDS, **(thresholds or {})}
    gt = np.asarray(gt, dtype=np.float64)
    sp = np.asarray(spacing, dtype=np.float64)
    wh = np.asarray(sizes)
    pred = {k: np.asarray(v, dtype=np.float64) for k, v in pred.items()}
    bad = [k or "predictions" for k, v in pred.items() if v.shape != gt.shape]
    if gt.ndim != 3 or gt.shape[-1] != 2 or bad or sp.shape != (len(gt), 2) or wh.shape != (len(gt), 2):
        raise ValueError(
            f"shapes disagree: ground truth {gt.shape} (N, K, 2), {bad or 'predictions ok'}, "
            f"spacing {sp.shape} and sizes {wh.shape} (N, 2)"
        )
    glob = explain_group(dict(pred), gt, sp, wh, units, th)
    e0 = errors_mm(pred[""], gt, sp)
    e_glob = errors_mm(glob.undone, gt, sp)
    best = None
    for col, labels in (groups or {}).items():
        labels = np.asarray([str(v) for v in labels], dtype=object)
        vals = list(dict.fromkeys(labels))
        if not 2 <= len(vals) <= max(2, len(gt) // 2):
            continue
        per, undone = [], np.full_like(gt, np.nan)
        for v in vals:
            rows = np.flatnonzero(labels == v)
            ex = explain_group(_sub(pred, rows), gt[rows], sp[rows], wh[rows], units, th)
            ex.rows = rows
            undone[rows] = ex.undone
            per.append((f"{col}={v}", ex))
        e = errors_mm(undone, gt, sp)
        worse = any(significantly_lower(e0[ex.rows], e_glob[ex.rows], 3.0, 0.0) for _, ex in per)
        if (significantly_lower(e, e_glob, 3.0, 0.0) or worse) and (best is None or np.nanmean(e) < best[0]):
            best = (float(np.nanmean(e)), per, undone)
    if best is not None and any(ex.structure != Structure() or ex.residual for _, ex in best[1]):
        return best[1], best[2]
    return [("", glob)], glob.undone


def mistakes_of(label: str, ex: Explanation) -> list[Mistake]:
    """The :class:`Mistake` s of one group's explanation (``[]`` when it claims none).

    Each part of the composition is one mistake with the group's MRE as given and once the whole
    composition is undone; a residual offset / scale comes last, with the MRE before and after it.
    """
    out = []
    alts = [describe(a) for a in ex.alternatives]
    where = f" in the images of {label}" if label else ""
    ev = (
        f"undoing it{where} lowers the MRE of held-out images by {ex.gain_mm:.2f} mm "
        f"(standard error {ex.gain_se_mm:.2f} mm): {ex.mre_before_mm:.2f} -> {ex.mre_structure_mm:.2f} mm"
    )
    if alts:
        ev += "; equally consistent with: " + "; or ".join(alts) + " (the same correction of the coordinates"
        scale = [a.c for a in ex.alternatives if a.unit == "const" and not a.frame.kind and not a.mirror]
        ev += f": x_px = x_file / {scale[0]:g}, y_px = y_file / {scale[0]:g})" if scale else ")"
    for code, title, fix, det in components(ex.structure, ex.wh_example):
        out.append(Mistake(code, title, ev, fix, ex.mre_before_mm, ex.mre_structure_mm, det, label, alts))
    if ex.residual:
        kind, par = ex.residual
        if kind == "offset":
            out.append(
                Mistake(
                    "residual_offset",
                    "a constant offset of every landmark",
                    f"the mean error{where} is dx {-par[0]:+.1f} px, dy {-par[1]:+.1f} px, confirmed on "
                    "held-out images",
                    "look for a crop, pad or half-pixel (pixel corner vs centre) shift in the pipeline",
                    ex.mre_structure_mm,
                    ex.mre_after_mm,
                    {"offset_px": [-par[0], -par[1]]},
                    label,
                )
            )
        else:
            out.append(
                Mistake(
                    "residual_scale",
                    "a global scale (and offset) of the predictions",
                    f"the predictions{where} fit after scaling by {par[0]:.3f} about the origin and "
                    f"shifting by ({par[1]:+.1f}, {par[2]:+.1f}) px, confirmed on held-out images",
                    "check the resize factor, the input size and the pixel spacing used to map predictions back",
                    ex.mre_structure_mm,
                    ex.mre_after_mm,
                    {"scale": par[0], "offset_px": par[1:]},
                    label,
                )
            )
    return out


def find_mistakes(
    pred: np.ndarray,
    gt: np.ndarray,
    spacing: np.ndarray,
    image_sizes: np.ndarray,
    names: Sequence[str] | None = None,
    *,
    relabelled: dict | None = None,
    groups: Mapping[str, Sequence] | None = None,
    units: str = "px",
    thresholds: dict | None = None,
) -> list[Mistake]:
    """The mistakes that explain bad predictions, each named and undone (see :func:`explain`).

    Args:
        pred: (N, K, 2) float64 xy as the file gives them (meant as original px, origin at the
            centre of the top-left pixel), NaN = missing.
        gt: (N, K, 2) float64 original px; spacing: (N, 2) mm/px; image_sizes: (N, 2) (width, height).
        names: K landmark names (unused; kept for the callers of earlier versions).
        relabelled: ``{catalogue key: (N, K, 2)}`` the file's landmark indices read in that catalogue.
        groups: ``{column: (N,) labels}``; units: ``"px"`` or ``"mm"``.

    Returns:
        the accepted :class:`Mistake` s (empty: nothing explains the errors).
    """
    pr = {"": np.asarray(pred, dtype=np.float64), **(relabelled or {})}
    found, _ = explain(pr, gt, spacing, image_sizes, groups=groups, units=units, thresholds=thresholds)
    return [m for label, ex in found for m in mistakes_of(label, ex)]
