"""What a checkpoint holds, apart from how it is read: :class:`ModelMeta` (the model loading
contract), :class:`Checkpoint` (a file read into memory) and the helpers every checkpoint reader uses.

Readers of checkpoint formats build these: cephalo's own format in :mod:`cephalo.models.checkpoint`,
foreign formats (the public HRNet's, :mod:`cephalo.models.public_layout`) as readers that the
loader is given (:data:`CheckpointReader`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

__all__ = ["IMAGENET_NORMALISATION", "ModelMeta", "Checkpoint", "CheckpointReader", "strip_prefixes", "jsonable"]

_PREFIXES = ("module.", "model.", "_orig_mod.")

#: ``cephalo.preprocess.normalise`` spec: grey -> RGB replicate, /255 (uint8) or /65535 (uint16), ImageNet mean/std
IMAGENET_NORMALISATION = {
    "name": "imagenet",
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
}


@dataclass
class ModelMeta:
    """What a model needs around it to be used correctly (DESIGN.md "Model loading contract").

    Attributes:
        arch: registry name for ``create_model`` (``"hrnet_w32"``, ``"timm:hrnet_w18_small"``).
        landmark_names: canonical names (``cephalo.landmarks``), one per output channel, in order.
        input_size: (W, H) input pixels of the network.
        heatmap_size: (w, h) output heatmap pixels (= input_size / stride).
        variant: preprocessing spec (dict) or variant name the model expects.
        normalisation: tensor normalisation spec for ``cephalo.preprocess.normalise``.
        codec: keywords for ``cephalo.codecs.create_codec(**codec)``.
        provenance: params, git commit, data index hash, ``train_image_hashes``, source file, ...
        arch_kwargs: extra ``create_model`` keywords that rebuild the same network
            (e.g. ``num_modules``); empty for the registry defaults.
    """

    arch: str
    landmark_names: list[str]
    input_size: tuple[int, int]
    heatmap_size: tuple[int, int]
    variant: dict | str | None = None
    normalisation: dict = field(default_factory=dict)
    codec: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    arch_kwargs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.landmark_names = [str(n) for n in self.landmark_names]
        self.input_size = tuple(int(v) for v in self.input_size)  # type: ignore[assignment]
        self.heatmap_size = tuple(int(v) for v in self.heatmap_size)  # type: ignore[assignment]
        if len(self.input_size) != 2 or len(self.heatmap_size) != 2:
            raise ValueError(f"input_size/heatmap_size must be (W, H): {self.input_size}, {self.heatmap_size}")

    @property
    def num_landmarks(self) -> int:
        return len(self.landmark_names)

    def to_dict(self) -> dict:
        """JSON-serialisable dict (tuples as lists)."""
        d = dataclasses.asdict(self)
        d["input_size"] = list(self.input_size)
        d["heatmap_size"] = list(self.heatmap_size)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelMeta:
        """Inverse of :meth:`to_dict`. Raises ValueError on missing/unknown fields."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        missing = {"arch", "landmark_names", "input_size", "heatmap_size"} - set(d)
        if unknown or missing:
            raise ValueError(f"model meta: missing fields {sorted(missing)}, unknown fields {sorted(unknown)}")
        return cls(**dict(d))


@dataclass
class Checkpoint:
    """A checkpoint file read into memory, before a model is built.

    Attributes:
        path: the file.
        kind: ``"cephalo"``, ``"public_training_dict"`` or ``"public_state_dict"``.
        state_dict: model tensors, prefixes stripped.
        meta: :class:`ModelMeta`.
        extra: every other top-level entry (optimizer/scheduler state, epoch, config, ...).
    """

    path: Path
    kind: str
    state_dict: dict[str, torch.Tensor]
    meta: ModelMeta
    extra: dict


#: A reader of a foreign checkpoint layout: ``(path, loaded top-level mapping, landmark names or
#: None) -> Checkpoint``; raises :class:`cephalo.errors.CheckpointError` when the layout is not its own.
CheckpointReader = Callable[[Path, Mapping, "Sequence[str] | None"], "Checkpoint"]


def strip_prefixes(state_dict: Mapping[str, Any], prefixes: tuple[str, ...] = _PREFIXES) -> dict[str, Any]:
    """Remove wrapper prefixes (``module.``, ``model.``, ``_orig_mod.``) shared by *all* keys, repeatedly."""
    sd = dict(state_dict)
    changed = True
    while changed and sd:
        changed = False
        for p in prefixes:
            if all(k.startswith(p) for k in sd):
                sd = {k[len(p) :]: v for k, v in sd.items()}
                changed = True
    return sd


def jsonable(o: Any) -> Any:
    if isinstance(o, Mapping):
        return {str(k): jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [jsonable(v) for v in o]
    if hasattr(o, "item") and callable(o.item):
        try:
            return o.item()
        except (ValueError, RuntimeError):
            return str(o)
    if o is None or isinstance(o, (bool, int, float, str)):
        return o
    return str(o)
