"""Errors in mm and the tests that decide whether one explanation beats another (plain numpy)."""

from __future__ import annotations

import numpy as np

__all__ = ["errors_mm", "mean_se_diff", "significantly_lower", "not_worse", "holdout_masks"]


def errors_mm(pred: np.ndarray, gt: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """(N, K) radial errors in mm (NaN where either is missing); pred, gt (N, K, 2) px, spacing (N, 2)."""
    d = (np.asarray(pred, dtype=np.float64) - gt) * np.asarray(spacing, dtype=np.float64)[:, None, :]
    return np.hypot(d[..., 0], d[..., 1])


def mean_se_diff(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean and standard error of ``a - b`` (errors of the same points when both cover the same
    points: paired; otherwise the difference of the two means, unpaired). NaN = no value."""
    a, b = np.ravel(a), np.ravel(b)
    fa, fb = np.isfinite(a), np.isfinite(b)
    if not fa.any() or not fb.any():
        return float("nan"), float("nan")
    both = fa & fb
    if both.sum() >= 0.9 * max(fa.sum(), fb.sum()) and both.sum() >= 2:
        d = a[both] - b[both]
        return float(d.mean()), float(d.std(ddof=1) / np.sqrt(d.size))
    va = a[fa].var(ddof=1) / fa.sum() if fa.sum() > 1 else 0.0
    vb = b[fb].var(ddof=1) / fb.sum() if fb.sum() > 1 else 0.0
    return float(a[fa].mean() - b[fb].mean()), float(np.sqrt(va + vb))


def significantly_lower(a: np.ndarray, b: np.ndarray, z: float = 3.0, min_gain: float = 0.0) -> bool:
    """Errors ``a`` are lower than ``b`` by more than ``z`` standard errors and ``min_gain`` mm."""
    m, se = mean_se_diff(b, a)
    return bool(np.isfinite(m) and m > max(z * se, min_gain))


def not_worse(a: np.ndarray, b: np.ndarray, z: float = 2.0, slack: float = 0.01) -> bool:
    """Errors ``a`` are not worse than ``b`` beyond ``z`` standard errors (+ ``slack`` mm)."""
    m, se = mean_se_diff(a, b)
    return bool(np.isfinite(m) and m <= z * se + slack)


def holdout_masks(ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split the (N, K) points ``ok`` into a fit and a confirm half.

    With at least 2 images holding points: alternate images (fit on the 1st, 3rd, ...; confirm on
    the others); with one image: alternate landmarks. Returns two (N, K) bool masks.
    """
    ok = np.asarray(ok, dtype=bool)
    rows = np.flatnonzero(ok.any(axis=1))
    fit = np.zeros_like(ok)
    if rows.size >= 2:
        fit[rows[::2]] = True
    else:
        fit[:, ::2] = True
    return ok & fit, ok & ~fit
