"""The layout of the public ISBI-2015 HRNet-W32 checkpoint (the Hugging Face ``best_model.pth``: a
training dict with ``model_state_dict`` or a bare state dict), read into cephalo's
:class:`~cephalo.models.meta.Checkpoint` / :class:`~cephalo.models.meta.ModelMeta`.

cephalo's own checkpoint format stays in :mod:`cephalo.models.checkpoint`; :func:`read_public_layout`
is a reader of a foreign layout (:data:`~cephalo.models.meta.CheckpointReader`) that its
``read_checkpoint`` is given (by default, :data:`~cephalo.models.checkpoint.FOREIGN_READERS`). It
knows only the checkpoint's types and the HRNet, not the loader. Loading the public model whole is
:func:`cephalo.public_hrnet.checkpoint.load_public_hrnet`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from ..io import file_sha256
from ..landmarks import CLDETECTION38, ISBI19
from ..public_hrnet.split import PUBLIC_HRNET_SPLIT
from .hrnet import HRNET_WIDTHS
from .meta import IMAGENET_NORMALISATION, Checkpoint, ModelMeta, jsonable, strip_prefixes

__all__ = ["public_hrnet_meta", "read_public_layout"]


def _infer_hrnet_kwargs(sd: Mapping[str, torch.Tensor], path: Path) -> tuple[str, dict, int]:
    """(arch, arch_kwargs, K) of a pose-HRNet state dict."""
    if "final_layer.weight" not in sd:
        some = sorted(sd)[:3]
        raise CheckpointError(
            f"not an HRNet heatmap state dict: no 'final_layer.weight' (keys start with {some})", path
        )
    k, width = int(sd["final_layer.weight"].shape[0]), int(sd["final_layer.weight"].shape[1])
    arch = f"hrnet_w{width}"
    if arch not in HRNET_WIDTHS:
        raise CheckpointError(f"HRNet width {width} is not supported; valid: {sorted(HRNET_WIDTHS)}", path)
    kwargs: dict[str, Any] = {}
    modules = []
    for stage in ("stage2", "stage3", "stage4"):
        idx = {int(m.group(1)) for key in sd if (m := re.match(rf"{stage}\.(\d+)\.", key))}
        modules.append(max(idx) + 1 if idx else 0)
    blocks = {int(m.group(1)) for key in sd if (m := re.match(r"stage2\.0\.branches\.0\.(\d+)\.", key))}
    num_blocks = max(blocks) + 1 if blocks else 0
    if modules != [1, 4, 3]:
        kwargs["num_modules"] = modules
    if num_blocks != 4:
        kwargs["num_blocks"] = num_blocks
    return arch, kwargs, k


def public_hrnet_meta(
    num_landmarks: int = 19,
    config: Mapping | None = None,
    landmark_names: list[str] | None = None,
    provenance: Mapping | None = None,
    arch: str = "hrnet_w32",
    arch_kwargs: Mapping | None = None,
) -> ModelMeta:
    """ModelMeta of the public ISBI HRNet (spec README: preprocessing and decoding used in its training).

    Input size / heatmap size come from ``config["INPUT"]["IMAGE_SIZE"/"HEATMAP_SIZE"]`` (as [W, H])
    when given, else 768x768 / 192x192. Landmark names: ISBI-19 for K=19, CL-Detection-38 for K=38,
    else ``landmark_names`` must be given.

    Raises:
        ValueError: K not 19/38 and no (or wrong-length) ``landmark_names``.
    """
    if landmark_names is None:
        if num_landmarks == len(ISBI19):
            landmark_names = ISBI19.names
        elif num_landmarks == len(CLDETECTION38):
            landmark_names = CLDETECTION38.names
        else:
            raise ValueError(f"{num_landmarks} output channels: give landmark_names for this checkpoint")
    if len(landmark_names) != num_landmarks:
        raise ValueError(f"{len(landmark_names)} landmark names for {num_landmarks} output channels")
    inp = (config or {}).get("INPUT", {}) if isinstance(config, Mapping) else {}
    w, h = (int(v) for v in inp.get("IMAGE_SIZE", (768, 768)))
    hw, hh = (int(v) for v in inp.get("HEATMAP_SIZE", (w // 4, h // 4)))
    sigma = float(inp.get("SIGMA", 2.0))
    return ModelMeta(
        arch=arch,
        landmark_names=list(landmark_names),
        input_size=(w, h),
        heatmap_size=(hw, hh),
        variant={
            "name": f"letterbox{w}",
            # cephalo.preprocess step spec: aspect-preserving bicubic resize, black integer pads
            "steps": [{"step": "letterbox", "size": [w, h], "interpolation": "cubic"}],
        },
        normalisation=dict(IMAGENET_NORMALISATION),
        codec={
            "name": "gaussian",
            "input_size": [w, h],
            "heatmap_size": [hw, hh],
            "sigma": sigma,
            "decoder": "soft_argmax",
            "convention": "hf_corner",
        },
        provenance=dict(provenance or {}),
        arch_kwargs=dict(arch_kwargs or {}),
    )


def _public_provenance(path: Path, raw: Mapping | None, sha256: str) -> dict:
    prov: dict[str, Any] = {
        "source": "public HF checkpoint cwlachap/hrnet-cephalometric-landmark-detection (best_model.pth)",
        "file": str(path),
        "sha256": sha256,
        "train_image_ids": PUBLIC_HRNET_SPLIT,
    }
    if raw is not None:
        for key in ("epoch", "best_val_loss", "best_val_mre"):
            if key in raw:
                v = raw[key]
                prov[key] = v.item() if hasattr(v, "item") else v
        if isinstance(raw.get("config"), Mapping):
            prov["config"] = jsonable(raw["config"])
    return prov


def read_public_layout(path: Path, raw: Mapping, landmark_names: Sequence[str] | None = None) -> Checkpoint:
    """A loaded non-cephalo checkpoint (``raw``) as a :class:`Checkpoint` of the public HRNet."""
    if "model_state_dict" in raw or "state_dict" in raw:
        key = "model_state_dict" if "model_state_dict" in raw else "state_dict"
        if not isinstance(raw[key], Mapping):
            raise CheckpointError(f"'{key}' is not a state dict", path)
        sd, kind, extra, config = (
            strip_prefixes(raw[key]),
            "public_training_dict",
            {k: v for k, v in raw.items() if k != key},
            raw.get("config"),
        )
    elif raw and all(isinstance(v, torch.Tensor) for v in raw.values()):
        sd, kind, extra, config = strip_prefixes(raw), "public_state_dict", {}, None
    else:
        raise CheckpointError(
            f"unknown checkpoint layout: top-level keys {sorted(map(str, raw))[:8]} "
            "(expected a cephalo checkpoint, a training dict with 'model_state_dict', or a state dict)",
            path,
        )
    arch, arch_kwargs, k = _infer_hrnet_kwargs(sd, path)
    if isinstance(config, Mapping):
        nj = config.get("MODEL", {}).get("NUM_JOINTS") if isinstance(config.get("MODEL"), Mapping) else None
        if nj is not None and int(nj) != k:
            raise CheckpointError(f"config MODEL.NUM_JOINTS={nj} but final_layer has {k} channels", path)
    try:
        meta = public_hrnet_meta(
            k,
            config if isinstance(config, Mapping) else None,
            landmark_names,
            _public_provenance(path, raw if kind == "public_training_dict" else None, file_sha256(path)),
            arch,
            arch_kwargs,
        )
    except ValueError as e:
        raise CheckpointError(str(e), path) from None
    return Checkpoint(path, kind, sd, meta, extra)
