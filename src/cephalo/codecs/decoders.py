"""Heatmap decoders: ``(B, K, h, w)`` maps -> sub-pixel peak positions in **heatmap pixels**.

Every decoder here works in heatmap pixels (xy; ``hm[b, k, j, i]`` is the value at ``(i, j)``);
the codec (:mod:`cephalo.codecs.gaussian`) maps the result to input pixels with its convention.
All are vectorised numpy (float64 internally) and accept numpy arrays or torch tensors of any
float dtype (float16/bfloat16 included) on any device.

Each decoder returns ``(coords (B, K, 2) float64 heatmap px, confidence (B, K) float64,
degenerate (B, K) bool)``. A *degenerate* map (a NaN/inf value, or flat: peak-to-peak range
``<= flat_tol * max(1, max|value|)``) gets NaN coords and confidence 0 - it is never decoded
to a corner (argmax of all-equal values) or to the centre (soft-argmax of a uniform map).

Decoders
--------
* ``argmax``: integer argmax, optionally moved a quarter pixel towards the higher neighbour
  on each axis (the refinement of Newell et al., ECCV 2016 "Stacked Hourglass Networks", also used
  by Xiao et al., ECCV 2018 "Simple Baselines" and Sun et al., CVPR 2019 "HRNet"). Error on a clean
  Gaussian: up to 0.25 heatmap px per axis (0.5 without the quarter offset, and on a border cell).
* ``dark``: Zhang et al., CVPR 2020 "Distribution-Aware Coordinate Representation for Human Pose
  Estimation" (DARK): smooth the map with a Gaussian kernel of the target's sigma (distribution
  modulation), take its log, and move from the argmax by one Newton step of the second-order Taylor
  expansion, ``mu = m - H^-1 g`` (gradient ``g``, Hessian ``H`` by central differences).
* ``soft_argmax``: softmax over all ``h * w`` values (divided by a temperature), expectation of the
  pixel indices (Luvizon et al., 2019 "Human pose regression by combining indirect part detection and
  contextual information"; Nibali et al., 2018 "Numerical Coordinate Regression with Convolutional
  Neural Networks" (DSNT)). What the public ISBI HRNet-W32 uses on its raw logits, temperature 1.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = [
    "DECODERS",
    "as_numpy_heatmaps",
    "degenerate_mask",
    "decode_argmax",
    "decode_dark",
    "decode_soft_argmax",
]

#: decoder name -> one-line description
DECODERS: dict[str, str] = {
    "argmax": "integer argmax + quarter-pixel offset towards the higher neighbour (Newell et al. 2016)",
    "dark": "DARK: Gaussian-smoothed log-heatmap, Taylor expansion at the argmax (Zhang et al. CVPR 2020)",
    "soft_argmax": "softmax over all logits with a temperature, expectation of indices (Nibali et al. 2018)",
}

DEFAULT_FLAT_TOL = 1e-6


def as_numpy_heatmaps(heatmaps: Any) -> np.ndarray:
    """``(B, K, h, w)`` numpy array or torch tensor (any float dtype/device) -> float64 numpy.

    Raises:
        ValueError: not 4-D, or an empty spatial size.
    """
    if hasattr(heatmaps, "detach") and hasattr(heatmaps, "cpu"):  # torch.Tensor without importing torch
        heatmaps = heatmaps.detach().to("cpu").float().numpy()
    hm = np.asarray(heatmaps, dtype=np.float64)
    if hm.ndim != 4:
        raise ValueError(f"heatmaps must be (B, K, h, w), got shape {hm.shape}")
    if hm.shape[2] < 1 or hm.shape[3] < 1:
        raise ValueError(f"heatmaps have an empty spatial size: shape {hm.shape}")
    return hm


def degenerate_mask(hm: np.ndarray, flat_tol: float = DEFAULT_FLAT_TOL) -> np.ndarray:
    """``(B, K)`` bool: True where a map has a non-finite value or is flat.

    Flat means ``max - min <= flat_tol * max(1, max|value|)`` (all zeros, a constant map, a map
    whose variation is rounding noise).
    """
    finite_el = np.isfinite(hm)
    finite = finite_el.all(axis=(2, 3))
    safe = hm if finite.all() else np.where(finite_el, hm, 0.0)
    hi, lo = safe.max(axis=(2, 3)), safe.min(axis=(2, 3))
    scale = np.maximum(1.0, np.maximum(np.abs(hi), np.abs(lo)))
    return ~finite | (hi - lo <= flat_tol * scale)


def _prepare(heatmaps: Any, flat_tol: float) -> tuple[np.ndarray, np.ndarray]:
    hm = as_numpy_heatmaps(heatmaps)
    degenerate = degenerate_mask(hm, flat_tol)
    if degenerate.any():
        hm = np.where(degenerate[:, :, None, None], 0.0, hm)
    return hm, degenerate


def _argmax(hm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integer argmax of each map: ``(px, py, max value)``, each ``(B, K)``."""
    b, k, h, w = hm.shape
    flat = hm.reshape(b, k, h * w)
    idx = flat.argmax(axis=-1)
    value = np.take_along_axis(flat, idx[..., None], axis=-1)[..., 0]
    py, px = np.divmod(idx, w)
    return px, py, value


def _gather(hm: np.ndarray, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """``hm[b, k, yy[b, k], xx[b, k]]`` with indices clipped into the map."""
    b, k, h, w = hm.shape
    bi, ki = np.meshgrid(np.arange(b), np.arange(k), indexing="ij")
    return hm[bi, ki, np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)]


def _finish(
    x: np.ndarray, y: np.ndarray, conf: np.ndarray, degenerate: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    coords = np.stack([x, y], axis=-1).astype(np.float64)
    coords[degenerate] = np.nan
    conf = np.where(degenerate, 0.0, conf).astype(np.float64)
    return coords, conf, degenerate


def decode_argmax(
    heatmaps: Any, *, quarter_offset: bool = True, flat_tol: float = DEFAULT_FLAT_TOL
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integer argmax (+ quarter-pixel offset) of each map.

    Args:
        heatmaps: ``(B, K, h, w)`` numpy/torch, any float dtype.
        quarter_offset: move 0.25 px towards the higher of the two neighbours on each axis
            (only where both neighbours exist). Error on a clean map: <= 0.25 heatmap px per axis
            (<= 0.5 without it or on a border cell; in input px the error is this times the stride).
        flat_tol: flatness tolerance (see :func:`degenerate_mask`).

    Returns:
        ``coords (B, K, 2)`` float64 heatmap px (NaN where degenerate), ``confidence (B, K)`` float64
        (the maximum value), ``degenerate (B, K)`` bool.

    Raises:
        ValueError: input not 4-D.
    """
    hm, degenerate = _prepare(heatmaps, flat_tol)
    px, py, value = _argmax(hm)
    x, y = px.astype(np.float64), py.astype(np.float64)
    if quarter_offset:
        h, w = hm.shape[2:]
        inner_x = (px > 0) & (px < w - 1)
        inner_y = (py > 0) & (py < h - 1)
        dx = _gather(hm, py, px + 1) - _gather(hm, py, px - 1)
        dy = _gather(hm, py + 1, px) - _gather(hm, py - 1, px)
        x = x + np.where(inner_x, 0.25 * np.sign(dx), 0.0)
        y = y + np.where(inner_y, 0.25 * np.sign(dy), 0.0)
    return _finish(x, y, value, degenerate)


def _blurred_stencil(hm: np.ndarray, cx: np.ndarray, cy: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-smoothed values of each map on the 3x3 stencil centred at ``(cx, cy)``: ``(B, K, 3, 3)``.

    Only the 9 values the Taylor expansion needs are computed. The kernel (sigma ``sigma``, radius
    ``ceil(3 sigma)``) is truncated symmetrically per axis, and renormalised, where it would reach
    past the map border, so no padding value ever enters: a symmetric kernel keeps a Gaussian's
    centre where it is, whereas edge/zero/mirror padding pull it by up to 1.5 px near the border.
    ``cx`` must lie in ``[1, w - 2]`` and ``cy`` in ``[1, h - 2]``.
    """
    b, k, h, w = hm.shape
    big_r = max(1, int(math.ceil(3.0 * sigma)))
    t = np.arange(-big_r, big_r + 1)
    base = np.exp(-0.5 * (t / sigma) ** 2)
    rx = np.minimum(big_r, np.minimum(cx - 1, w - 2 - cx))  # (B, K)
    ry = np.minimum(big_r, np.minimum(cy - 1, h - 2 - cy))
    kx = base * (np.abs(t) <= rx[..., None])
    ky = base * (np.abs(t) <= ry[..., None])
    kx /= kx.sum(axis=-1, keepdims=True)
    ky /= ky.sum(axis=-1, keepdims=True)
    off = np.arange(-big_r - 1, big_r + 2)  # patch offsets, P = 2R + 3
    rows = np.clip(cy[..., None] + off, 0, h - 1)  # (B, K, P)
    cols = np.clip(cx[..., None] + off, 0, w - 1)
    bi = np.arange(b)[:, None, None, None]
    ki = np.arange(k)[None, :, None, None]
    patch = hm[bi, ki, rows[..., :, None], cols[..., None, :]]  # (B, K, P, P)
    n = 2 * big_r + 1
    # along x: stencil column j (offset j-1) uses patch columns j .. j + 2R
    along_x = np.stack([np.einsum("bkpt,bkt->bkp", patch[..., j : j + n], kx) for j in range(3)], axis=-1)
    # along y: stencil row i uses rows i .. i + 2R -> (B, K, 3, 3)
    return np.stack([np.einsum("bktj,bkt->bkj", along_x[:, :, i : i + n, :], ky) for i in range(3)], axis=2)


def decode_dark(
    heatmaps: Any,
    *,
    sigma: float = 2.0,
    blur: bool = True,
    flat_tol: float = DEFAULT_FLAT_TOL,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DARK sub-pixel decoding (Zhang et al., CVPR 2020).

    1. Distribution modulation: smooth each map with a Gaussian kernel of standard deviation
       ``sigma`` heatmap px (the target's sigma), evaluated only on the 3x3 stencil of step 3; near
       the map border the kernel is truncated symmetrically and renormalised (no padding values
       enter, so a Gaussian's centre is not pulled towards or away from the border) - skipped
       with ``blur=False``.
    2. ``L = log(max(map, 1e-10))``.
    3. At the integer argmax ``m`` of the *raw* map: gradient ``g`` and Hessian ``H`` of ``L`` by
       3x3 central differences; ``mu = m - H^-1 g``. Where ``m`` is on the map border the stencil
       centre is moved one cell inward (the expansion of a log-Gaussian is exact anywhere).
    4. The step is kept only where ``H`` is negative definite and ``mu`` lies within 1 px of ``m``
       on each axis; otherwise ``mu = m`` (plain argmax).

    On a clean Gaussian map the log is exactly quadratic; measured round-trip error (sigma 2,
    192x192 float32 maps, 3000 sub-pixel positions over the whole frame, both conventions):
    max 6e-4 heatmap px, 2.2e-4 with the centre >= 5 px from the border (the small residual comes
    from the kernel truncation near the border).

    Args:
        heatmaps: ``(B, K, h, w)`` numpy/torch, non-negative heatmaps (values <= 0 are clipped
            to 1e-10 before the log).
        sigma: smoothing kernel sigma in heatmap px (use the codec's target sigma).
        blur: apply step 1.
        flat_tol: flatness tolerance (see :func:`degenerate_mask`).

    Returns:
        ``coords (B, K, 2)`` float64 heatmap px (NaN where degenerate), ``confidence (B, K)``
        float64 (the raw map's maximum), ``degenerate (B, K)`` bool.

    Raises:
        ValueError: input not 4-D; ``sigma <= 0`` with ``blur``.
    """
    hm, degenerate = _prepare(heatmaps, flat_tol)
    if blur and not sigma > 0:
        raise ValueError(f"dark: blur sigma must be > 0, got {sigma}")
    px, py, value = _argmax(hm)
    x, y = px.astype(np.float64), py.astype(np.float64)
    h, w = hm.shape[2:]
    if h < 3 or w < 3:
        return _finish(x, y, value, degenerate)
    cx, cy = np.clip(px, 1, w - 2), np.clip(py, 1, h - 2)
    if blur:
        stencil = _blurred_stencil(hm, cx, cy, sigma)
    else:
        bi = np.arange(hm.shape[0])[:, None, None, None]
        ki = np.arange(hm.shape[1])[None, :, None, None]
        rows = (cy[..., None] + np.arange(-1, 2))[..., :, None]
        cols = (cx[..., None] + np.arange(-1, 2))[..., None, :]
        stencil = hm[bi, ki, rows, cols]
    log_s = np.log(np.maximum(stencil, 1e-10))  # (B, K, 3, 3), [1, 1] is the expansion point

    def at(dy: int, dx: int) -> np.ndarray:
        return log_s[:, :, 1 + dy, 1 + dx]

    centre = at(0, 0)
    gx = 0.5 * (at(0, 1) - at(0, -1))
    gy = 0.5 * (at(1, 0) - at(-1, 0))
    hxx = at(0, 1) - 2.0 * centre + at(0, -1)
    hyy = at(1, 0) - 2.0 * centre + at(-1, 0)
    hxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
    det = hxx * hyy - hxy * hxy
    ok = (det > 1e-12) & (hxx < 0)
    safe_det = np.where(ok, det, 1.0)
    # mu = c - H^-1 g, H^-1 = [[hyy, -hxy], [-hxy, hxx]] / det
    rx = cx - (hyy * gx - hxy * gy) / safe_det
    ry = cy - (hxx * gy - hxy * gx) / safe_det
    ok &= (np.abs(rx - px) <= 1.0) & (np.abs(ry - py) <= 1.0)
    x = np.where(ok, rx, x)
    y = np.where(ok, ry, y)
    return _finish(x, y, value, degenerate)


def decode_soft_argmax(
    heatmaps: Any,
    *,
    temperature: float = 1.0,
    peak_radius: int = 4,
    flat_tol: float = DEFAULT_FLAT_TOL,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Soft-argmax: expectation of pixel indices under ``softmax(map / temperature)`` over all pixels.

    Meant for **logits** (the public HRNet's raw output). Its expectation is exact for a map whose
    softmax is a Gaussian well inside the map (``log`` of a clean sigma-2 Gaussian target,
    temperature 1: < 1e-5 heatmap px 8 px from the border, < 0.02 px at 5 px (2.5 sigma));
    nearer the border it is pulled inward because the distribution is truncated there (0.06 px at
    4 px, 0.4 px at 2 px, 1.3 px on the border cell). A [0, 1] heatmap at temperature 1 is decoded
    near the map centre (its softmax is nearly uniform: 283 input px off for a 768 input) - use
    ``dark`` for heatmap-regression models.

    Args:
        heatmaps: ``(B, K, h, w)`` numpy/torch logits, any float dtype.
        temperature: softmax temperature (> 0); 1 for the public HRNet.
        peak_radius: confidence = probability mass in the ``(2r+1) x (2r+1)`` window centred on
            the argmax (clipped to the map).
        flat_tol: flatness tolerance (see :func:`degenerate_mask`); a flat map (uniform softmax) is
            degenerate.

    Returns:
        ``coords (B, K, 2)`` float64 heatmap px (NaN where degenerate), ``confidence (B, K)``
        float64 in [0, 1] (0 where degenerate), ``degenerate (B, K)`` bool.

    Raises:
        ValueError: input not 4-D, ``temperature <= 0`` or ``peak_radius < 0``.
    """
    if not temperature > 0:
        raise ValueError(f"soft_argmax: temperature must be > 0, got {temperature}")
    if peak_radius < 0:
        raise ValueError(f"soft_argmax: peak_radius must be >= 0, got {peak_radius}")
    hm, degenerate = _prepare(heatmaps, flat_tol)
    b, k, h, w = hm.shape
    z = hm / temperature
    z = z - z.max(axis=(2, 3), keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=(2, 3), keepdims=True)
    x = (p.sum(axis=2) * np.arange(w, dtype=np.float64)).sum(axis=-1)
    y = (p.sum(axis=3) * np.arange(h, dtype=np.float64)).sum(axis=-1)
    # peak mass: sum of p over the (2r+1)^2 window around the argmax, clipped to the map
    px, py, _ = _argmax(hm)
    off = np.arange(-peak_radius, peak_radius + 1)
    rows, cols = py[..., None] + off, px[..., None] + off  # (B, K, 2r+1)
    inside = ((rows >= 0) & (rows < h))[..., :, None] & ((cols >= 0) & (cols < w))[..., None, :]
    bi = np.arange(b)[:, None, None, None]
    ki = np.arange(k)[None, :, None, None]
    window = p[bi, ki, np.clip(rows, 0, h - 1)[..., :, None], np.clip(cols, 0, w - 1)[..., None, :]]
    mass = (window * inside).sum(axis=(2, 3))
    return _finish(x, y, np.clip(mass, 0.0, 1.0), degenerate)
