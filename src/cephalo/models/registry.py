"""Model registry: ``create_model(name, num_landmarks, **kw)`` (see :mod:`cephalo.models`)."""

from __future__ import annotations

from typing import Any

from torch import nn

from .hrnet import HRNET_WIDTHS, hrnet
from .timm_heatmap import TimmHeatmapModel

__all__ = ["MODEL_NAMES", "create_model"]

#: fixed registry names; plus any ``timm:<name>``
MODEL_NAMES = (*sorted(HRNET_WIDTHS), "timm:<name>")


def create_model(name: str, num_landmarks: int, **kw: Any) -> nn.Module:
    """Build a heatmap model by registry name.

    Args:
        name: ``hrnet_w18`` | ``hrnet_w32`` | ``hrnet_w48`` | ``timm:<timm model name>``.
        num_landmarks: K, heatmap channels (catalogue order of the landmark names it is trained on).
        **kw: model keywords. HRNet: ``num_modules``, ``num_blocks``, ``head_dropout``,
            ``width`` (override, for tiny test models), ``pretrained`` (only ``False``).
            timm: ``pretrained`` (required, bool), ``head_channels``, ``head_dropout``, ``timm_kwargs``.

    Returns:
        nn.Module with ``stride == 4``: (B, 3, H, W) float32 -> (B, K, H/4, W/4) float32 logits.

    Raises:
        ValueError: unknown name (lists valid names), bad keywords, a timm model without an
            explicit ``pretrained``.
        CheckpointError: timm ``pretrained=True`` with no reachable/cached weights.
    """
    if name.startswith("timm:"):
        if "pretrained" not in kw or not isinstance(kw["pretrained"], bool):
            raise ValueError(
                f"{name}: 'pretrained' must be given explicitly as true/false (model.pretrained in params)"
            )
        return TimmHeatmapModel(name[len("timm:") :], num_landmarks, **kw)
    if name in HRNET_WIDTHS:
        return hrnet(name, num_landmarks, **kw)
    raise ValueError(f"unknown model {name!r}; valid: {list(MODEL_NAMES)}")
