"""Any timm backbone as a stride-4 heatmap model: ``features_only`` feature + a small head.

The backbone is ``timm.create_model(name, features_only=True, out_indices=(i,))`` with ``i`` the
feature of reduction 4 (or, when the backbone has none, its finest feature coarser than 4, which
is bilinearly upsampled to stride 4, e.g. a ViT/ConvNeXt at stride 8-16). Head (cephalo's own,
in the style of SimpleBaseline, Xiao et al., ECCV 2018, without deconvolutions): 3x3 conv + BN +
ReLU, then a 1x1 conv to K heatmap channels with bias.

ImageNet weights come only when ``pretrained=True`` is asked for explicitly; with
``pretrained=True`` and no cached weights offline, :class:`~cephalo.errors.CheckpointError` is
raised (never a silent fall-back to random weights).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError

__all__ = ["TimmHeatmapModel"]


class TimmHeatmapModel(nn.Module):
    """timm ``features_only`` backbone + heatmap head, output stride 4.

    Args:
        timm_name: a timm model name (``timm.list_models()``), e.g. ``"hrnet_w18_small"``.
        num_landmarks: K output channels.
        pretrained: load timm's ImageNet weights (explicit; no default).
        head_channels: channels of the head's 3x3 conv (default 64).
        head_dropout: ``Dropout2d`` probability before the final 1x1 conv (default 0.0).
        timm_kwargs: extra ``timm.create_model`` keywords (e.g. ``{"img_size": 512}`` for a ViT).

    Forward:
        x: (B, 3, H, W) float32 normalised image (ImageNet mean/std for pretrained weights).
        returns: (B, K, H // 4, W // 4) float32 heatmap logits.

    Raises (construction):
        ValueError: unknown timm model name (message lists close matches).
        CheckpointError: ``pretrained=True`` but the weights cannot be obtained (offline, no cache).
    """

    stride = 4
    landmark_head_keys = ("head.final.weight", "head.final.bias")

    def __init__(
        self,
        timm_name: str,
        num_landmarks: int,
        *,
        pretrained: bool,
        head_channels: int = 64,
        head_dropout: float = 0.0,
        timm_kwargs: dict | None = None,
    ):
        super().__init__()
        import timm

        if not timm.is_model(timm_name):
            close = timm.list_models(f"*{timm_name.split('_')[0]}*")[:20]
            raise ValueError(f"unknown timm model {timm_name!r}; similar names: {close}")
        if num_landmarks < 1:
            raise ValueError(f"num_landmarks must be >= 1, got {num_landmarks}")
        self.timm_name = timm_name
        self.num_landmarks = int(num_landmarks)
        self.config = {
            "timm_name": timm_name,
            "head_channels": int(head_channels),
            "head_dropout": float(head_dropout),
            "timm_kwargs": dict(timm_kwargs or {}),
        }
        tkw = dict(timm_kwargs or {})
        probe = timm.create_model(timm_name, features_only=True, pretrained=False, **tkw)
        reductions = list(probe.feature_info.reduction())
        del probe
        if 4 in reductions:
            idx = reductions.index(4)
        else:
            coarser = [r for r in reductions if r > 4]
            if not coarser:
                raise ValueError(f"timm model {timm_name!r} has no feature at stride >= 4: {reductions}")
            idx = reductions.index(min(coarser))
        self.feature_reduction = int(reductions[idx])
        try:
            self.backbone = timm.create_model(
                timm_name, features_only=True, pretrained=bool(pretrained), out_indices=(idx,), **tkw
            )
        except (OSError, RuntimeError, ValueError) as e:  # hub errors are OSError subclasses
            if not pretrained:
                raise
            raise CheckpointError(
                f"ImageNet weights for timm model {timm_name!r} are not available "
                f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                "go online once to cache them, or set model.pretrained: false explicitly"
            ) from None
        cfg = getattr(self.backbone, "pretrained_cfg", None) or {}
        if not isinstance(cfg, dict):
            cfg = {k: getattr(cfg, k, None) for k in ("hf_hub_id", "url")}
        #: what initialised the backbone, for checkpoint provenance
        self.init_info = {
            "pretrained": bool(pretrained),
            "weights": (cfg.get("hf_hub_id") or cfg.get("url") or None) if pretrained else None,
        }
        channels = int(self.backbone.feature_info.channels()[0])
        self.head = nn.Sequential()
        self.head.add_module("conv", nn.Conv2d(channels, head_channels, 3, padding=1, bias=False))
        self.head.add_module("bn", nn.BatchNorm2d(head_channels))
        self.head.add_module("relu", nn.ReLU(inplace=True))
        self.head.add_module("dropout", nn.Dropout2d(head_dropout))
        self.head.add_module("final", nn.Conv2d(head_channels, num_landmarks, 1, bias=True))
        nn.init.normal_(self.head.final.weight, std=0.001)
        nn.init.zeros_(self.head.final.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"{self.timm_name}: expects input (B, 3, H, W), got {tuple(x.shape)}")
        f = self.backbone(x)[0]
        out_size = (x.shape[-2] // 4, x.shape[-1] // 4)
        if tuple(f.shape[-2:]) != out_size:
            f = F.interpolate(f, size=out_size, mode="bilinear", align_corners=False)
        return self.head(f)
