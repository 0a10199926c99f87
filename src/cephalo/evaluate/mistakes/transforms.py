"""Coordinate mistakes as composable, per-image axis-wise affine transforms.

A *hypothesis* says how a pipeline turned the correct original-image pixel coordinates ``q``
(xy, origin at the centre of the top-left pixel, x right, y down) into what a file holds::

    file = swap(unit(frame(mirror(q))))

* ``mirror``: the image was flipped before inference (``x -> w - 1 - x``; ``y``; or both);
* ``frame``: the coordinates were left in the network's input frame - a letterbox of a square
  ``S`` input (image centred or at the top-left, labels mapped ``(x + 0.5) * new_w / w - 0.5 + pad``
  or ``x * scale + pad``), a stretch to ``Sw x Sh``, or the stride-4 heatmap of a letterbox
  (``(x_lb + 0.5) / 4 - 0.5`` or ``x_lb / 4``, maybe rounded down to integer cells);
* ``unit``: normalised by the frame size, millimetres (each image's spacing, or one constant
  spacing), a global scale, or - in ``x_mm`` columns - pixels, or mm made with one spacing;
* ``swap``: the file writes (row, column) instead of (x, y).

Each of these is an affine map per image and axis, so a whole composition is one ``(N, 2)``
slope ``a`` and intercept ``b`` with ``file_unswapped = a * q + b``; undoing it is exact.
Everything here is plain numpy; sizes are in pixels, spacings in mm/px.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

__all__ = [
    "Structure",
    "Frame",
    "forward_coefficients",
    "undo",
    "apply",
    "complexity",
    "HEATMAP_STRIDE",
    "FRAMES",
    "UNITS_PX",
    "UNITS_MM",
    "frame_coefficients",
]

#: the heatmap stride of HRNet-style landmark models (input px per heatmap px)
HEATMAP_STRIDE = 4
FRAMES = ("", "letterbox", "heatmap", "stretch")
#: units searched when the file's columns are pixels (x, y) and when they are millimetres (x_mm, y_mm)
UNITS_PX = ("px", "normalised", "normalised_half", "mm", "const", "scale")
UNITS_MM = ("px", "px_as_mm", "const_mm")


@dataclass(frozen=True)
class Frame:
    """An input frame: ``kind`` ('' none, letterbox, heatmap, stretch), ``size`` (W, H) of the
    network input (the heatmap is ``size / 4``), ``pad`` 'centre' or 'top-left', ``conv`` 'centre'
    (``(x + 0.5) * f - 0.5``) or 'corner' (``x * f``), ``newsize`` 'int' (``int(w * scale)``) or
    'round', ``padding`` 'int' (``(S - new_w) // 2``) or 'float' (``(S - new_w) / 2``), ``rounding``
    '' or 'floor' (heatmap cells written as integers, rounded down)."""

    kind: str = ""
    size: tuple = (0, 0)
    pad: str = "centre"
    conv: str = "centre"
    newsize: str = "int"
    padding: str = "int"
    rounding: str = ""


@dataclass(frozen=True)
class Structure:
    """One composition: ``swap`` (bool), ``mirror`` ('', 'x', 'y', 'xy'), ``frame`` (:class:`Frame`),
    ``unit`` (one of :data:`UNITS_PX` / :data:`UNITS_MM`), ``c`` (the spacing or scale of 'const',
    'const_mm', 'scale'), ``catalogue`` ('' = the file's own landmark order, else a catalogue key)."""

    swap: bool = False
    mirror: str = ""
    frame: Frame = Frame()
    unit: str = "px"
    c: float = 1.0
    catalogue: str = ""

    def with_(self, **kw) -> Structure:
        return replace(self, **kw)


def complexity(s: Structure) -> int:
    """Number of mistakes in the composition (conventions and rounding are not counted).

    A stretch under normalised coordinates is not counted apart: ``x_stretch / Sw`` is the image's
    ``x / w`` up to the pixel-centre convention of the stretched input (exactly, with ``x * Sw / w``),
    so it is one mistake - normalised coordinates - written in that input's convention.
    """
    frame = bool(s.frame.kind) and not (s.frame.kind == "stretch" and s.unit.startswith("normalised"))
    return int(s.swap) + int(bool(s.mirror)) + int(frame) + int(s.unit != "px") + int(bool(s.catalogue))


def frame_coefficients(fr: Frame, wh: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(a, b, frame_wh)``: each ``(N, 2)`` float64, ``x_frame = a * x + b`` and the frame size."""
    wh = np.asarray(wh, dtype=np.float64)
    if not fr.kind:
        return np.ones_like(wh), np.zeros_like(wh), wh
    sw, sh = float(fr.size[0]), float(fr.size[1])
    if fr.kind == "stretch":
        a = np.stack([sw / wh[:, 0], sh / wh[:, 1]], axis=1)
        b = 0.5 * a - 0.5 if fr.conv == "centre" else np.zeros_like(a)
        return a, b, np.tile([sw, sh], (len(wh), 1))
    # letterbox (and the letterbox under a heatmap)
    scale = np.minimum(sw / wh[:, 0], sh / wh[:, 1])
    raw = wh * scale[:, None]
    new = np.floor(raw) if fr.newsize == "int" else np.floor(raw + 0.5)
    new = np.clip(new, 1, [sw, sh])
    if fr.pad == "centre":
        pad = np.floor(([sw, sh] - new) / 2) if fr.padding == "int" else ([sw, sh] - new) / 2
    else:
        pad = np.zeros_like(new)
    if fr.conv == "centre":
        a = new / wh
        b = 0.5 * a - 0.5 + pad
    else:  # x * scale + pad (the public HRNet's labels)
        a = np.repeat(scale[:, None], 2, axis=1)
        b = pad
    fwh = np.tile([sw, sh], (len(wh), 1))
    if fr.kind == "heatmap":
        st = float(HEATMAP_STRIDE)
        if fr.conv == "centre":
            a, b = a / st, (b + 0.5) / st - 0.5
        else:
            a, b = a / st, b / st
        if fr.rounding == "floor":  # int(x) keeps the cell's corner: its centre is half a cell further
            b = b - 0.5
        fwh = fwh / st
    return a, b, fwh


def forward_coefficients(s: Structure, wh: np.ndarray, spacing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slope and intercept of the whole composition but the swap.

    Args:
        s: the composition.
        wh: (N, 2) int original image (width, height) px.
        spacing: (N, 2) float mm/px (x, y).

    Returns:
        ``(a, b)``, each (N, 2) float64: ``file_unswapped = a * q + b`` per image and axis, with
        ``q`` original px (xy, pixel-centre origin).
    """
    wh = np.asarray(wh, dtype=np.float64)
    sp = np.asarray(spacing, dtype=np.float64)
    a, b, fwh = frame_coefficients(s.frame, wh)
    u, v = np.ones_like(a), np.zeros_like(a)
    if s.unit == "normalised":
        u = 1.0 / fwh
    elif s.unit == "normalised_half":
        u, v = 1.0 / fwh, 0.5 / fwh
    elif s.unit == "mm":
        u = sp
    elif s.unit in ("const", "scale"):
        u = np.full_like(a, s.c)
    elif s.unit == "px_as_mm":  # px written as mm, read back with each image's spacing
        u = 1.0 / sp
    elif s.unit == "const_mm":  # mm made with one spacing, read back with each image's own
        u = s.c / sp
    a, b = u * a, u * b + v
    for ax, on in ((0, "x" in s.mirror), (1, "y" in s.mirror)):
        if on:  # q -> (w - 1) - q before the frame
            b[:, ax] = a[:, ax] * (wh[:, ax] - 1) + b[:, ax]
            a[:, ax] = -a[:, ax]
    return a, b


def apply(s: Structure, q: np.ndarray, wh: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """What a pipeline with mistakes ``s`` writes for correct coordinates ``q`` ((N, K, 2) px)."""
    a, b = forward_coefficients(s, wh, spacing)
    out = a[:, None, :] * np.asarray(q, dtype=np.float64) + b[:, None, :]
    return out[..., ::-1] if s.swap else out


def undo(s: Structure, pred: np.ndarray, wh: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Undo ``s`` on file coordinates ``pred`` ((N, K, 2) float64) -> original px ((N, K, 2))."""
    p = np.asarray(pred, dtype=np.float64)
    p = p[..., ::-1] if s.swap else p
    a, b = forward_coefficients(s, wh, spacing)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (p - b[:, None, :]) / a[:, None, :]
