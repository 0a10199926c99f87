"""The Gaussian heatmap codec: one object for target encoding (training) and decoding (inference).

Targets follow Tompson et al., NeurIPS 2014 / Newell et al., ECCV 2016 (an unnormalised 2-D
Gaussian per landmark, peak 1 at its centre), centred at the **sub-pixel** landmark position in
heatmap pixels (no rounding to integer cells), so the decoders can recover the position without a
quantisation error. The public HRNet's training code does the same (its Gaussians are evaluated on
the integer index grid around the unrounded centre ``landmark_768 / 4``); it differs only in the
frame: its heatmap index ``i`` is input pixel ``4 i`` (``convention="hf_corner"``), cephalo's is
the pixel centre ``4 i + 1.5`` (``convention="pixel_centre"``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import decoders as _dec
from .base import CONVENTIONS, CodecConfigError, DecodeResult, to_heatmap_px, to_input_px

__all__ = ["GaussianHeatmapCodec"]


def _pair(value: Any, what: str) -> tuple[int, int]:
    try:
        a, b = value
        if float(a) != int(a) or float(b) != int(b):
            raise ValueError
        a, b = int(a), int(b)
    except (TypeError, ValueError):
        raise CodecConfigError(f"{what} must be two integers (W, H), got {value!r}") from None
    if a <= 0 or b <= 0:
        raise CodecConfigError(f"{what} must be positive, got {value!r}")
    return a, b


class GaussianHeatmapCodec:
    """Input-pixel landmarks <-> ``(K, h, w)`` Gaussian heatmaps.

    Args:
        input_size: ``(W, H)`` model input size in pixels.
        heatmap_size: ``(w, h)`` heatmap size; ``W / w == H / h`` must be the same integer (the stride).
        sigma: Gaussian standard deviation in **heatmap** pixels (> 0).
        decoder: ``"dark"`` | ``"argmax"`` | ``"soft_argmax"`` (see :mod:`cephalo.codecs.decoders`).
        convention: ``"pixel_centre"`` | ``"hf_corner"`` (see :mod:`cephalo.codecs.base`).
        temperature: soft-argmax temperature (> 0).
        quarter_offset: argmax decoder's quarter-pixel refinement.
        dark_blur: DARK's Gaussian smoothing of the map before the log.
        flat_tol: flatness tolerance of the degenerate-map check.

    Attributes:
        stride (int), input_size (W, H), heatmap_size (w, h), sigma, decoder, convention.

    Raises:
        CodecConfigError (a ``ValueError`` and a ``cephalo.errors.ConfigError``): non-integral or
        per-axis different stride, non-positive sizes or sigma, unknown decoder or convention.
    """

    name = "gaussian"

    def __init__(
        self,
        input_size: tuple[int, int],
        heatmap_size: tuple[int, int],
        sigma: float = 2.0,
        decoder: str = "dark",
        convention: str = "pixel_centre",
        *,
        temperature: float = 1.0,
        quarter_offset: bool = True,
        dark_blur: bool = True,
        flat_tol: float = _dec.DEFAULT_FLAT_TOL,
    ):
        self.input_size = _pair(input_size, "input_size")
        self.heatmap_size = _pair(heatmap_size, "heatmap_size")
        (iw, ih), (hw, hh) = self.input_size, self.heatmap_size
        if iw % hw or ih % hh or iw // hw != ih // hh:
            raise CodecConfigError(
                f"codec: input size {iw}x{ih} / heatmap size {hw}x{hh} is not one integral stride "
                f"on both axes ({iw / hw:g} x {ih / hh:g})"
            )
        self.stride = iw // hw
        try:
            sigma_f = float(sigma) if not isinstance(sigma, (bool, str)) else float("nan")
        except (TypeError, ValueError):
            sigma_f = float("nan")
        if not (math.isfinite(sigma_f) and sigma_f > 0):
            raise CodecConfigError(f"codec: sigma must be a positive number of heatmap pixels, got {sigma!r}")
        self.sigma = sigma_f
        if decoder not in _dec.DECODERS:
            raise CodecConfigError(f"codec: unknown decoder {decoder!r}; valid: {', '.join(sorted(_dec.DECODERS))}")
        if convention not in CONVENTIONS:
            raise CodecConfigError(f"codec: unknown convention {convention!r}; valid: {', '.join(sorted(CONVENTIONS))}")
        if not temperature > 0:
            raise CodecConfigError(f"codec: temperature must be > 0, got {temperature!r}")
        self.decoder = decoder
        self.convention = convention
        self.temperature = float(temperature)
        self.quarter_offset = bool(quarter_offset)
        self.dark_blur = bool(dark_blur)
        self.flat_tol = float(flat_tol)

    # ------------------------------------------------------------------ description
    def to_dict(self) -> dict:
        """JSON-serialisable kwargs; ``create_codec(**codec.to_dict())`` rebuilds an equal codec."""
        return {
            "name": self.name,
            "input_size": list(self.input_size),
            "heatmap_size": list(self.heatmap_size),
            "sigma": self.sigma,
            "decoder": self.decoder,
            "convention": self.convention,
            "temperature": self.temperature,
            "quarter_offset": self.quarter_offset,
            "dark_blur": self.dark_blur,
            "flat_tol": self.flat_tol,
        }

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items() if k != "name")
        return f"GaussianHeatmapCodec({args})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GaussianHeatmapCodec) and self.to_dict() == other.to_dict()

    __hash__ = None  # mutable-looking object; equality by settings

    def check_stride(self, model_stride: int) -> None:
        """Check that a model's output stride equals this codec's.

        Raises:
            CodecConfigError: ``model_stride != self.stride`` (message gives both and the sizes).
        """
        if int(model_stride) != model_stride or int(model_stride) != self.stride:
            raise CodecConfigError(
                f"codec stride {self.stride} (input {self.input_size[0]}x{self.input_size[1]} -> heatmap "
                f"{self.heatmap_size[0]}x{self.heatmap_size[1]}) does not match the model's output stride "
                f"{model_stride}; set heatmap_size = input_size / {model_stride}"
            )

    # ------------------------------------------------------------------ frames
    def to_heatmap_px(self, xy: np.ndarray) -> np.ndarray:
        """``(..., 2)`` input px -> heatmap px (float64), with this codec's convention."""
        return to_heatmap_px(xy, self.stride, self.convention)

    def to_input_px(self, hxy: np.ndarray) -> np.ndarray:
        """``(..., 2)`` heatmap px -> input px (float64), the inverse of :meth:`to_heatmap_px`."""
        return to_input_px(hxy, self.stride, self.convention)

    def in_frame(self, coords: np.ndarray) -> np.ndarray:
        """``(..., 2)`` input px -> ``(...)`` bool: finite and inside the input image.

        The image extent is ``[-0.5, W - 0.5] x [-0.5, H - 0.5]`` (pixel-centre origin), edges included.
        """
        c = np.asarray(coords, dtype=np.float64)
        w, h = self.input_size
        with np.errstate(invalid="ignore"):
            return (
                np.isfinite(c).all(axis=-1)
                & (c[..., 0] >= -0.5)
                & (c[..., 0] <= w - 0.5)
                & (c[..., 1] >= -0.5)
                & (c[..., 1] <= h - 0.5)
            )

    # ------------------------------------------------------------------ encoding
    def encode(self, coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gaussian target heatmaps for one image.

        ``hm[k, j, i] = exp(-((i - hx_k)^2 + (j - hy_k)^2) / (2 sigma^2))`` with ``(hx_k, hy_k)`` the
        landmark in heatmap px (sub-pixel, not rounded).

        Args:
            coords: ``(K, 2)`` float, xy, input pixels (cephalo convention); NaN = missing.

        Returns:
            ``heatmaps (K, h, w)`` float32 in [0, 1]; ``weights (K,)`` float32: 1, or 0 (and an
            all-zero map) for a missing (NaN) landmark or one outside the input image
            (see :meth:`in_frame`).

        Raises:
            ValueError: ``coords`` is not ``(K, 2)``.
        """
        c = np.asarray(coords, dtype=np.float64)
        if c.ndim != 2 or c.shape[1] != 2:
            raise ValueError(f"encode: coords must be (K, 2), got shape {c.shape}")
        hm, wt = self._encode_numpy(c[None])
        return hm[0], wt[0]

    def encode_batch(self, coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`encode` for ``(B, K, 2)`` coords -> ``(B, K, h, w)`` float32, ``(B, K)`` float32.

        Raises:
            ValueError: ``coords`` is not ``(B, K, 2)``.
        """
        c = np.asarray(coords, dtype=np.float64)
        if c.ndim != 3 or c.shape[2] != 2:
            raise ValueError(f"encode_batch: coords must be (B, K, 2), got shape {c.shape}")
        return self._encode_numpy(c)

    def _encode_numpy(self, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        valid = self.in_frame(c)  # (B, K)
        hxy = self.to_heatmap_px(np.where(valid[..., None], c, 0.0))
        w, h = self.heatmap_size
        inv = 1.0 / (2.0 * self.sigma**2)
        gx = np.exp(-((np.arange(w)[None, None, :] - hxy[..., 0:1]) ** 2) * inv)  # (B, K, w)
        gy = np.exp(-((np.arange(h)[None, None, :] - hxy[..., 1:2]) ** 2) * inv)  # (B, K, h)
        gx *= valid[..., None]
        hm = (gy[..., :, None] * gx[..., None, :]).astype(np.float32)
        return hm, valid.astype(np.float32)

    def encode_torch(self, coords: Any) -> tuple[Any, Any]:
        """Batch encoding in torch on ``coords``' device (for the training loop).

        Args:
            coords: ``(B, K, 2)`` torch tensor, xy, input pixels; NaN = missing.

        Returns:
            ``heatmaps (B, K, h, w)`` float32 tensor, ``weights (B, K)`` float32 tensor, on the same
            device; numerically equal to :meth:`encode_batch` (float32 rounding).

        Raises:
            ValueError: ``coords`` is not ``(B, K, 2)``.
        """
        import torch

        if coords.ndim != 3 or coords.shape[2] != 2:
            raise ValueError(f"encode_torch: coords must be (B, K, 2), got shape {tuple(coords.shape)}")
        c = coords.to(torch.float64)
        w_in, h_in = self.input_size
        valid = (
            torch.isfinite(c).all(dim=-1)
            & (c[..., 0] >= -0.5)
            & (c[..., 0] <= w_in - 0.5)
            & (c[..., 1] >= -0.5)
            & (c[..., 1] <= h_in - 0.5)
        )
        c = torch.where(valid[..., None], c, torch.zeros_like(c))
        hxy = (c + 0.5) / self.stride - 0.5 if self.convention == "pixel_centre" else c / self.stride
        w, h = self.heatmap_size
        inv = 1.0 / (2.0 * self.sigma**2)
        ix = torch.arange(w, device=c.device, dtype=torch.float64)
        iy = torch.arange(h, device=c.device, dtype=torch.float64)
        gx = torch.exp(-((ix - hxy[..., 0:1]) ** 2) * inv) * valid[..., None]
        gy = torch.exp(-((iy - hxy[..., 1:2]) ** 2) * inv)
        hm = (gy[..., :, None] * gx[..., None, :]).to(torch.float32)
        return hm, valid.to(torch.float32)

    # ------------------------------------------------------------------ decoding
    def decode(self, heatmaps: Any) -> DecodeResult:
        """Landmark positions from heatmaps/logits with this codec's decoder.

        Args:
            heatmaps: ``(B, K, h, w)`` numpy array or torch tensor (any float dtype, any device);
                ``(h, w)`` must equal ``heatmap_size[::-1]``.

        Returns:
            :class:`DecodeResult`: ``coords (B, K, 2)`` float64 input px (NaN where degenerate),
            ``confidence (B, K)`` float64, ``degenerate (B, K)`` bool.

        Raises:
            ValueError: not 4-D.
            CodecConfigError: spatial size differs from ``heatmap_size`` (model/codec mismatch).
        """
        hm = _dec.as_numpy_heatmaps(heatmaps)
        w, h = self.heatmap_size
        if hm.shape[2:] != (h, w):
            raise CodecConfigError(
                f"decode: heatmaps are {hm.shape[3]}x{hm.shape[2]} (w x h) but the codec expects {w}x{h}"
            )
        if self.decoder == "argmax":
            hxy, conf, deg = _dec.decode_argmax(hm, quarter_offset=self.quarter_offset, flat_tol=self.flat_tol)
        elif self.decoder == "dark":
            hxy, conf, deg = _dec.decode_dark(hm, sigma=self.sigma, blur=self.dark_blur, flat_tol=self.flat_tol)
        else:
            hxy, conf, deg = _dec.decode_soft_argmax(
                hm,
                temperature=self.temperature,
                peak_radius=int(math.ceil(2.0 * self.sigma)),
                flat_tol=self.flat_tol,
            )
        return DecodeResult(coords=self.to_input_px(hxy), confidence=conf, degenerate=deg)
