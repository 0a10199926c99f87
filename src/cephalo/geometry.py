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

from typing import NamedTuple

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
    "translate",
    "INTERPOLATIONS",
    "Letterbox",
    "letterbox_geometry",
    "warp",
    "resize_image",
    "place",
    "crop_affine",
    "crop_window",
    "check_coords",
    "check_spacing",
    "offsets_mm",
    "radial_errors_mm",
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


# ---------------------------------------------------------------------------
# Image warps: every resize / pad / crop / resample returns the (2, 3) affine
# that describes exactly what happened to the pixels.
# ---------------------------------------------------------------------------

#: interpolation name -> OpenCV flag (resolved lazily so importing geometry stays light)
INTERPOLATIONS = ("nearest", "linear", "cubic", "area", "lanczos")


def _cv2_flag(interpolation: str) -> int:
    import cv2

    flags = {
        "nearest": cv2.INTER_NEAREST,
        "linear": cv2.INTER_LINEAR,
        "cubic": cv2.INTER_CUBIC,
        "area": cv2.INTER_AREA,
        "lanczos": cv2.INTER_LANCZOS4,
    }
    if interpolation not in flags:
        raise ValueError(f"unknown interpolation {interpolation!r}; valid: {sorted(flags)}")
    return flags[interpolation]


def translate(tx: float, ty: float) -> np.ndarray:
    """``(2, 3)`` float64 pure translation ``x' = x + tx``, ``y' = y + ty``."""
    return scale_translate(1.0, 1.0, tx, ty)


class Letterbox(NamedTuple):
    """Geometry of an aspect-preserving letterbox, as the public ISBI HRNet computes it.

    ``scale`` = ``min(S_w / w, S_h / h)``; ``new_wh`` = ``(int(w * scale), int(h * scale))``;
    ``pad`` = ``(pad_left, pad_top)`` with ``pad_left = (S_w - new_w) // 2`` (the
    remainder goes right/bottom); ``size`` = ``(S_w, S_h)``; ``src_wh`` = ``(w, h)``.

    Source: the HF model ``cwlachap/hrnet-cephalometric-landmark-detection``
    (its demo/training letterbox), see ``shared/specs/hf_hrnet_w32/README.md``.
    """

    scale: float
    new_wh: tuple[int, int]
    pad: tuple[int, int]
    size: tuple[int, int]
    src_wh: tuple[int, int]

    def affine(self) -> np.ndarray:
        """``(2, 3)`` float64, original px -> letterboxed px, pixel-centre convention.

        What the pixels undergo (``cv2.resize`` to ``new_wh``, then integer padding):
        ``x' = (x + 0.5) * new_w / w - 0.5 + pad_left``. The public HRNet mapped its
        *training labels* with ``x * scale + pad_left`` instead (:meth:`hf_label_affine`);
        the two differ by ``0.5 * new_w / w - 0.5`` px (about -0.3 px at 768 for a
        1935-px-wide ISBI image) plus the effect of the ``int()`` truncation of ``new_w``.
        """
        return compose(resize_affine(self.src_wh, self.new_wh), translate(*self.pad))

    def hf_label_affine(self) -> np.ndarray:
        """``(2, 3)`` affine the public HRNet applied to its labels: ``x * scale + pad``."""
        return scale_translate(self.scale, self.scale, self.pad[0], self.pad[1])


def letterbox_geometry(src_wh: tuple[int, int], size: int | tuple[int, int]) -> Letterbox:
    """Letterbox geometry of a ``src_wh = (w, h)`` image into ``size`` (int or ``(W, H)``).

    ``scale = min(W / w, H / h)``; ``new = (int(w * scale), int(h * scale))`` (each at
    least 1 px); ``pad = ((W - new_w) // 2, (H - new_h) // 2)``.

    Raises:
        ValueError: a non-positive size.
    """
    w, h = (int(v) for v in src_wh)
    sw, sh = (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))
    if min(w, h, sw, sh) <= 0:
        raise ValueError(f"letterbox: sizes must be positive, got {src_wh} -> {size}")
    scale = min(sw / w, sh / h)
    new_w = min(sw, max(1, int(w * scale)))
    new_h = min(sh, max(1, int(h * scale)))
    return Letterbox(scale, (new_w, new_h), ((sw - new_w) // 2, (sh - new_h) // 2), (sw, sh), (w, h))


def warp(
    image: np.ndarray,
    m: np.ndarray,
    out_wh: tuple[int, int],
    interpolation: str = "linear",
    border_value: float = 0,
) -> np.ndarray:
    """Warp ``image`` with the ``(2, 3)`` affine ``m`` (source -> destination px).

    Uses ``cv2.warpAffine`` (forward matrix, constant border). Output pixel
    ``(c, r)`` samples the source at ``invert(m) @ (c, r)``, so a point ``p`` of
    the source lands on ``apply_affine(m, p)`` in the output (OpenCV sub-pixel
    positions are quantised to 1/32 px).

    Args:
        image: ``(H, W)`` or ``(H, W, C)`` uint8, uint16 or float32.
        m: ``(2, 3)`` affine.
        out_wh: output ``(W, H)`` in pixels.
        interpolation: one of ``nearest, linear, cubic, lanczos`` (``area`` is
            resize-only and raises).
        border_value: fill value outside the source.

    Returns:
        the warped image, same dtype and channel layout, shape ``(H_out, W_out[, C])``.

    Raises:
        ValueError: bad matrix shape, size, or interpolation.
    """
    import cv2

    m = np.asarray(m, dtype=np.float64)
    if m.shape != (2, 3):
        raise ValueError(f"warp: expected a (2, 3) affine, got shape {m.shape}")
    if interpolation == "area":
        raise ValueError("warp: 'area' interpolation is resize-only; use resize_image")
    ow, oh = int(out_wh[0]), int(out_wh[1])
    if ow <= 0 or oh <= 0:
        raise ValueError(f"warp: output size must be positive, got {out_wh}")
    return cv2.warpAffine(
        np.ascontiguousarray(image),
        m,
        (ow, oh),
        flags=_cv2_flag(interpolation),
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=border_value,
    )


def resize_image(
    image: np.ndarray, dst_wh: tuple[int, int], interpolation: str = "linear"
) -> tuple[np.ndarray, np.ndarray]:
    """Resize with ``cv2.resize``; return ``(resized, M)``, ``M = resize_affine(src_wh, dst_wh)``.

    ``cv2.resize`` samples the source at ``(x' + 0.5) * w / w' - 0.5``, exactly the
    inverse of ``M`` (the pixel-centre convention), for every interpolation;
    ``area`` averages over the pixel footprint (anti-aliased downsampling) with the
    same mapping. dtype (uint8/uint16/float32) is preserved.

    Raises:
        ValueError: a non-positive size or unknown interpolation.
    """
    import cv2

    h, w = image.shape[:2]
    dw, dh = int(dst_wh[0]), int(dst_wh[1])
    m = resize_affine((w, h), (dw, dh))
    if (dw, dh) == (w, h):
        return image.copy(), m
    out = cv2.resize(np.ascontiguousarray(image), (dw, dh), interpolation=_cv2_flag(interpolation))
    return out, m


def place(
    image: np.ndarray, out_wh: tuple[int, int], offset_xy: tuple[int, int], fill: float = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Put ``image`` on a ``out_wh`` canvas with its top-left pixel at integer ``offset_xy``.

    Negative offsets / overflow crop, positive offsets pad with ``fill``; no
    interpolation. Returns ``(canvas, M)`` with ``M = translate(*offset_xy)``.

    Raises:
        ValueError: non-integer offset or non-positive size.
    """
    ox, oy = offset_xy
    if int(ox) != ox or int(oy) != oy:
        raise ValueError(f"place: offsets must be integers, got {offset_xy}")
    ox, oy = int(ox), int(oy)
    ow, oh = int(out_wh[0]), int(out_wh[1])
    if ow <= 0 or oh <= 0:
        raise ValueError(f"place: output size must be positive, got {out_wh}")
    h, w = image.shape[:2]
    canvas = np.full((oh, ow) + image.shape[2:], fill, dtype=image.dtype)
    # destination window, clipped to the canvas
    x0, y0 = max(ox, 0), max(oy, 0)
    x1, y1 = min(ox + w, ow), min(oy + h, oh)
    if x1 > x0 and y1 > y0:
        canvas[y0:y1, x0:x1] = image[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
    return canvas, translate(ox, oy)


def crop_affine(
    center_xy: tuple[float, float], out_wh: tuple[int, int], scale_xy: tuple[float, float] = (1.0, 1.0)
) -> np.ndarray:
    """Affine of a ``out_wh`` window centred on ``center_xy``, sampled at ``scale_xy``.

    ``x' = sx * (x - cx) + (W - 1) / 2`` (same for y): the source point ``center_xy`` lands
    on the window's centre ``((W - 1) / 2, (H - 1) / 2)`` (pixel-centre convention) and one
    source pixel spans ``sx`` window pixels (``sx = source mm/px / window mm/px`` for a
    window at a fixed physical resolution). ``warp(image, crop_affine(...), out_wh)``
    samples the window.

    Args:
        center_xy: window centre, source px (xy).
        out_wh: window size ``(W, H)`` px.
        scale_xy: window px per source px, per axis (> 0).

    Returns:
        ``(2, 3)`` float64 affine source px -> window px.

    Raises:
        ValueError: a non-positive size or scale, or a non-finite centre.
    """
    cx, cy = (float(v) for v in center_xy)
    sx, sy = (float(v) for v in scale_xy)
    w, h = int(out_wh[0]), int(out_wh[1])
    if w <= 0 or h <= 0 or not (sx > 0 and sy > 0):
        raise ValueError(f"crop_affine: size and scale must be positive, got {out_wh}, {scale_xy}")
    if not (np.isfinite(cx) and np.isfinite(cy)):
        raise ValueError(f"crop_affine: centre must be finite, got {center_xy}")
    return scale_translate(sx, sy, (w - 1) / 2.0 - sx * cx, (h - 1) / 2.0 - sy * cy)


def crop_window(
    image: np.ndarray, center_xy: tuple[float, float], out_wh: tuple[int, int], fill: float = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Cut a ``out_wh`` window out of ``image`` around ``center_xy`` without interpolation.

    The window's top-left pixel is at the integer offset ``round(c - (W - 1) / 2)`` (per
    axis), so the window centre lies within half a pixel of ``center_xy``; pixels outside
    ``image`` are ``fill`` (:func:`place`). The pixels are copied exactly.

    Args:
        image: ``(H, W)`` or ``(H, W, C)`` array, any dtype.
        center_xy: window centre in ``image`` px (xy, finite).
        out_wh: window size ``(W, H)`` px.
        fill: value outside the image.

    Returns:
        ``(window, M)``: the window (``image``'s dtype) and the ``(2, 3)`` float64 translation
        ``image px -> window px``.

    Raises:
        ValueError: non-finite centre or non-positive size.
    """
    cx, cy = (float(v) for v in center_xy)
    if not (np.isfinite(cx) and np.isfinite(cy)):
        raise ValueError(f"crop_window: centre must be finite, got {center_xy}")
    w, h = int(out_wh[0]), int(out_wh[1])
    x0 = int(np.floor(cx - (w - 1) / 2.0 + 0.5))
    y0 = int(np.floor(cy - (h - 1) / 2.0 + 0.5))
    return place(image, (w, h), (-x0, -y0), fill=fill)


#: Label conventions a heatmap model can have been trained with (the codec's ``convention``).
LABEL_CONVENTIONS = ("pixel_centre", "hf_corner")


def label_frame_affine(
    pixel_affine: np.ndarray,
    orig_wh: tuple[int, int],
    input_wh: tuple[int, int],
    convention: str = "pixel_centre",
) -> np.ndarray:
    """The affine original -> model input *as the model's training labels were mapped*.

    cephalo's own models are trained with labels moved exactly like the pixels
    (``convention="pixel_centre"``): the answer is ``pixel_affine`` itself.

    The public ISBI HRNet (``convention="hf_corner"``; Hugging Face
    ``cwlachap/hrnet-cephalometric-landmark-detection``, its README and training code)
    mapped labels as ``x * scale + pad`` with the letterbox ``scale`` (not the realised
    ``new_w / w``) and no half-pixel term, while its pixels moved by ``pixel_affine``. The
    difference is systematic (about -0.3 input px at 768, ~1 original px on ISBI), so its
    predictions must be mapped back with the inverse of *this* affine, not of ``pixel_affine``.
    When ``pixel_affine`` is that letterbox, its label mapping is returned exactly; for another
    axis-aligned transform (e.g. a ``stretch`` variant used in a diagnosis), the corner-convention
    counterpart ``x' = a x + t - 0.5 (a - 1)`` is (for a resize: ``x' = a x``).

    Args:
        pixel_affine: ``(2, 3)`` original -> input, as stored with the variant.
        orig_wh: original image size ``(w, h)`` px.
        input_wh: model input size ``(W, H)`` px.
        convention: one of :data:`LABEL_CONVENTIONS`.

    Returns:
        ``(2, 3)`` float64 affine original px -> model-label input px.

    Raises:
        ValueError: unknown convention, or ``hf_corner`` with a rotated/sheared affine.
    """
    m = np.asarray(pixel_affine, dtype=np.float64)
    if convention == "pixel_centre":
        return m.copy()
    if convention != "hf_corner":
        raise ValueError(f"unknown label convention {convention!r}; valid: {list(LABEL_CONVENTIONS)}")
    if not is_axis_aligned(m):
        raise ValueError("hf_corner label convention is only defined for axis-aligned (resize/pad) affines")
    lb = letterbox_geometry(orig_wh, input_wh)
    if np.allclose(lb.affine(), m, rtol=0, atol=1e-9):
        return lb.hf_label_affine()
    a = np.array([m[0, 0], m[1, 1]])
    return scale_translate(a[0], a[1], m[0, 2] - 0.5 * (a[0] - 1), m[1, 2] - 0.5 * (a[1] - 1))


# ----------------------------------------------------------------------------- distances in mm
# The one place pixel spacing is multiplied (re-exported by cephalo.evaluate.metrics).
def check_coords(name: str, a: np.ndarray) -> np.ndarray:
    """``a`` as float64 landmark coordinates of shape ``(N, K, 2)`` (ValueError naming ``name`` otherwise)."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 3 or a.shape[-1] != 2:
        raise ValueError(f"{name} must have shape (N, K, 2), got {a.shape}")
    return a


def check_spacing(spacing: np.ndarray, n: int) -> np.ndarray:
    """Pixel spacings as ``(n, 2)`` float64 mm/px (a ``(2,)`` spacing is shared); ValueError when not finite and > 0."""
    s = np.asarray(spacing, dtype=np.float64)
    if s.ndim == 1 and s.shape == (2,):
        s = np.broadcast_to(s, (n, 2))
    if s.shape != (n, 2):
        raise ValueError(f"spacing must have shape ({n}, 2) (mm/px x, y per image), got {s.shape}")
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
        bad = np.where(~np.isfinite(s).all(axis=1) | (s <= 0).any(axis=1))[0]
        raise ValueError(f"pixel spacing must be finite and > 0; bad rows {bad[:10].tolist()}")
    return s


def offsets_mm(pred: np.ndarray, gt: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Signed offsets prediction - ground truth in mm, per axis.

    Args:
        pred: (N, K, 2) float, xy, original-image pixels; NaN = missing.
        gt: (N, K, 2) float, xy, original-image pixels; NaN = missing.
        spacing: (N, 2) float mm/px (x, y) per image, or (2,) shared by all images.

    Returns:
        (N, K, 2) float64 mm (dx, dy); NaN where either is missing.

    Raises:
        ValueError: shapes disagree, or a spacing is missing / non-positive.
    """
    pred = check_coords("pred", pred)
    gt = check_coords("gt", gt)
    if pred.shape != gt.shape:
        raise ValueError(f"pred {pred.shape} and gt {gt.shape} differ in shape")
    s = check_spacing(spacing, pred.shape[0])
    return (pred - gt) * s[:, None, :]


def radial_errors_mm(pred: np.ndarray, gt: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Radial (Euclidean) error of each landmark in millimetres, with each image's own spacing.

    Args:
        pred: (N, K, 2) float, xy, original-image pixels; NaN = missing.
        gt: (N, K, 2) float, xy, original-image pixels; NaN = missing.
        spacing: (N, 2) float mm/px (x, y) per image (anisotropic allowed), or (2,).

    Returns:
        (N, K) float64 mm; NaN where the prediction or the ground truth is missing.

    Raises:
        ValueError: shapes disagree, or a spacing is missing / non-positive.
    """
    d = offsets_mm(pred, gt, spacing)
    err = np.hypot(d[..., 0], d[..., 1])
    err[np.isnan(d).any(axis=-1)] = np.nan
    return err
