"""The public ISBI-2015 HRNet-W32 checkpoint (``best_model.pth``) loaded whole into a model.

Its layout is read by :func:`cephalo.models.public_layout.read_public_layout` (a reader the checkpoint
loader is given); :func:`public_hrnet_meta` and :func:`read_public_layout` are re-exported here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from ..errors import CheckpointError
from ..models.checkpoint import build_and_load, read_checkpoint
from ..models.meta import ModelMeta
from ..models.public_layout import public_hrnet_meta, read_public_layout

__all__ = ["load_public_hrnet", "public_hrnet_meta", "read_public_layout"]


def load_public_hrnet(source: str | Path, map_location: Any = "cpu") -> tuple[nn.Module, ModelMeta]:
    """The public ISBI HRNet-W32 from a local ``best_model.pth`` (fetch it with ``cephalo fetch-model``).

    Returns:
        (HRNet in eval mode, ModelMeta with ``provenance`` = source file, sha256, epoch,
        best_val_mre, training config and the ISBI image numbers it was trained on).

    Raises:
        CheckpointError: unreadable file, or a cephalo checkpoint given instead of the public one.
    """
    ckpt = read_checkpoint(source, map_location, readers=(read_public_layout,))
    if ckpt.kind == "cephalo":
        raise CheckpointError("this is a cephalo checkpoint, not the public HF best_model.pth; use load_model", source)
    model = build_and_load(ckpt)
    return model.eval(), ckpt.meta
