"""Landmark metrics in millimetres (pure numpy; scipy only for the Wilcoxon test).

Pixel spacing is multiplied in ONE place (per image, per axis): :func:`cephalo.geometry.offsets_mm`,
re-exported here with :func:`radial_errors_mm` (the landmark index's annotator check uses them
too, and data code does not import evaluation).

Definitions (as in the ISBI 2015 challenge, Wang et al., Medical Image Analysis 31, 2016):

* radial error of a landmark: ``sqrt((dx * sx)^2 + (dy * sy)^2)`` mm, with ``dx, dy`` the
  prediction minus ground truth in original-image pixels and ``sx, sy`` the image's pixel
  spacing (mm/px) along x and y;
* MRE: mean radial error over all (image, landmark) pairs that have both a prediction and a
  ground truth (pooled, so every landmark weighs the same);
* SD: population standard deviation (``ddof=0``) of those errors;
* SDR at ``t`` mm: the fraction of errors ``<= t`` ("within t mm"; an error of exactly 2.00 mm
  counts at 2 mm). Errors are compared with a tolerance of :data:`SDR_TOLERANCE_MM` (1 nm) so
  that float round-off (``20 px x 0.1 mm/px``, ``hypot(1.2, 1.6)``) never moves an error across
  a threshold.

Missing landmarks (NaN in the prediction or the ground truth) are excluded from every statistic
and counted (``n_missing``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..config.schema import EvaluateConfig
from ..geometry import check_coords, offsets_mm, radial_errors_mm

__all__ = [
    "DEFAULT_THRESHOLDS_MM",
    "SDR_TOLERANCE_MM",
    "radial_errors_mm",
    "offsets_mm",
    "sdr",
    "summarise",
    "summarise_per_landmark",
    "summarise_groups",
    "per_image_mre",
    "spread_ratio",
    "bootstrap_ci",
    "paired_wilcoxon",
    "threshold_key",
]

#: SDR thresholds of the ISBI 2015 challenge (mm): params ``evaluate.thresholds_mm``'s default (cephalo.config).
DEFAULT_THRESHOLDS_MM: tuple[float, ...] = tuple(EvaluateConfig.model_fields["thresholds_mm"].default)
#: An error within this many mm above a threshold still counts (float round-off only).
SDR_TOLERANCE_MM: float = 1e-6


def threshold_key(t: float) -> str:
    """``2.0 -> "2.0"``, ``2.5 -> "2.5"``: the key used for SDR entries in dicts and JSON."""
    return f"{float(t):g}" if float(t) != int(t) else f"{float(t):.1f}"


def sdr(errors: np.ndarray, threshold_mm: float) -> float:
    """Successful detection rate: fraction of finite errors ``<= threshold_mm`` (NaN if none).

    Args:
        errors: any-shape float mm, NaN = missing (excluded).
    """
    e = np.asarray(errors, dtype=np.float64)
    e = e[np.isfinite(e)]
    if e.size == 0:
        return float("nan")
    return float(np.mean(e <= float(threshold_mm) + SDR_TOLERANCE_MM))


def summarise(errors: np.ndarray, thresholds: Sequence[float] = DEFAULT_THRESHOLDS_MM) -> dict:
    """MRE, SD, median, 90th percentile and SDRs of a set of radial errors.

    Args:
        errors: any-shape float64 mm (typically (N, K) from :func:`radial_errors_mm`); NaN = missing.
        thresholds: SDR thresholds in mm.

    Returns:
        dict with ``n`` (errors used), ``n_missing``, ``mre_mm``, ``sd_mm``, ``median_mm``,
        ``p90_mm``, ``max_mm`` and ``sdr`` (``{"2.0": fraction, ...}``, fractions in [0, 1]).
        Statistics are NaN when no error is finite.
    """
    e = np.asarray(errors, dtype=np.float64).ravel()
    ok = np.isfinite(e)
    v = e[ok]
    out: dict = {"n": int(v.size), "n_missing": int((~ok).sum())}
    if v.size == 0:
        nan = float("nan")
        out.update(mre_mm=nan, sd_mm=nan, median_mm=nan, p90_mm=nan, max_mm=nan)
        out["sdr"] = {threshold_key(t): nan for t in thresholds}
        return out
    out.update(
        mre_mm=float(v.mean()),
        sd_mm=float(v.std(ddof=0)),
        median_mm=float(np.median(v)),
        p90_mm=float(np.percentile(v, 90)),
        max_mm=float(v.max()),
    )
    out["sdr"] = {threshold_key(t): sdr(v, t) for t in thresholds}
    return out


def summarise_per_landmark(
    errors: np.ndarray, names: Sequence[str], thresholds: Sequence[float] = DEFAULT_THRESHOLDS_MM
) -> list[dict]:
    """One :func:`summarise` row per landmark (column of ``errors``), with ``landmark`` set.

    Args:
        errors: (N, K) float64 mm.
        names: K landmark names (canonical).

    Raises:
        ValueError: ``len(names) != K``.
    """
    e = np.asarray(errors, dtype=np.float64)
    if e.ndim != 2 or e.shape[1] != len(names):
        raise ValueError(f"errors {e.shape} do not match {len(names)} landmark names")
    return [{"landmark": str(n), **summarise(e[:, k], thresholds)} for k, n in enumerate(names)]


def summarise_groups(
    errors: np.ndarray, groups: Sequence, thresholds: Sequence[float] = DEFAULT_THRESHOLDS_MM
) -> dict[str, dict]:
    """:func:`summarise` per group of images (device, split, ...).

    Args:
        errors: (N, K) float64 mm.
        groups: N group labels (one per image), in first-seen order in the result.
    """
    e = np.asarray(errors, dtype=np.float64)
    g = np.asarray([str(x) for x in groups])
    if g.shape[0] != e.shape[0]:
        raise ValueError(f"{g.shape[0]} group labels for {e.shape[0]} images")
    out: dict[str, dict] = {}
    for label in dict.fromkeys(g.tolist()):
        sel = g == label
        out[label] = {"n_images": int(sel.sum()), **summarise(e[sel], thresholds)}
    return out


def per_image_mre(errors: np.ndarray) -> np.ndarray:
    """Mean radial error of each image over its finite landmarks: (N, K) -> (N,) float64 (NaN if none)."""
    e = np.asarray(errors, dtype=np.float64)
    ok = np.isfinite(e)
    cnt = ok.sum(axis=1)
    s = np.where(ok, e, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, s / np.maximum(cnt, 1), np.nan)


def spread_ratio(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """How widely the predictions spread compared with the ground truth, per axis.

    Per axis ``x``/``y``: the standard deviation (``ddof=0``) of the predicted coordinates over
    every (image, landmark) point that has both a prediction and a ground truth, divided by the
    same for the ground truth (pixels cancel; no spacing needed). 1 = the predictions spread like
    the ground truth; << 1 = collapse toward one point (e.g. the image centre); NaN where the
    ground truth does not vary along the axis or no point is present. The one definition used by
    the diagnosis (:mod:`cephalo.evaluate.diagnosis`) and by training validation.

    Args:
        pred: (N, K, 2) float, xy, original-image pixels; NaN = missing.
        gt: (N, K, 2) float, xy, original-image pixels; NaN = missing.

    Returns:
        ``{"x": float, "y": float}``.
    """
    pred = check_coords("pred", pred)
    gt = check_coords("gt", gt)
    if pred.shape != gt.shape:
        raise ValueError(f"pred {pred.shape} and gt {gt.shape} differ in shape")
    ok = np.isfinite(pred).all(axis=-1) & np.isfinite(gt).all(axis=-1)
    p, g = pred[ok], gt[ok]
    out: dict[str, float] = {}
    for i, ax in enumerate("xy"):
        gs = float(g[:, i].std()) if len(g) else 0.0
        out[ax] = float(p[:, i].std() / gs) if gs > 0 else float("nan")
    return out


def bootstrap_ci(
    errors: np.ndarray,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS_MM,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict:
    """Bootstrap confidence intervals of MRE and SDRs, resampling *images* with replacement.

    Landmarks of one image are correlated, so the image is the resampling unit. Each
    replicate pools the finite errors of the resampled images (the same pooled definition as
    :func:`summarise`). Percentile interval (Efron & Tibshirani, *An Introduction to the
    Bootstrap*, 1993, ch. 13).

    Args:
        errors: (N, K) float64 mm, NaN = missing.
        thresholds: SDR thresholds (mm).
        n_boot: number of replicates.
        confidence: interval coverage (0.95 -> 2.5th and 97.5th percentiles).
        seed: numpy Generator seed (results are reproducible).

    Returns:
        ``{"mre_mm": [lo, hi], "sdr": {"2.0": [lo, hi], ...}, "n_boot": .., "confidence": ..}``;
        NaN bounds when there are no finite errors.
    """
    e = np.asarray(errors, dtype=np.float64)
    if e.ndim != 2:
        raise ValueError(f"errors must be (N, K), got {e.shape}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    ok = np.isfinite(e)
    n = e.shape[0]
    out: dict = {"n_boot": int(n_boot), "confidence": float(confidence), "unit": "image"}
    nan2 = [float("nan"), float("nan")]
    if n == 0 or not ok.any():
        out["mre_mm"] = nan2
        out["sdr"] = {threshold_key(t): nan2 for t in thresholds}
        return out
    cnt = ok.sum(axis=1).astype(np.float64)
    tot = np.where(ok, e, 0.0).sum(axis=1)
    hits = {t: (ok & (np.where(ok, e, np.inf) <= t + SDR_TOLERANCE_MM)).sum(axis=1) for t in thresholds}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(int(n_boot), n))
    c = cnt[idx].sum(axis=1)
    valid = c > 0
    q = [100 * (1 - confidence) / 2, 100 * (1 + confidence) / 2]

    def pct(num: np.ndarray) -> list[float]:
        vals = num[valid] / c[valid]
        return [float(x) for x in np.percentile(vals, q)]

    out["mre_mm"] = pct(tot[idx].sum(axis=1))
    out["sdr"] = {threshold_key(t): pct(hits[t][idx].sum(axis=1).astype(np.float64)) for t in thresholds}
    return out


def paired_wilcoxon(
    errors_a: np.ndarray,
    errors_b: np.ndarray,
    image_ids_a: Sequence[str] | None = None,
    image_ids_b: Sequence[str] | None = None,
) -> dict:
    """Paired comparison of two runs on the same images: per-image MRE differences + Wilcoxon test.

    Per image, the MRE of each run is taken over the landmarks finite in *both* runs; the
    difference is ``a - b`` (negative: run a is better). The two-sided Wilcoxon signed-rank test
    (Wilcoxon 1945; ``scipy.stats.wilcoxon``, zero differences dropped as in Wilcoxon's method)
    tests whether the median difference is zero.

    Args:
        errors_a, errors_b: (N, K) float64 mm of the two runs; when image ids are given the rows
            are matched by id (images in only one run are ignored), else rows must align.
        image_ids_a, image_ids_b: optional N image ids of each run.

    Returns:
        dict: ``n_images`` (paired images used), ``mean_diff_mm``, ``median_diff_mm``,
        ``mre_a_mm``, ``mre_b_mm``, ``n_a_better``, ``n_b_better``, ``statistic``, ``p_value``
        (NaN when fewer than 1 non-zero difference), ``image_ids``, ``diff_mm`` (per image).

    Raises:
        ValueError: rows cannot be paired (shapes differ without ids), or different K.
    """
    from scipy import stats

    a = np.asarray(errors_a, dtype=np.float64)
    b = np.asarray(errors_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"cannot pair errors of shapes {a.shape} and {b.shape}")
    if image_ids_a is not None and image_ids_b is not None:
        pos_b = {str(i): j for j, i in enumerate(image_ids_b)}
        common = [(i, pos_b[str(x)]) for i, x in enumerate(image_ids_a) if str(x) in pos_b]
        ids = [str(image_ids_a[i]) for i, _ in common]
        a = a[[i for i, _ in common]] if common else a[:0]
        b = b[[j for _, j in common]] if common else b[:0]
    else:
        if a.shape != b.shape:
            raise ValueError(f"cannot pair errors of shapes {a.shape} and {b.shape} without image ids")
        ids = [str(i) for i in range(a.shape[0])]
    both = np.isfinite(a) & np.isfinite(b)
    ma = per_image_mre(np.where(both, a, np.nan))
    mb = per_image_mre(np.where(both, b, np.nan))
    keep = np.isfinite(ma) & np.isfinite(mb)
    d = (ma - mb)[keep]
    ids = [i for i, k in zip(ids, keep, strict=False) if k]
    nan = float("nan")
    res = {
        "n_images": int(d.size),
        "mre_a_mm": float(ma[keep].mean()) if d.size else nan,
        "mre_b_mm": float(mb[keep].mean()) if d.size else nan,
        "mean_diff_mm": float(d.mean()) if d.size else nan,
        "median_diff_mm": float(np.median(d)) if d.size else nan,
        "n_a_better": int((d < 0).sum()),
        "n_b_better": int((d > 0).sum()),
        "statistic": nan,
        "p_value": nan,
        "test": "wilcoxon signed-rank, two-sided, zero_method=wilcox",
        "image_ids": ids,
        "diff_mm": [float(x) for x in d],
    }
    if np.count_nonzero(d) >= 1:
        r = stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided")
        res["statistic"] = float(r.statistic)
        res["p_value"] = float(r.pvalue)
    return res
