"""Checkpoint I/O: cephalo checkpoints and the public HF ``best_model.pth``.

A cephalo checkpoint is ``torch.save({"format": "cephalo", "format_version": 1,
"model_state_dict": ..., "meta": ModelMeta.to_dict(), **extra})`` (``extra`` = trainer state:
optimizer, scheduler, epoch, ...), written atomically (temp file + ``os.replace``).

The public ISBI HRNet-W32 (``cwlachap/hrnet-cephalometric-landmark-detection``, format described in
``tests/data/hf_hrnet_w32/README.md``) is read either as its training dict (``model_state_dict``
+ ``config``) or as a plain state dict; ``module.`` / ``model.`` / ``_orig_mod.`` key prefixes are
stripped; K is read from ``final_layer.weight``; its :class:`ModelMeta` is
:func:`public_hrnet_meta` (ISBI-19 names, 768x768 letterbox, 192x192 heatmaps, ImageNet
normalisation, soft-argmax decoding in the ``hf_corner`` convention).

Loading uses ``torch.load(weights_only=True)`` (numpy scalars allowed); a file that needs full
unpickling is refused unless ``trusted=True``.
"""

from __future__ import annotations

import dataclasses
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from ..errors import CheckpointError
from ..io import atomic_path

__all__ = [
    "FORMAT_VERSION",
    "ModelMeta",
    "Checkpoint",
    "torch_load_checked",
    "save_checkpoint",
    "read_checkpoint",
    "load_checkpoint",
    "load_model",
    "strip_prefixes",
    "unwrap_model",
]

FORMAT_VERSION = 1
_RESERVED = ("format", "format_version", "model_state_dict", "meta")
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
    def from_dict(cls, d: Mapping[str, Any]) -> "ModelMeta":
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


# ----------------------------------------------------------------------------- helpers
def unwrap_model(model: nn.Module) -> nn.Module:
    """The bare model inside DistributedDataParallel / DataParallel / torch.compile wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod  # type: ignore[assignment]
        elif isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        else:
            return model


def strip_prefixes(state_dict: Mapping[str, Any], prefixes: tuple[str, ...] = _PREFIXES) -> dict[str, Any]:
    """Remove wrapper prefixes (``module.``, ``model.``, ``_orig_mod.``) shared by *all* keys, repeatedly."""
    sd = dict(state_dict)
    changed = True
    while changed and sd:
        changed = False
        for p in prefixes:
            if all(k.startswith(p) for k in sd):
                sd = {k[len(p):]: v for k, v in sd.items()}
                changed = True
    return sd


def _numpy_safe_globals() -> list:
    import numpy as np

    out: list = [np.dtype]
    for mod in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            m = __import__(mod, fromlist=["scalar", "_reconstruct"])
            out += [m.scalar, m._reconstruct]
            break
        except (ImportError, AttributeError):
            continue
    out.append(np.ndarray)
    out += [type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32", "bool")]
    return out


def _describe_bad_checkpoint(path: Path) -> str:
    """What a checkpoint that failed to load holds, in words (never torch's own advice)."""
    from ..imageio import text_excerpt

    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError as e:
        return f"cannot be read ({e.strerror})"
    if size == 0:
        return "an empty file (0 bytes), not a checkpoint"
    if head.startswith(b"PK\x03\x04"):
        return f"not a valid checkpoint: its zip archive ({size} bytes) is truncated or corrupt"
    if head[:1] == b"\x80" and 2 <= head[1:2][0] <= 5:
        return f"not a valid checkpoint: a truncated or corrupt pickle ({size} bytes)"
    text = text_excerpt(head)
    if text is not None:
        return f"not a checkpoint: a text file (starts with {text!r})"
    return f"not a PyTorch checkpoint (unknown format, first bytes {head[:8].hex(' ')})"


def torch_load_checked(path: Path, map_location: Any, trusted: bool) -> Any:
    """``torch.load(path)`` (``weights_only=True`` plus numpy scalars/arrays unless ``trusted``) with
    one-line :class:`CheckpointError` messages that say what the file holds (empty, text, a
    truncated zip/pickle, unknown format, or a pickled object safe loading refuses) and never
    suggest ``weights_only=False``.

    Raises:
        CheckpointError: missing or unloadable file, naming it.
    """
    if not path.is_file():
        raise CheckpointError("checkpoint file not found", path)
    try:
        if trusted:
            return torch.load(path, map_location=map_location, weights_only=False)
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        glob = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
        if glob:
            raise CheckpointError(
                f"holds a Python object ({glob.group(1)}) that safe loading refuses; "
                "if you trust this file, load it with trusted=True", path
            ) from None
        raise CheckpointError(_describe_bad_checkpoint(path), path) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, AttributeError, TypeError):
        raise CheckpointError(_describe_bad_checkpoint(path), path) from None




def _jsonable(o: Any) -> Any:
    if isinstance(o, Mapping):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if hasattr(o, "item") and callable(o.item):
        try:
            return o.item()
        except (ValueError, RuntimeError):
            return str(o)
    if o is None or isinstance(o, (bool, int, float, str)):
        return o
    return str(o)


# ----------------------------------------------------------------------------- public API
def read_checkpoint(
    path: str | Path,
    map_location: Any = "cpu",
    *,
    trusted: bool = False,
    landmark_names: list[str] | None = None,
) -> Checkpoint:
    """Read a cephalo checkpoint or the public ``best_model.pth`` without building the model.

    Args:
        path: the ``.pt`` / ``.pth`` file.
        map_location: as for ``torch.load``.
        trusted: allow full unpickling (only for files you trust).
        landmark_names: names of the output channels of a public-format file with K not 19/38.

    Raises:
        CheckpointError: missing, unreadable or truncated file; unknown layout; unsupported
            ``format_version``; malformed meta.
    """
    path = Path(path)
    raw = torch_load_checked(path, map_location, trusted)
    if not isinstance(raw, Mapping):
        raise CheckpointError(f"unknown checkpoint layout: top level is {type(raw).__name__}, not a dict", path)
    if raw.get("format") == "cephalo":
        version = raw.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise CheckpointError(
                f"cephalo checkpoint format_version {version!r} is not supported (this cephalo reads <= {FORMAT_VERSION})",
                path,
            )
        try:
            meta = ModelMeta.from_dict(raw["meta"])
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"malformed model meta ({e})", path) from None
        if not isinstance(raw.get("model_state_dict"), Mapping):
            raise CheckpointError("cephalo checkpoint without 'model_state_dict'", path)
        sd = strip_prefixes(raw["model_state_dict"])
        extra = {k: v for k, v in raw.items() if k not in _RESERVED}
        return Checkpoint(path, "cephalo", sd, meta, extra)

    from ..public_hrnet.checkpoint import read_public_layout

    return read_public_layout(path, raw, landmark_names)


def _check_expect(meta: ModelMeta, expect: Mapping[str, Any] | None, path: Path) -> None:
    if not expect:
        return
    fields = {f.name for f in dataclasses.fields(ModelMeta)}
    unknown = set(expect) - fields
    if unknown:
        raise ValueError(f"expect: unknown ModelMeta fields {sorted(unknown)}; valid: {sorted(fields)}")
    problems = []
    for key, want in expect.items():
        if want is None:
            continue
        have = getattr(meta, key)
        if key in ("input_size", "heatmap_size"):
            want = tuple(int(v) for v in want)
        if key == "landmark_names":
            want = [str(v) for v in want]
            if list(have) != want:
                missing = [n for n in want if n not in have]
                extra = [n for n in have if n not in want]
                if not missing and not extra:
                    detail = "same names in a different order"
                else:
                    detail = f"{len(have)} in checkpoint vs {len(want)} expected"
                    if missing:
                        detail += f"; not in checkpoint: {missing[:6]}"
                    if extra:
                        detail += f"; only in checkpoint: {extra[:6]}"
                problems.append(f"landmark_names differ ({detail})")
            continue
        if have != want:
            problems.append(f"{key}: checkpoint {have!r} != expected {want!r}")
    if problems:
        raise CheckpointError("checkpoint does not match the requested config: " + "; ".join(problems), path)


def _build_and_load(ckpt: Checkpoint) -> nn.Module:
    from .registry import create_model

    kw = dict(ckpt.meta.arch_kwargs)
    if ckpt.meta.arch.startswith("timm:"):
        kw["pretrained"] = False  # weights come from the checkpoint
    try:
        model = create_model(ckpt.meta.arch, ckpt.meta.num_landmarks, **kw)
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"cannot rebuild model {ckpt.meta.arch!r} ({e})", ckpt.path) from None
    own = model.state_dict()
    missing = [k for k in own if k not in ckpt.state_dict]
    unexpected = [k for k in ckpt.state_dict if k not in own]
    shape = [
        f"{k} {tuple(ckpt.state_dict[k].shape)} vs model {tuple(v.shape)}"
        for k, v in own.items()
        if k in ckpt.state_dict and tuple(ckpt.state_dict[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shape:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})")
        if shape:
            parts.append(f"{len(shape)} shape mismatches (e.g. {shape[:3]})")
        raise CheckpointError(f"state dict does not fit {ckpt.meta.arch}: " + "; ".join(parts), ckpt.path)
    model.load_state_dict(ckpt.state_dict, strict=True)
    return model


def load_checkpoint(
    path: str | Path,
    map_location: Any = "cpu",
    *,
    expect: Mapping[str, Any] | None = None,
    trusted: bool = False,
    landmark_names: list[str] | None = None,
) -> tuple[nn.Module, ModelMeta, dict]:
    """Build the model of a checkpoint and load its weights strictly.

    Args:
        expect: ModelMeta fields the caller requires, e.g. ``{"input_size": (768, 768),
            "landmark_names": [...], "arch": "hrnet_w32"}``; ``None`` values are ignored.

    Returns:
        (model in train mode, meta, extra) where ``extra`` holds the other top-level entries
        (optimizer/scheduler state, epoch, ... for resuming).

    Raises:
        CheckpointError: unreadable/truncated file, unknown layout, a state dict that does not fit
            the architecture (missing/unexpected keys, shapes), or a mismatch with ``expect``
            (the message lists every differing field).
    """
    ckpt = read_checkpoint(path, map_location, trusted=trusted, landmark_names=landmark_names)
    _check_expect(ckpt.meta, expect, ckpt.path)
    model = _build_and_load(ckpt)
    if map_location is not None and not callable(map_location) and not isinstance(map_location, dict):
        model = model.to(map_location)
    return model, ckpt.meta, ckpt.extra


def load_model(
    path: str | Path,
    map_location: Any = "cpu",
    *,
    expect: Mapping[str, Any] | None = None,
    trusted: bool = False,
) -> tuple[nn.Module, ModelMeta]:
    """DESIGN.md loading contract: (model in eval mode, ModelMeta) from a cephalo or public checkpoint.

    Raises:
        CheckpointError: see :func:`load_checkpoint`.
    """
    model, meta, _ = load_checkpoint(path, map_location, expect=expect, trusted=trusted)
    return model.eval(), meta


def save_checkpoint(path: str | Path, model: nn.Module, meta: ModelMeta, extra: Mapping[str, Any] | None = None) -> Path:
    """Write a cephalo checkpoint atomically (temporary file beside ``path``, then ``os.replace``).

    ``meta.arch_kwargs`` is completed from ``model.config`` (HRNet/timm keywords) when empty.

    Raises:
        ValueError: ``meta`` does not fit the model (channel count), or ``extra`` uses a reserved key.
    """
    bare = unwrap_model(model)
    k = getattr(bare, "num_landmarks", None)
    if k is not None and k != meta.num_landmarks:
        raise ValueError(f"meta has {meta.num_landmarks} landmark names but the model has {k} output channels")
    timm_name = getattr(bare, "timm_name", None)
    if timm_name is not None and meta.arch != f"timm:{timm_name}":
        raise ValueError(f"meta.arch {meta.arch!r} does not describe this model (timm:{timm_name})")
    if timm_name is None and type(bare).__name__ == "HRNet" and not meta.arch.startswith("hrnet_"):
        raise ValueError(f"meta.arch {meta.arch!r} does not describe this model (an HRNet)")
    extra = dict(extra or {})
    clash = set(extra) & set(_RESERVED)
    if clash:
        raise ValueError(f"extra uses reserved checkpoint keys {sorted(clash)}")
    if not meta.arch_kwargs and isinstance(getattr(bare, "config", None), dict):
        cfg = {kk: v for kk, v in bare.config.items() if kk != "timm_name"}
        meta = dataclasses.replace(meta, arch_kwargs=cfg)
    obj = {
        "format": "cephalo",
        "format_version": FORMAT_VERSION,
        "model_state_dict": {kk: v.detach().cpu() for kk, v in bare.state_dict().items()},
        "meta": meta.to_dict(),
        **extra,
    }
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)  # through a Python file: a full disk is an OSError, not a RuntimeError
    return path
