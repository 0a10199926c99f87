"""Initialise a model from a checkpoint with a different landmark set: head transfer by name.

Typical use: the public ISBI HRNet-W32 (19 landmarks) -> an Aariz model (29 landmarks). Every
non-head tensor is copied by key when its shape matches ("backbone"). In the landmark head
(``model.landmark_head_keys``: tensors whose dim 0 is the landmark channel, e.g.
``final_layer.weight`` (K, C, 1, 1) and ``final_layer.bias`` (K,)), destination channel ``j`` gets
source channel ``i`` for every pair ``(i, j)`` of :func:`cephalo.landmarks.map_by_name`
(canonical names, never positions). Channels without a source landmark are initialised by
``new_channel_init``:

- ``"mean"`` (default): the mean over all source channels of the head weight and bias — the
  new channel starts as an "average landmark detector" on the pretrained features, which is a
  better start than noise for fine-tuning;
- ``"default"``: left as the destination model's own initialisation.

The returned load report (JSON-serialisable) lists every tensor loaded / re-initialised /
skipped with a reason; callers save it (``cephalo.io.write_json``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError
from ..landmarks import Catalogue, Landmark, map_by_name
from .checkpoint import read_checkpoint, strip_prefixes, unwrap_model

__all__ = ["transfer_head", "init_from_checkpoint", "NEW_CHANNEL_INITS"]

NEW_CHANNEL_INITS = ("mean", "default")


def _catalogue(names: Sequence[str] | Catalogue, key: str) -> Catalogue:
    if isinstance(names, Catalogue):
        return names
    return Catalogue(key, tuple(Landmark(str(n), str(n), str(n)) for n in names))


def transfer_head(
    model: nn.Module,
    src_state: Mapping[str, torch.Tensor],
    src_names: Sequence[str] | Catalogue,
    dst_names: Sequence[str] | Catalogue,
    *,
    min_backbone_fraction: float = 0.95,
    new_channel_init: str = "mean",
    source: str | None = None,
) -> dict[str, Any]:
    """Load ``src_state`` into ``model`` in place, mapping the landmark head by canonical name.

    Args:
        model: destination model (``landmark_head_keys`` attribute; K_dst = len(dst_names)).
        src_state: source state dict (``module.``/``model.`` prefixes are stripped).
        src_names / dst_names: canonical landmark names of the source / destination channels
            (or catalogues), in channel order.
        min_backbone_fraction: fail if fewer than this fraction of the destination's non-head
            tensors could be loaded from the source (e.g. a checkpoint with the wrong prefix).
        new_channel_init: ``"mean"`` | ``"default"`` (module docstring).
        source: description of the source for the report (file path).

    Returns:
        report dict: ``source``, ``backbone_fraction``, ``counts``, ``loaded`` (keys),
        ``reinitialised`` ({key, reason}), ``skipped`` ({key, reason}: source tensors not used),
        ``head`` ({copied: [{name, src_index, dst_index}], new: [{name, dst_index, init}],
        dropped: [source names without a destination channel]}).

    Raises:
        CheckpointError: backbone fraction below ``min_backbone_fraction``.
        ValueError: name lists that do not match the model/source channel counts, unknown
            ``new_channel_init``.
    """
    if new_channel_init not in NEW_CHANNEL_INITS:
        raise ValueError(f"unknown new_channel_init {new_channel_init!r}; valid: {list(NEW_CHANNEL_INITS)}")
    bare = unwrap_model(model)
    head_keys = tuple(getattr(bare, "landmark_head_keys", ()))
    src_cat, dst_cat = _catalogue(src_names, "source"), _catalogue(dst_names, "destination")
    src = strip_prefixes(src_state)
    dst = bare.state_dict()
    k_dst = getattr(bare, "num_landmarks", None)
    if k_dst is not None and k_dst != len(dst_cat):
        raise ValueError(f"{len(dst_cat)} destination names for a model with {k_dst} landmark channels")
    for hk in head_keys:
        if hk in src and src[hk].shape[0] != len(src_cat):
            raise ValueError(f"{len(src_cat)} source names but source head {hk} has {src[hk].shape[0]} channels")

    loaded: list[str] = []
    reinit: list[dict] = []
    new_state: dict[str, torch.Tensor] = {}
    backbone_keys = [k for k in dst if k not in head_keys]
    for k in backbone_keys:
        if k not in src:
            reinit.append({"key": k, "reason": "not in source"})
        elif tuple(src[k].shape) != tuple(dst[k].shape):
            reinit.append({"key": k, "reason": f"shape {tuple(src[k].shape)} in source vs {tuple(dst[k].shape)}"})
        else:
            new_state[k] = src[k].to(dtype=dst[k].dtype)
            loaded.append(k)
    n_backbone = len(backbone_keys)
    fraction = len(loaded) / n_backbone if n_backbone else 1.0

    pairs = map_by_name(src_cat, dst_cat)
    mapped_dst = {j for _, j in pairs}
    mapped_src = {i for i, _ in pairs}
    head = {
        "copied": [{"name": dst_cat[j].name, "src_index": i, "dst_index": j} for i, j in pairs],
        "new": [
            {"name": lm.name, "dst_index": j, "init": new_channel_init}
            for j, lm in enumerate(dst_cat)
            if j not in mapped_dst
        ],
        "dropped": [lm.name for i, lm in enumerate(src_cat) if i not in mapped_src],
    }
    for hk in head_keys:
        d = dst[hk]
        if hk not in src:
            reinit.append({"key": hk, "reason": "head tensor not in source"})
            head["copied"], head["new"] = (
                [],
                [{"name": lm.name, "dst_index": j, "init": "default"} for j, lm in enumerate(dst_cat)],
            )
            continue
        s = src[hk].to(dtype=d.dtype)
        if tuple(s.shape[1:]) != tuple(d.shape[1:]):
            reinit.append({"key": hk, "reason": f"head shape {tuple(s.shape)} in source vs {tuple(d.shape)}"})
            head["copied"], head["new"] = (
                [],
                [{"name": lm.name, "dst_index": j, "init": "default"} for j, lm in enumerate(dst_cat)],
            )
            continue
        t = d.clone()
        for i, j in pairs:
            t[j] = s[i]
        if new_channel_init == "mean" and len(mapped_dst) < len(dst_cat):
            mean = s.mean(dim=0)
            for j in range(len(dst_cat)):
                if j not in mapped_dst:
                    t[j] = mean
        new_state[hk] = t
        if len(mapped_dst) == len(dst_cat) and len(pairs) == len(src_cat):
            loaded.append(hk)
        else:
            reinit.append(
                {
                    "key": hk,
                    "reason": f"partial by name: {len(pairs)} channels copied, "
                    f"{len(dst_cat) - len(mapped_dst)} new ({new_channel_init})",
                }
            )

    used = set(new_state)
    skipped = [
        {"key": k, "reason": "no such tensor in destination" if k not in dst else "shape mismatch"}
        for k in src
        if k not in used
    ]
    report = {
        "source": source,
        "min_backbone_fraction": float(min_backbone_fraction),
        "backbone_fraction": fraction,
        "counts": {
            "destination_tensors": len(dst),
            "backbone_tensors": n_backbone,
            "loaded": len(loaded),
            "reinitialised": len(reinit),
            "skipped_source_tensors": len(skipped),
            "head_channels_copied": len(head["copied"]),
            "head_channels_new": len(head["new"]),
        },
        "loaded": loaded,
        "reinitialised": reinit,
        "skipped": skipped,
        "head": head,
    }
    if fraction < min_backbone_fraction:
        example = next((r for r in reinit if r["key"] not in head_keys), None)
        src_example = next(iter(src), None)
        raise CheckpointError(
            f"only {len(loaded)}/{n_backbone} backbone tensors ({fraction:.1%}) could be loaded "
            f"(need {min_backbone_fraction:.0%}); e.g. {example['key'] if example else '?'}: "
            f"{example['reason'] if example else ''}; source keys look like {src_example!r} "
            "(wrong prefix or architecture?)",
            source,
        )
    missing_ok = bare.load_state_dict(new_state, strict=False)
    assert not missing_ok.unexpected_keys, missing_ok.unexpected_keys
    return report


def init_from_checkpoint(
    model: nn.Module,
    ckpt_state: Mapping[str, torch.Tensor] | str | Path,
    src_names: Sequence[str] | Catalogue | None,
    dst_names: Sequence[str] | Catalogue,
    min_backbone_fraction: float = 0.95,
    *,
    new_channel_init: str = "mean",
    map_location: Any = "cpu",
) -> dict[str, Any]:
    """:func:`transfer_head` from a state dict or a checkpoint file (cephalo or public HRNet).

    With a file, ``src_names=None`` takes the names from the checkpoint's ModelMeta.

    Raises:
        CheckpointError: unreadable checkpoint; too few backbone tensors loaded.
        ValueError: ``src_names`` missing for a bare state dict; channel-count mismatches.
    """
    source = None
    if isinstance(ckpt_state, (str, Path)):
        ckpt = read_checkpoint(ckpt_state, map_location)
        source = str(ckpt.path)
        state = ckpt.state_dict
        if src_names is None:
            src_names = ckpt.meta.landmark_names
    else:
        state = ckpt_state
        if src_names is None:
            raise ValueError("src_names is required with a bare state dict")
    return transfer_head(
        model,
        state,
        src_names,
        dst_names,
        min_backbone_fraction=min_backbone_fraction,
        new_channel_init=new_channel_init,
        source=source,
    )
