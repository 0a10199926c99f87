"""Heatmap codecs: landmark pixels <-> heatmaps (stride, sigma, sub-pixel decoding, confidence).

One codec object is shared by target encoding (training) and decoding (evaluation/prediction), so
the two can never disagree on the stride or the pixel convention. Codecs know nothing about mm or
data sets.

Example::

    codec = create_codec("gaussian", input_size=(768, 768), heatmap_size=(192, 192), sigma=2.0,
                         decoder="dark", convention="pixel_centre")
    codec.check_stride(model.stride)
    heatmaps, weights = codec.encode(coords)                 # (K, 192, 192) float32, (K,) float32
    coords, confidence, degenerate = codec.decode(output)    # (B, K, 2) input px, (B, K), (B, K)
    meta_codec = codec.to_dict()                             # create_codec(**meta_codec) rebuilds it
"""

from __future__ import annotations

from typing import Any

from .base import CONVENTIONS, CodecConfigError, DecodeResult, to_heatmap_px, to_input_px
from .decoders import DECODERS
from .gaussian import GaussianHeatmapCodec

__all__ = [
    "CODECS",
    "CONVENTIONS",
    "DECODERS",
    "CodecConfigError",
    "DecodeResult",
    "GaussianHeatmapCodec",
    "create_codec",
    "to_heatmap_px",
    "to_input_px",
]

#: codec name -> class
CODECS: dict[str, type] = {"gaussian": GaussianHeatmapCodec}


def create_codec(
    name: str = "gaussian",
    input_size: tuple[int, int] = (768, 768),
    heatmap_size: tuple[int, int] = (192, 192),
    sigma: float = 2.0,
    decoder: str = "dark",
    convention: str = "pixel_centre",
    **kwargs: Any,
) -> GaussianHeatmapCodec:
    """Build a codec by name (``create_codec(**codec.to_dict())`` round-trips).

    Args:
        name: ``"gaussian"``.
        input_size: ``(W, H)`` model input pixels.
        heatmap_size: ``(w, h)``; ``W/w == H/h`` must be one integer (the stride).
        sigma: target Gaussian sigma in heatmap pixels.
        decoder: ``"dark"`` | ``"argmax"`` | ``"soft_argmax"``.
        convention: ``"pixel_centre"`` (cephalo models) | ``"hf_corner"`` (the public HRNet).
        **kwargs: codec options (``temperature``, ``quarter_offset``, ``dark_blur``, ``flat_tol``).

    Raises:
        ValueError: unknown name (the message lists the valid names).
        CodecConfigError (a ValueError): invalid sizes/stride/sigma/decoder/convention.
    """
    if name not in CODECS:
        raise CodecConfigError(f"unknown codec {name!r}; valid: {', '.join(sorted(CODECS))}")
    return CODECS[name](
        input_size=input_size,
        heatmap_size=heatmap_size,
        sigma=sigma,
        decoder=decoder,
        convention=convention,
        **kwargs,
    )
