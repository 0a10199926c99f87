"""What a clinic reads next to the landmarks of one predicted image: radii, flags, measurements.

:func:`assess` combines, for one :class:`cephalo.predict.ImagePrediction` and its decoded image:

* calibrated prediction radii (:mod:`cephalo.uncertainty`) in mm (with the image's spacing) and in
  original pixels per axis (``radius_mm / spacing``); without a spacing, no radius at all (the
  calibration's pixel table belongs to the calibration images' resolution, not this image's);
* review flags (:mod:`cephalo.flags`);
* cephalometric measurements (:mod:`cephalo.measurements`) with their normal range, status
  (``below`` / ``normal`` / ``above``), ISBI class where defined, and interval half-width from the
  radii. Without a pixel spacing, angles and ratios are computed assuming square pixels (stated in
  ``assumes_square_pixels``) and millimetre measurements are left out.

The gate: a measurement is ``reliable`` only when its image carries none of the flags that
invalidate the image's geometry (:data:`cephalo.flags.GEOMETRY_FLAGS`: not a cephalogram, noise,
implausible landmark constellation, landmarks not found) and every landmark it reads was found
(not ``outside``, not ``no_position``), and its value lies inside :data:`cephalo.measurements.PLAUSIBLE`
(ODI 198 deg is a failed prediction, not a patient). An unreliable measurement keeps its computed ``value`` in
the JSON/CSV (for audit) but gets no ``status`` and no ``class``; ``unreliable_because`` says why,
and the report and overlay print the reason instead of the number.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from . import measurements as MS
from .flags import GEOMETRY_FLAGS, ReviewConfig, ShapeModel, review

__all__ = ["assess", "shape_model_of", "gate_reasons", "interval_spans"]


def shape_model_of(calibration: Mapping | None) -> ShapeModel | None:
    """The shape model stored in a calibration, or None."""
    if calibration and calibration.get("shape_model"):
        return ShapeModel.from_dict(calibration["shape_model"])
    return None


def _num(v: Any) -> float | None:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def assess(
    pred: Any,
    image: np.ndarray,
    calibration: Mapping | None = None,
    cfg: ReviewConfig | None = None,
    shape_model: ShapeModel | None = None,
) -> dict:
    """Radii, flags and measurements of one prediction.

    Args:
        pred: an ``ImagePrediction`` (``coords`` (K, 2) original px, ``confidence``, ``degenerate``,
            ``spacing`` (x, y) mm/px or None, ``landmark_names``, ``in_image()``).
        image: its decoded (H, W) image.
        calibration: the checkpoint's conformal calibration, or None (no radii, no radius flags).
        cfg: review thresholds; ``cfg.coverage`` is the radius level.
        shape_model: default ``shape_model_of(calibration)``.

    Returns:
        ``{"coverage": level | None, "radius_mm": (K,) | None, "radius_px": (K, 2) | None,
        "review": flags.review(...) dict, "measurements": {key: {...}}, "assumes_square_pixels": bool}``
        (numpy arrays; JSON conversion is the writer's).
    """
    from .uncertainty import radii

    cfg = cfg or ReviewConfig()
    names = list(pred.landmark_names)
    conf = np.asarray(pred.confidence, dtype=np.float64)
    sp = None if pred.spacing is None else (float(pred.spacing[0]), float(pred.spacing[1]))
    r_mm = r_px = None
    level = None
    if calibration:
        level = cfg.coverage
        if sp is not None and calibration.get("q_mm"):
            r_mm = radii(calibration, names, conf, level, "mm")
            r_px = np.stack([r_mm / sp[0], r_mm / sp[1]], axis=-1)
        # without a spacing there is no radius: the calibration's pixel table is in the calibration
        # images' pixels (another resolution), so drawing it on this image would be wrong by their ratio
    sm = shape_model if shape_model is not None else shape_model_of(calibration)
    rev = review(image, pred.coords, names, sp, pred.in_image(), pred.degenerate, r_mm, sm, cfg)
    spacing = np.asarray(sp if sp is not None else (1.0, 1.0))
    keys = [k for k in MS.available(names) if sp is not None or MS.MEASUREMENTS[k].unit != "mm"]
    vals = MS.compute(pred.coords[None], names, spacing, keys) if keys else {}
    half = (
        MS.measurement_intervals(pred.coords[None], names, spacing, r_mm, keys) if (keys and r_mm is not None) else {}
    )
    gate = [f for f in rev["image"] if f in GEOMETRY_FLAGS]
    meas = {}
    for k in keys:
        m = MS.MEASUREMENTS[k]
        v = float(vals[k][0])
        why = gate_reasons(gate, m.landmarks, names, rev["landmarks"])
        if not math.isfinite(v):
            why = why or ["not computable (a landmark is missing or the construction degenerates)"]
        elif k in MS.PLAUSIBLE and not (MS.PLAUSIBLE[k][0] <= v <= MS.PLAUSIBLE[k][1]):
            lo, hi = MS.PLAUSIBLE[k]
            why.append(
                f"value {v:.4g} outside the plausible range {lo:g} to {hi:g} of a human head (a prediction failure)"
            )
        reliable = not why
        cls = int(MS.classify(k, np.array([v]))[0]) if (m.classes and reliable) else 0
        hw = float(half[k][0]) if k in half and np.isfinite(half[k][0]) else None
        spans = interval_spans(m, v, hw) if reliable else {"status": [], "classes": []}
        meas[k] = {
            "value": _num(v),
            "unit": m.unit,
            "title": m.title,
            "normal": list(m.normal),
            "normal_source": m.normal_source,
            "norm_reference": m.norm_reference,
            "status": m.status(v) if reliable else None,
            "class": cls or None,
            "class_name": next((c.name for c in m.classes if c.label == cls), None),
            "class_reference": "ISBI 2015" if m.classes else None,
            "half_width": _num(half[k][0]) if k in half else None,
            "reliable": reliable,
            "unreliable_because": why,
            # the interval value +/- half_width reaches these statuses / classes: one = settled
            "interval_statuses": spans["status"],
            "interval_classes": spans["classes"],
        }
    return {
        "coverage": level,
        "radius_mm": r_mm,
        "radius_px": r_px,
        "review": rev,
        "measurements": meas,
        "assumes_square_pixels": sp is None,
    }


def interval_spans(m: MS.Measurement, value: float, half_width: float | None) -> dict:
    """Statuses and classes reached by the interval ``value +/- half_width`` (the band edges it crosses).

    Args:
        m: the measurement; value: its value; half_width: from the landmark radii, or None (no interval:
            only the value's own status/class).

    Returns:
        ``{"status": [...], "classes": [...]}`` in order (``below``/``normal``/``above``; class labels);
        more than one entry means the radii do not settle the status or class.
    """
    if not math.isfinite(value):
        return {"status": [], "classes": []}
    hw = 0.0 if half_width is None else float(half_width)
    lo, hi = value - hw, value + hw
    pts = [lo, value, hi] + [e for e in (m.normal[0], m.normal[1]) if lo < e < hi]
    for c in m.classes:
        pts += [e for e in (c.lo, c.hi) if math.isfinite(e) and lo < e < hi]
    pts = sorted(set(pts))
    # sample each edge and the open pieces between edges
    probe = pts + [(a + b) / 2 for a, b in zip(pts, pts[1:], strict=False)]
    order = {"below": 0, "normal": 1, "above": 2}
    statuses = sorted({m.status(x) for x in probe} - {None}, key=order.get)
    classes = sorted({int(c) for c in MS.classify(m.key, np.array(probe))} - {0}) if m.classes else []
    return {"status": statuses, "classes": classes}


def gate_reasons(
    image_flags: Sequence[str], landmarks: Sequence[str], names: Sequence[str], landmark_flags: Sequence[Sequence[str]]
) -> list[str]:
    """Why a measurement on this image must not be read (empty list: it may).

    Args:
        image_flags: the image's flags that invalidate its geometry (:data:`cephalo.flags.GEOMETRY_FLAGS`).
        landmarks: canonical names the measurement reads; names: the prediction's K names;
        landmark_flags: K lists of landmark flags; ``outside`` and ``no_position`` (the landmark was
            not found) invalidate a measurement using it, ``radius`` does not (its interval says it).

    Returns:
        plain-words reasons, e.g. ``["image flagged: no_structure", "landmark not found: Go (outside)"]``.
    """
    why = [f"image flagged: {', '.join(image_flags)}"] if image_flags else []
    pos = {n: i for i, n in enumerate(names)}
    for n in landmarks:
        bad = [f for f in landmark_flags[pos[n]] if f in ("outside", "no_position")] if n in pos else ["missing"]
        if bad:
            why.append(f"landmark not found: {n} ({', '.join(bad)})")
    return why
