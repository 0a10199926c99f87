"""Shared pieces of the heatmap codecs: the decode result, the errors, the pixel <-> heatmap conventions.

Frames
------
* *Input pixels*: the model input image (e.g. the 768x768 letterbox), cephalo's convention
  (``cephalo.geometry``): xy, origin at the centre of the top-left pixel.
* *Heatmap pixels*: indices of the ``(h, w)`` heatmap, xy, ``hm[..., j, i]`` is the value at
  heatmap position ``(i, j)``.

Two conventions relate them for an integral stride ``s``:

* ``"pixel_centre"``: heatmap cell ``i`` covers input pixels ``[i*s - 0.5, (i+1)*s - 0.5]`` and its
  centre is input ``x = (i + 0.5) * s - 0.5`` (the pixel-centre resize of ``geometry.resize_affine``).
  cephalo's own models use it.
* ``"hf_corner"``: input ``x = i * s`` (heatmap index times the stride, as the public ISBI HRNet-W32
  was trained and decoded: targets at ``landmark_768 / 4``, decode ``* 4``;
  see ``shared/specs/hf_hrnet_w32/README.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError

__all__ = ["CONVENTIONS", "CodecConfigError", "DecodeResult", "to_heatmap_px", "to_input_px"]

#: convention name -> one-line description
CONVENTIONS: dict[str, str] = {
    "pixel_centre": "input x = (hx + 0.5) * stride - 0.5 (cephalo's own models)",
    "hf_corner": "input x = hx * stride (the public ISBI HRNet-W32)",
}


class CodecConfigError(ConfigError, ValueError):
    """A codec/model mismatch or an invalid codec setting (stride, sizes, sigma, names).

    It is both a :class:`cephalo.errors.ConfigError` (the CLI prints one line, exit 1) and a
    ``ValueError`` (what library callers expect for a bad argument).
    """


@dataclass(frozen=True)
class DecodeResult:
    """What a codec's ``decode`` returns.

    Attributes:
        coords: ``(B, K, 2)`` float64, xy, **input pixels** (cephalo convention). NaN where
            ``degenerate`` is True.
        confidence: ``(B, K)`` float64. ``argmax``/``dark``: the maximum heatmap value;
            ``soft_argmax``: the softmax probability mass in a ``(2r+1) x (2r+1)`` window around the
            argmax (``r = ceil(2 * sigma)``), in [0, 1]. 0 where ``degenerate``.
        degenerate: ``(B, K)`` bool. True for a map with a non-finite value (NaN/inf) or a flat map
            (peak-to-peak range <= ``flat_tol * max(1, max|value|)``: all zeros, constant). Such maps
            are never decoded to a corner or the centre: their coords are NaN.
    """

    coords: np.ndarray
    confidence: np.ndarray
    degenerate: np.ndarray

    def __iter__(self):  # allows ``coords, conf, degenerate = codec.decode(hm)``
        return iter((self.coords, self.confidence, self.degenerate))


def _check_convention(convention: str) -> None:
    if convention not in CONVENTIONS:
        raise CodecConfigError(f"unknown heatmap convention {convention!r}; valid: {', '.join(sorted(CONVENTIONS))}")


def to_heatmap_px(xy: np.ndarray, stride: int, convention: str) -> np.ndarray:
    """Input pixels -> heatmap pixels.

    Args:
        xy: ``(..., 2)`` float, input pixels (NaN propagates).
        stride: integral input/heatmap ratio.
        convention: ``"pixel_centre"`` (``hx = (x + 0.5) / s - 0.5``) or ``"hf_corner"`` (``hx = x / s``).

    Returns:
        float64 array of the shape of ``xy``, heatmap pixels.

    Raises:
        CodecConfigError: unknown convention.
    """
    _check_convention(convention)
    xy = np.asarray(xy, dtype=np.float64)
    if convention == "pixel_centre":
        return (xy + 0.5) / stride - 0.5
    return xy / stride


def to_input_px(hxy: np.ndarray, stride: int, convention: str) -> np.ndarray:
    """Heatmap pixels -> input pixels; the exact inverse of :func:`to_heatmap_px`.

    Raises:
        CodecConfigError: unknown convention.
    """
    _check_convention(convention)
    hxy = np.asarray(hxy, dtype=np.float64)
    if convention == "pixel_centre":
        return (hxy + 0.5) * stride - 0.5
    return hxy * stride
