"""Calibrated per-landmark prediction radii (split conformal prediction).

A radius ``r`` with coverage ``1 - alpha`` promises: for a new image from the same distribution as
the calibration images, the true landmark lies within ``r`` of the prediction with probability at
least ``1 - alpha`` (marginally). Method: split conformal prediction with a normalised
nonconformity score (Vovk, Gammerman & Shafer, *Algorithmic Learning in a Random World*, 2005;
Papadopoulos et al. 2002; Angelopoulos & Bates, "A gentle introduction to conformal prediction",
arXiv 2107.07511, section 2.3):

* score of calibration image ``i``, landmark ``k``: ``s_ik = e_ik / (w_k * u_ik)``, with ``e_ik`` the
  radial error (mm; and separately in original pixels, for images without a spacing), ``u_ik`` a
  per-prediction *scale* from the decoder confidence ``c_ik``:
  ``inverse_confidence``: ``u = 1 / max(c, conf_floor)`` (a flat, low heatmap -> a wide radius), or
  ``constant``: ``u = 1``; and ``w_k`` a per-landmark *difficulty weight* fixed before calibration
  (the landmark's median radial error on another split, e.g. the training images, divided by the
  median over landmarks; 1 when not given);
* ``pooling``: ``pooled``: one quantile ``q`` over all ``n = sum_k n_k`` finite scores (the guarantee
  holds over landmarks together; the weights make it hold roughly per landmark), or ``landmark``:
  one quantile ``q_k`` per landmark over its ``n_k`` scores (a per-landmark guarantee; with the
  15-25 images of a clinic's validation split the rank is the largest score, so the radii are the
  widest seen and over-cover: expected coverage ``ceil((n + 1)(1 - alpha)) / (n + 1)``, 93.75 % at
  n = 15, and 0.95 is unbounded below 19 images);
* the quantile is the ``ceil((n + 1)(1 - alpha))``-th smallest score (infinite if that rank exceeds ``n``);
* radius of a new prediction: ``r = q * w_k * u`` (mm, or px without spacing). The stored table
  holds ``q * w_k`` per landmark, so applying radii does not depend on the pooling.

The guarantee needs the calibration split to be exchangeable with the images predicted later (use
the fine-tuning validation split of the target clinic, never training images) and the weights and
scale not to be learnt from the calibration images; it holds for any such scale, which only makes
the radii adaptive. Empirical coverage on a test split is :func:`coverage` (reported by ``cephalo
evaluate`` when the checkpoint carries a calibration); :func:`calibrate` also records the
leave-one-image-out coverage on the calibration split itself (``loo_coverage``), the validation-split
check of a pooling and scale choice.

The calibration is a JSON-ready dict stored in the checkpoint (top-level key ``calibration``, written
by ``cephalo calibrate``) and read back by :func:`read_calibration`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ConfigError

if TYPE_CHECKING:
    from .config.schema import CalibrateConfig

__all__ = [
    "SCALES",
    "POOLINGS",
    "calibrate",
    "difficulty_weights",
    "radii",
    "coverage",
    "read_calibration",
    "coverage_key",
    "calibrate_model",
    "mondrian_min_images",
    "guarantee_text",
]

SCALES = ("inverse_confidence", "constant")
POOLINGS = ("pooled", "landmark", "auto")
FORMAT = "cephalo-conformal"


def coverage_key(c: float) -> str:
    """``0.9 -> "0.9"``, ``0.95 -> "0.95"`` (dict/JSON key of a coverage level)."""
    return f"{float(c):g}"


def _scale(confidence: np.ndarray, kind: str, floor: float) -> np.ndarray:
    c = np.asarray(confidence, dtype=np.float64)
    if kind == "constant":
        return np.ones_like(c)
    if kind == "inverse_confidence":
        return 1.0 / np.maximum(np.nan_to_num(c, nan=floor), floor)
    raise ConfigError(f"unknown conformal scale {kind!r}; valid: {list(SCALES)}")


def _quantile(scores: np.ndarray, coverage_level: float) -> float:
    s = np.sort(scores[np.isfinite(scores)])
    n = s.size
    if n == 0:
        return float("nan")
    rank = math.ceil((n + 1) * coverage_level)
    return float(s[rank - 1]) if rank <= n else float("inf")


def difficulty_weights(errors: np.ndarray) -> np.ndarray:
    """Per-landmark difficulty weights ``w_k``: median radial error of landmark k over the median of those medians.

    Args:
        errors: (N, K) radial errors (any unit; NaN = missing) on images that are *not* the
            calibration images (the training split), so the weights do not depend on them.

    Returns:
        (K,) float64, dimensionless, > 0; 1 for a landmark without a finite positive median (and
        all 1 when no landmark has one).
    """
    e = np.asarray(errors, dtype=np.float64)
    if e.ndim != 2:
        raise ValueError(f"errors must be (N, K), got {e.shape}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a landmark without any finite error
        med = np.nanmedian(e, axis=0) if e.shape[0] else np.full(e.shape[1], np.nan)
    good = np.isfinite(med) & (med > 0)
    if not good.any():
        return np.ones(e.shape[1])
    w = med / float(np.median(med[good]))
    return np.where(good, w, 1.0)


def _scores(e: np.ndarray, u: np.ndarray, w: np.ndarray) -> np.ndarray:
    return e / (w[None, :] * u)


def _table(s: np.ndarray, w: np.ndarray, level: float, pooling: str) -> np.ndarray:
    """(K,) ``q * w_k`` (pooled) or ``q_k * w_k`` (per landmark); inf where the rank exceeds n, NaN without scores."""
    if pooling == "pooled":
        return _quantile(s.ravel(), level) * w
    return np.array([_quantile(s[:, k], level) for k in range(s.shape[1])]) * w


def _loo_coverage(
    e: np.ndarray, s: np.ndarray, u: np.ndarray, w: np.ndarray, levels: Sequence[float], pooling: str
) -> tuple[dict, dict]:
    """Leave-one-image-out coverage on the calibration images (errors ``e``, their scores ``s``):
    calibrate on N - 1, score the one left out. Returns ``({cov: overall fraction}, {cov: [K] fractions})``
    (None where nothing was scored)."""
    out, per = {}, {}
    n, k = e.shape
    for lv in levels:
        hits, scored = np.zeros(k), np.zeros(k)
        for i in range(n):
            keep = np.arange(n) != i
            r = _table(s[keep], w, float(lv), pooling) * u[i]
            ok = np.isfinite(e[i]) & np.isfinite(r)
            hits += ok & (np.where(ok, e[i], np.inf) <= np.where(ok, r, 0))
            scored += ok
        out[coverage_key(lv)] = float(hits.sum() / scored.sum()) if scored.sum() else None
        per[coverage_key(lv)] = [float(h / c) if c else None for h, c in zip(hits, scored, strict=True)]
    return out, per


def mondrian_min_images(coverages: Sequence[float]) -> int:
    """Smallest per-landmark calibration count ``n`` with a finite per-landmark (Mondrian) quantile at every
    level: ``ceil((n + 1) c) <= n`` iff ``n >= c / (1 - c)`` (9 at 0.9, 19 at 0.95)."""
    return max(math.ceil(float(c) / (1.0 - float(c)) - 1e-9) for c in coverages)


def guarantee_text(pooling: str) -> str:
    """Which coverage promise a calibration's radii keep, in words (outputs print it)."""
    if pooling == "landmark":
        return (
            "per landmark: each landmark's radius covers its true position with at least the stated "
            "probability (Mondrian split conformal, one quantile per landmark)"
        )
    return (
        "marginal over landmarks: the stated probability holds for a landmark drawn at random, not for each "
        "landmark; single landmarks can cover less (see the per-landmark coverage)"
    )


def calibrate(
    errors_mm: np.ndarray | None,
    errors_px: np.ndarray,
    confidence: np.ndarray,
    names: Sequence[str],
    coverages: Sequence[float] = (0.9, 0.95),
    scale: str = "inverse_confidence",
    conf_floor: float = 0.01,
    info: Mapping[str, Any] | None = None,
    pooling: str = "pooled",
    weights: Sequence[float] | None = None,
) -> dict:
    """Split-conformal quantiles per landmark and coverage level (see the module doc).

    Args:
        errors_mm: (N, K) radial errors in mm on the calibration images (NaN = missing), or None.
        errors_px: (N, K) the same in original-image pixels.
        confidence: (N, K) decoder confidence of those predictions.
        names: K canonical landmark names.
        coverages: levels in (0, 1).
        scale: ``inverse_confidence`` | ``constant``.
        conf_floor: lower bound of the confidence in the scale (> 0).
        info: provenance recorded in the result (split, variant, checkpoint).
        pooling: ``pooled`` (one quantile over all landmarks' scores) | ``landmark`` (one per landmark,
            Mondrian) | ``auto`` (``landmark`` when every landmark has at least
            :func:`mondrian_min_images` calibration scores, else ``pooled``).
        weights: (K,) per-landmark difficulty weights ``w_k`` > 0 (:func:`difficulty_weights` of
            another split's errors), or None (all 1).

    Returns:
        ``{"format", "method", "scale", "conf_floor", "pooling", "weights" [K], "landmarks",
        "coverages", "n" [K], "q_mm" {cov: [K]}, "q_px" {cov: [K]}, "loo_coverage" {"unit",
        cov: fraction}, "loo_coverage_per_landmark" {cov: [K]}, "pooling_requested", "guarantee"
        (``per_landmark`` | ``marginal``), "mondrian_min_images", **info}`` (``pooling`` is the one
        used); ``q_*`` hold ``q * w_k`` (apply with :func:`radii`); infinite quantiles are stored as
        None (too few calibration scores for that level).

    Raises:
        ConfigError: bad coverage levels, scale, pooling, floor or weights; ValueError: shapes disagree.
    """
    ep = np.asarray(errors_px, dtype=np.float64)
    conf = np.asarray(confidence, dtype=np.float64)
    names = [str(n) for n in names]
    if ep.ndim != 2 or ep.shape != conf.shape or ep.shape[1] != len(names):
        raise ValueError(f"errors {ep.shape}, confidence {conf.shape} and {len(names)} names disagree")
    if not all(0 < float(c) < 1 for c in coverages):
        raise ConfigError(f"conformal coverages must lie in (0, 1), got {list(coverages)}")
    if not conf_floor > 0:
        raise ConfigError(f"conformal conf_floor must be > 0, got {conf_floor}")
    if pooling not in POOLINGS:
        raise ConfigError(f"unknown conformal pooling {pooling!r}; valid: {list(POOLINGS)}")
    w = np.ones(len(names)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(names),) or not (np.isfinite(w) & (w > 0)).all():
        raise ConfigError(f"conformal landmark weights must be {len(names)} finite values > 0, got {w.tolist()}")
    u = _scale(conf, scale, conf_floor)
    n_k = [int(np.isfinite(ep[:, k]).sum()) for k in range(len(names))]
    requested = pooling
    if pooling == "auto":  # Mondrian where every landmark has enough calibration images, else pooled
        pooling = "landmark" if min(n_k, default=0) >= mondrian_min_images(coverages) else "pooled"
    out: dict = {
        "format": FORMAT,
        "format_version": 2,
        "method": "split conformal prediction, normalised score = radial error / (landmark weight x scale)",
        "scale": scale,
        "conf_floor": float(conf_floor),
        "pooling": pooling,
        "weights": [float(v) for v in w],
        "landmarks": names,
        "coverages": [float(c) for c in coverages],
        "n": [int(np.isfinite(ep[:, k]).sum()) for k in range(len(names))],
        "q_mm": {},
        "q_px": {},
    }

    def q(s: np.ndarray) -> dict:
        return {
            coverage_key(c): [None if not np.isfinite(v) else float(v) for v in _table(s, w, float(c), pooling)]
            for c in coverages
        }

    e_loo, s_loo, unit = ep, _scores(ep, u, w), "px"
    out["q_px"] = q(s_loo)
    if errors_mm is not None:
        e_loo, unit = np.asarray(errors_mm, dtype=np.float64), "mm"
        s_loo = _scores(e_loo, u, w)
        out["q_mm"] = q(s_loo)
    overall, per = _loo_coverage(e_loo, s_loo, u, w, coverages, pooling)
    out["loo_coverage"] = {"unit": unit, **overall}
    out["loo_coverage_per_landmark"] = per
    out["pooling_requested"] = requested
    out["mondrian_min_images"] = mondrian_min_images(coverages)
    out["guarantee"] = "per_landmark" if pooling == "landmark" else "marginal"
    out.update(dict(info or {}))
    return out


def _qvec(cal: Mapping, unit: str, level: float, names: Sequence[str]) -> np.ndarray:
    table = cal.get(f"q_{unit}") or {}
    key = coverage_key(level)
    if key not in table:
        raise ConfigError(f"the calibration has no {unit} radii at coverage {key} (has {sorted(table)})")
    pos = {n: i for i, n in enumerate(cal["landmarks"])}
    vals = table[key]
    counts = cal.get("n") or [1] * len(vals)

    def one(n: str) -> float:
        if n not in pos or counts[pos[n]] == 0:
            return float("nan")  # not calibrated
        v = vals[pos[n]]
        return float("inf") if v is None else float(v)  # None: too few images for this level

    return np.array([one(n) for n in names], dtype=np.float64)


def radii(cal: Mapping, names: Sequence[str], confidence: np.ndarray, level: float, unit: str = "mm") -> np.ndarray:
    """Prediction radii ``q_k * scale(confidence)``.

    Args:
        cal: a calibration (:func:`calibrate`).
        names: K landmark names of ``confidence``'s columns (matched by name; unknown -> NaN).
        confidence: (N, K) or (K,) decoder confidence.
        level: coverage level present in ``cal``.
        unit: ``mm`` or ``px`` (original-image pixels).

    Returns:
        array of ``confidence``'s shape, float64 (NaN where no quantile exists; inf where the
        calibration set was too small for the level).

    Raises:
        ConfigError: the level/unit is not in the calibration.
    """
    q = _qvec(cal, unit, level, list(names))
    return q * _scale(confidence, str(cal.get("scale", "inverse_confidence")), float(cal.get("conf_floor", 0.01)))


def coverage(
    cal: Mapping,
    errors: np.ndarray,
    confidence: np.ndarray,
    names: Sequence[str],
    levels: Sequence[float] | None = None,
    unit: str = "mm",
) -> dict:
    """Empirical coverage: the fraction of (image, landmark) errors within their radius.

    Only predictions with a finite radius are scored. A landmark whose calibration split was too
    small for a level (rank ``ceil((n + 1) * level) > n``, e.g. fewer than 19 images at 0.95) has an
    unbounded radius: it would "cover" every error, so it is counted in ``n_unbounded`` instead, and
    a level where every radius is unbounded has ``overall`` NaN (no claim), never 100 %.

    Args:
        errors: (N, K) radial errors (``unit``) on held-out images, NaN = missing (excluded).
        confidence: (N, K) decoder confidence; names: K names.
        levels: coverage levels (default: all in ``cal``).

    Returns:
        ``{level: {"nominal", "overall", "n", "n_unbounded", "unit", "mean_radius",
        "per_landmark" {name: fraction}}}``: ``n`` scored predictions (finite error and finite
        radius), ``n_unbounded`` predictions left out for an infinite radius; fractions in [0, 1],
        NaN where nothing was scored.
    """
    e = np.asarray(errors, dtype=np.float64)
    out = {}
    for lv in levels if levels is not None else cal.get("coverages", []):
        r = radii(cal, names, confidence, float(lv), unit)
        has = np.isfinite(e) & ~np.isnan(r)  # a ground truth and a calibrated landmark
        ok = has & np.isfinite(r)
        hit = ok & (e <= r)
        per = {n: (float(hit[:, k][ok[:, k]].mean()) if ok[:, k].any() else float("nan")) for k, n in enumerate(names)}
        out[coverage_key(lv)] = {
            "nominal": float(lv),
            "overall": float(hit[ok].mean()) if ok.any() else float("nan"),
            "n": int(ok.sum()),
            "n_unbounded": int((has & ~ok).sum()),
            "unit": unit,
            "mean_radius": float(r[ok].mean()) if ok.any() else float("nan"),
            "per_landmark": per,
        }
    return out


def read_calibration(path: str | Path) -> dict | None:
    """The calibration stored in a checkpoint (top-level ``calibration``) or a bundle JSON, or None.

    A bundle (global model + refiner) carries the radii of its refined predictions; the global
    checkpoint's own calibration is not used for it.

    Raises:
        CheckpointError: unreadable checkpoint or bundle.
    """
    from .refine.bundle import is_bundle, read_bundle

    if is_bundle(path):
        cal = read_bundle(path, check_hashes=False).calibration
    else:
        from .models.checkpoint import read_checkpoint

        cal = read_checkpoint(path).extra.get("calibration")
    return dict(cal) if isinstance(cal, Mapping) and cal.get("format") == FORMAT else None


def calibrate_model(
    model,
    meta,
    variant,
    split: str,
    *,
    settings: CalibrateConfig | None = None,
    device: str = "cpu",
    progress: bool = True,
    refine: Callable[[np.ndarray, Sequence[int]], np.ndarray] | None = None,
) -> dict:
    """Predict the ``split`` images of a variant and calibrate radii on their errors (:func:`calibrate`).

    Predictions come from the one inference path (:func:`cephalo.inference.predict_variant`, as in
    evaluation and ``cephalo predict``), moved by ``refine`` when given (a global + refiner bundle:
    ``(coords (R, K, 2) original px, rows) -> (R, K, 2)``, :func:`cephalo.refine.variant_refiner`,
    exactly as ``cephalo evaluate`` applies it; the decoder confidence of the global model stays the
    scale); errors are measured over the landmarks the model
    and the data share, with each image's own spacing. With ``difficulty_split`` (the training
    images), that split is predicted the same way and its per-landmark median errors give the
    landmark weights (:func:`difficulty_weights`; none when the split is empty). With ``shape_split``, a
    :class:`cephalo.flags.ShapeModel` is also fitted on that split's ground-truth landmarks (the
    training landmarks; patient frame, mm) and stored as ``shape_model`` for the review flags.

    ``settings`` is the ``calibrate:`` params section (:class:`cephalo.config.schema.CalibrateConfig`,
    its defaults when None): ``coverages``, ``scale``, ``conf_floor``, ``pooling``, ``difficulty_split``,
    ``shape_split``, ``shape_quantile``, ``shape_margin``, ``batch_size``; the split calibrated on is
    ``split`` and the (resolved) device ``device``, not the section's ``split`` and ``device``.

    Raises:
        DataError: no image in the split, or images without pixel spacing.
    """
    from .config.schema import CalibrateConfig
    from .errors import DataError
    from .evaluate import metrics as M
    from .evaluate.results import shared_landmarks
    from .inference import Predictor, predict_variant

    cp = settings or CalibrateConfig()
    coverages, scale, conf_floor, pooling = cp.coverages, cp.scale, cp.conf_floor, cp.pooling
    batch_size, difficulty_split = cp.batch_size, cp.difficulty_split
    shape_split, shape_quantile, shape_margin = cp.shape_split, cp.shape_quantile, cp.shape_margin
    rows = np.flatnonzero(np.asarray(variant.splits) == split)
    if rows.size == 0:
        raise DataError(
            f"no image in split {split!r} (splits: {sorted(set(map(str, variant.splits)))})",
            getattr(variant, "path", None),
        )
    names, mi, di = shared_landmarks(list(meta.landmark_names), list(variant.landmark_names))
    predictor = Predictor.from_meta(
        model, meta, normalisation=variant.normalisation, device=device, device_key="calibrate.device"
    )
    if difficulty_split == split:
        raise ConfigError(
            f"calibrate.difficulty_split must differ from the calibration split {split!r}: "
            "weights learnt on the calibration images void the coverage guarantee"
        )
    drows = (
        np.flatnonzero(np.asarray(variant.splits) == difficulty_split)
        if difficulty_split
        else np.zeros(0, dtype=np.int64)
    )
    both = np.concatenate([rows, drows])  # one pass over both splits
    p = predict_variant(predictor, variant, both, batch_size=batch_size, progress=progress, desc="calibrate")
    coords = p.coords if refine is None else refine(p.coords, both)
    gt = np.asarray(variant.landmarks_original, dtype=np.float64)[both][:, di]
    spacing = np.asarray(variant.spacing, dtype=np.float64)[both]
    if not np.isfinite(spacing[: rows.size]).all():
        raise DataError("some calibration images have no pixel spacing", getattr(variant, "path", None))
    cal_part, dif_part = slice(0, rows.size), slice(rows.size, None)
    e_mm = M.radial_errors_mm(coords[cal_part][:, mi], gt[cal_part], spacing[cal_part])
    e_px = M.radial_errors_mm(coords[:, mi], gt, np.ones_like(spacing))  # the same formula with 1 px = 1 unit
    weights = None
    if drows.size:  # relative difficulty in mm, or in px where some training images have no spacing
        d_sp = spacing[dif_part]
        weights = difficulty_weights(
            M.radial_errors_mm(coords[dif_part][:, mi], gt[dif_part], d_sp)
            if np.isfinite(d_sp).all()
            else e_px[dif_part]
        )
    vmeta = getattr(variant, "meta", {}) or {}
    cal = calibrate(
        e_mm,
        e_px[cal_part],
        p.confidence[cal_part][:, mi],
        names,
        coverages,
        scale,
        conf_floor,
        pooling=pooling,
        weights=weights,
        info={
            "split": split,
            "n_images": int(rows.size),
            "difficulty_split": difficulty_split if drows.size else None,
            "difficulty_n_images": int(drows.size),
            "variant": vmeta.get("name", Path(str(getattr(variant, "path", ""))).name),
            "variant_fingerprint": vmeta.get("fingerprint"),
        },
    )
    if shape_split:
        from .flags import ShapeModel
        from .measurements import patient_frame_mm

        srows = np.flatnonzero(np.asarray(variant.splits) == shape_split)
        if srows.size >= 3:
            shapes = np.asarray(variant.landmarks_original, dtype=np.float64)[srows][:, di]
            sp = np.asarray(variant.spacing, dtype=np.float64)[srows]
            ok = np.isfinite(sp).all(axis=1)
            try:
                sm = ShapeModel.fit(patient_frame_mm(shapes[ok], names, sp[ok]), names, shape_quantile, shape_margin)
            except ValueError:
                sm = None
            if sm is not None:
                cal["shape_model"] = {**sm.to_dict(), "split": shape_split}
    return cal
