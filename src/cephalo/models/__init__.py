"""Heatmap models by name, checkpoint I/O, name-based head transfer, ONNX export.

Registry (``create_model(name, num_landmarks, **kw)``):

- ``hrnet_w18`` | ``hrnet_w32`` | ``hrnet_w48``: :class:`cephalo.models.hrnet.HRNet`, key- and
  shape-compatible with the public ISBI HRNet-W32 checkpoint (for W32, K=19).
- ``timm:<timm name>``: :class:`cephalo.models.timm_heatmap.TimmHeatmapModel`, a timm
  ``features_only`` backbone at stride 4 + heatmap head; ``pretrained`` must be given explicitly.

Every model: ``model.stride == 4``; ``forward((B, 3, H, W) float32) -> (B, K, H/4, W/4)`` logits;
``model.landmark_head_keys`` (state-dict keys whose dim 0 is the landmark channel);
``model.config`` (constructor keywords, stored in checkpoints as ``ModelMeta.arch_kwargs``).
"""

from __future__ import annotations

from .checkpoint import (
    ModelMeta,
    load_checkpoint,
    load_model,
    read_checkpoint,
    save_checkpoint,
)
from .hrnet import HRNet
from .onnx_export import export_onnx  # onnx and onnxruntime are imported when it runs
from .registry import MODEL_NAMES, create_model
from .transfer import init_from_checkpoint, transfer_head

__all__ = [
    "MODEL_NAMES",
    "create_model",
    "HRNet",
    "ModelMeta",
    "load_model",
    "load_checkpoint",
    "read_checkpoint",
    "save_checkpoint",
    "transfer_head",
    "init_from_checkpoint",
    "export_onnx",
]
