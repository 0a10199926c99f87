"""Final tensor normalisation, applied at load time (never baked into the image cache).

``normalise(images, spec)`` turns ``(B, H, W)`` uint8/uint16 greyscale into the
``(B, 3, H, W)`` float32 tensor a model takes (grey replicated to RGB):

* ``imagenet``: ``x / 255`` (uint8) or ``x / 65535`` (uint16), then ImageNet
  mean ``(0.485, 0.456, 0.406)`` / std ``(0.229, 0.224, 0.225)`` per channel — what the
  public ISBI HRNet (and timm ImageNet backbones) were trained with.
* ``unit``: ``x / 255`` or ``x / 65535`` (range ``[0, 1]``), no mean/std.
* ``zscore``: per image ``(x - mean) / std`` over its own pixels (std floored at 1e-6).

A spec is a name (``"imagenet"``) or a dict ``{"name": ..., "mean": [...], "std": [...],
"max_value": ...}`` (``mean``/``std`` override ImageNet's; ``max_value`` is needed for
float input, whose bit depth cannot be read from its dtype).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["NORMALISATIONS", "IMAGENET_MEAN", "IMAGENET_STD", "normalisation_spec", "normalise"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NORMALISATIONS = ("imagenet", "unit", "zscore")


def normalisation_spec(spec: str | Mapping | None) -> dict:
    """Canonical dict form of a normalisation spec (``None`` -> imagenet).

    Raises:
        ValueError: unknown name (listing the valid ones) or malformed dict.
    """
    if spec is None:
        spec = "imagenet"
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, Mapping) or "name" not in spec:
        raise ValueError(f"normalisation spec must be a name or a dict with 'name', got {spec!r}")
    name = spec["name"]
    if name not in NORMALISATIONS:
        raise ValueError(f"unknown normalisation {name!r}; valid: {list(NORMALISATIONS)}")
    out: dict[str, Any] = {"name": name}
    if name == "imagenet":
        out["mean"] = [float(v) for v in spec.get("mean", IMAGENET_MEAN)]
        out["std"] = [float(v) for v in spec.get("std", IMAGENET_STD)]
        if len(out["mean"]) != 3 or len(out["std"]) != 3:
            raise ValueError(f"imagenet normalisation needs 3 means and 3 stds, got {spec!r}")
    if spec.get("max_value") is not None:
        out["max_value"] = float(spec["max_value"])
    return out


def _max_value(dtype, spec: dict, max_value: float | None) -> float:
    import torch

    if max_value is not None:
        return float(max_value)
    if "max_value" in spec:
        return float(spec["max_value"])
    if dtype in (np.uint8, torch.uint8):
        return 255.0
    if dtype in (np.uint16, getattr(torch, "uint16", None)):
        return 65535.0
    raise ValueError(f"normalise: cannot infer the bit depth of {dtype} input; pass max_value (255 or 65535)")


def normalise(images: Any, spec: str | Mapping | None = "imagenet", max_value: float | None = None):
    """Normalise greyscale images into a model input tensor.

    Args:
        images: ``(B, H, W)`` (or ``(H, W)``, treated as B=1) uint8 or uint16 numpy array
            or torch tensor, preprocessed pixels. Float input needs ``max_value``.
        spec: normalisation name or dict (module doc).
        max_value: the white level of the input (overrides the dtype's).

    Returns:
        ``(B, 3, H, W)`` float32 torch tensor (on the input tensor's device).

    Raises:
        ValueError: bad shape, unknown spec, or float input without ``max_value``.
    """
    import torch

    spec = normalisation_spec(spec)
    if isinstance(images, np.ndarray):
        dtype = images.dtype
        arr = np.asarray(images)
        t = torch.from_numpy(arr.astype(np.float32, copy=False) if arr.dtype != np.float32 else arr.copy())
    elif isinstance(images, torch.Tensor):
        dtype = images.dtype
        t = images.to(torch.float32)
    else:
        raise ValueError(f"normalise: expected a numpy array or torch tensor, got {type(images).__name__}")
    if t.ndim == 2:
        t = t[None]
    if t.ndim != 3:
        raise ValueError(f"normalise: expected (B, H, W) images, got shape {tuple(t.shape)}")
    name = spec["name"]
    if name == "zscore":
        mean = t.mean(dim=(1, 2), keepdim=True)
        std = t.std(dim=(1, 2), keepdim=True, unbiased=False).clamp_min(1e-6)
        t = (t - mean) / std
        return t[:, None].expand(-1, 3, -1, -1).contiguous()
    top = _max_value(dtype, spec, max_value)
    if name == "unit":
        return (t / top)[:, None].expand(-1, 3, -1, -1).contiguous()
    # (x / top - mean) / std as one fused multiply-add per channel
    mean = torch.tensor(spec["mean"], dtype=torch.float64)
    std = torch.tensor(spec["std"], dtype=torch.float64)
    a = (1.0 / (top * std)).to(torch.float32, copy=False).to(t.device).view(1, 3, 1, 1)
    b = (-mean / std).to(torch.float32).to(t.device).view(1, 3, 1, 1)
    return torch.addcmul(b, t[:, None], a)
