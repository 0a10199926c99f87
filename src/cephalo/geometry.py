"""The coordinate convention and affine maths. No I/O.

Convention (used everywhere in cephalo)
---------------------------------------
* A landmark array is ``(K, 2)`` (or ``(N, K, 2)``) float, **xy order** (column, row).
* The origin is the **centre of the top-left pixel**: pixel ``img[r, c]`` covers
  ``[c - 0.5, c + 0.5] x [r - 0.5, r + 0.5]``; x grows right, y grows down.
  Integer annotation files (ISBI, Aariz) give pixel indices, which are pixel
  centres in this convention, so they are used as they are.
* A geometric transform is a ``(2, 3)`` float64 affine ``M`` mapping a point
  ``p`` of the *source* frame to ``M[:, :2] @ p + M[:, 2]`` in the *destination*
  frame. This is OpenCV's ``warpAffine`` convention (it also treats integer
  coordinates as pixel centres), so warping an image with ``M`` and mapping its
  landmarks with ``M`` agree exactly.
* A resize of a ``w``-pixel axis to ``w'`` pixels maps ``x -> (x + 0.5) * w'/w - 0.5``
  (pixel edges map onto pixel edges).

Missing landmarks are NaN and stay NaN through every function here.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "identity",
    "scale_translate",
    "resize_affine",
    "to_homogeneous",
    "invert",
    "compose",
    "apply_affine",
    "is_axis_aligned",
]


def identity() -> np.ndarray:
    """The ``(2, 3)`` float64 identity affine."""
    return np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def scale_translate(sx: float, sy: float, tx: float = 0.0, ty: float = 0.0) -> np.ndarray:
    """``(2, 3)`` float64 affine ``x' = sx * x + tx``, ``y' = sy * y + ty``."""
    return np.array([[float(sx), 0.0, float(tx)], [0.0, float(sy), float(ty)]])


def resize_affine(src_wh: tuple[int, int], dst_wh: tuple[int, int]) -> np.ndarray:
    """Affine of resizing a ``src_wh`` image to ``dst_wh`` pixels (pixel-centre convention).

    ``x' = (x + 0.5) * dst_w / src_w - 0.5``; the same for y. This is what
    ``cv2.resize`` does to pixel positions.

    Raises:
        ValueError: a non-positive size.
    """
    (sw, sh), (dw, dh) = src_wh, dst_wh
    if min(sw, sh, dw, dh) <= 0:
        raise ValueError(f"resize_affine: sizes must be positive, got {src_wh} -> {dst_wh}")
    fx, fy = dw / sw, dh / sh
    return scale_translate(fx, fy, 0.5 * fx - 0.5, 0.5 * fy - 0.5)


def to_homogeneous(m: np.ndarray) -> np.ndarray:
    """``(2, 3)`` -> ``(3, 3)`` float64 with last row ``[0, 0, 1]``.

    Raises:
        ValueError: ``m`` is not ``(2, 3)`` or ``(3, 3)``.
    """
    m = np.asarray(m, dtype=np.float64)
    if m.shape == (3, 3):
        return m.copy()
    if m.shape != (2, 3):
        raise ValueError(f"expected a (2, 3) affine, got shape {m.shape}")
    return np.vstack([m, [0.0, 0.0, 1.0]])


def invert(m: np.ndarray) -> np.ndarray:
    """Inverse of a ``(2, 3)`` affine, as ``(2, 3)`` float64.

    Raises:
        ValueError: a singular matrix.
    """
    h = to_homogeneous(m)
    det = np.linalg.det(h[:2, :2])
    if abs(det) < 1e-12:
        raise ValueError(f"affine is singular (det={det:g}): {np.asarray(m).tolist()}")
    a_inv = np.linalg.inv(h[:2, :2])
    return np.hstack([a_inv, -(a_inv @ h[:2, 2:3])])


def compose(*ms: np.ndarray) -> np.ndarray:
    """Compose affines in the order they are applied: ``compose(A, B)`` is *A first, then B*.

    Returns ``(2, 3)`` float64; ``compose()`` is the identity.
    """
    out = np.eye(3)
    for m in ms:
        out = to_homogeneous(m) @ out
    return out[:2]


def apply_affine(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map points through ``m``.

    Args:
        m: ``(2, 3)`` affine, or ``(N, 2, 3)`` one per item of ``points``.
        points: ``(..., 2)`` xy, any float dtype; NaN propagates.

    Returns:
        float64 array of the shape of ``points``, in the destination frame.
    """
    m = np.asarray(m, dtype=np.float64)
    p = np.asarray(points, dtype=np.float64)
    if p.shape[-1] != 2:
        raise ValueError(f"points must have a trailing xy axis of 2, got shape {p.shape}")
    if m.ndim == 2:
        return p @ m[:, :2].T + m[:, 2]
    if m.ndim == 3 and p.ndim >= 2 and m.shape[0] == p.shape[0]:
        lin = m[:, :2, :2]
        t = m[:, :, 2]
        flat = p.reshape(p.shape[0], -1, 2)
        out = np.einsum("nij,nkj->nki", lin, flat) + t[:, None, :]
        return out.reshape(p.shape)
    raise ValueError(f"cannot apply affine of shape {m.shape} to points of shape {p.shape}")


def is_axis_aligned(m: np.ndarray, tol: float = 1e-12) -> bool:
    """True if ``m`` is a pure per-axis scale + translation (no rotation/shear)."""
    m = np.asarray(m, dtype=np.float64)
    return abs(m[0, 1]) <= tol and abs(m[1, 0]) <= tol
