"""Windows around landmarks at a fixed physical resolution, cut from the ORIGINAL image.

A window is made in two exact steps, each a ``(2, 3)`` affine (``cephalo.geometry``):

1. the whole original image is resampled to the window resolution ``spacing_mm`` (mm/px) with
   each image's own pixel spacing per axis: ``resize_image`` to ``round(w * sx_mm / spacing_mm)``
   x ``round(h * sy_mm / spacing_mm)`` px with area interpolation (anti-aliased; the affine is
   ``geometry.resize_affine``, so the realised scale is exact even after rounding the size);
2. a ``window x window`` block is copied out of it around the centre with
   ``geometry.crop_window`` (integer offset, no interpolation, zero fill outside the image).

The window's affine original px -> window px is ``compose(resize, crop)``; a window position
maps back to original px through ``geometry.invert`` of it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .. import geometry as G
from ..errors import DataError

__all__ = ["apply_gamma", "cut_windows", "image_spacing", "resample_to_spacing"]


def image_spacing(
    spacing_xy: Sequence[float] | None, fallback_mm: float | None, label: str = "image"
) -> tuple[float, float]:
    """``(sx, sy)`` mm/px of an image, or the fallback where it has none.

    Raises:
        DataError: no finite positive spacing and no fallback.
    """
    sp = None if spacing_xy is None else tuple(float(v) for v in spacing_xy)
    if sp is not None and all(math.isfinite(v) and v > 0 for v in sp):
        return sp  # type: ignore[return-value]
    if fallback_mm is not None:
        return float(fallback_mm), float(fallback_mm)
    raise DataError(
        "no pixel spacing: refinement windows have a physical size; set refine.fallback_spacing_mm "
        "(or predict --spacing)",
        label,
    )


def resample_to_spacing(
    image: np.ndarray, spacing_xy: tuple[float, float], spacing_mm: float
) -> tuple[np.ndarray, np.ndarray]:
    """Resample a whole original image to ``spacing_mm`` mm/px (area interpolation).

    Args:
        image: ``(H, W)`` uint8/uint16, original px.
        spacing_xy: the image's ``(x, y)`` mm/px.
        spacing_mm: target mm/px (both axes).

    Returns:
        ``(resampled, M)``: same dtype; ``M`` ``(2, 3)`` float64 original px -> resampled px.
    """
    h, w = image.shape[:2]
    dw = max(1, int(round(w * spacing_xy[0] / spacing_mm)))
    dh = max(1, int(round(h * spacing_xy[1] / spacing_mm)))
    return G.resize_image(image, (dw, dh), "area")


def cut_windows(
    resampled: np.ndarray, m_resample: np.ndarray, centres: np.ndarray, window: int
) -> tuple[np.ndarray, np.ndarray]:
    """Windows of ``window`` px around ``centres`` (original px) from a resampled image.

    Args:
        resampled: ``(H', W')`` image from :func:`resample_to_spacing`.
        m_resample: its ``(2, 3)`` affine original -> resampled.
        centres: ``(M, 2)`` float xy original px (finite).
        window: window side, px.

    Returns:
        ``(windows (M, window, window) resampled's dtype, affines (M, 2, 3) float64 original px ->
        window px)``.

    Raises:
        ValueError: a non-finite centre.
    """
    c = G.apply_affine(m_resample, np.asarray(centres, dtype=np.float64).reshape(-1, 2))
    wins = np.zeros((len(c), window, window), dtype=resampled.dtype)
    affs = np.zeros((len(c), 2, 3))
    for i, p in enumerate(c):
        wins[i], m_crop = G.crop_window(resampled, p, (window, window), fill=0)
        affs[i] = G.compose(m_resample, m_crop)
    return wins, affs


def apply_gamma(windows: np.ndarray, gamma: float) -> np.ndarray:
    """Intensity ``v -> v ** gamma`` on [0, 1] (of the dtype's range), same dtype; 1 = unchanged."""
    if gamma == 1.0:
        return windows
    top = 255.0 if windows.dtype == np.uint8 else 65535.0
    out = np.power(windows.astype(np.float32) / top, np.float32(gamma)) * top
    return np.clip(np.round(out), 0, top).astype(windows.dtype)
