"""Checkpoint I/O: cephalo checkpoints, and foreign layouts through readers given to the loader.

A cephalo checkpoint is ``torch.save({"format": "cephalo", "format_version": 1,
"model_state_dict": ..., "meta": ModelMeta.to_dict(), **extra})`` (``extra`` = trainer state:
optimizer, scheduler, epoch, ...), written atomically (temp file + ``os.replace``).

A file in any other layout is handed to the loader's ``readers`` (:data:`~cephalo.models.meta.CheckpointReader`,
the way timm hands a ``checkpoint_filter_fn`` to its loader); the default, :data:`FOREIGN_READERS`,
reads the public ISBI HRNet-W32 (``cwlachap/hrnet-cephalometric-landmark-detection``, format described
in ``tests/data/hf_hrnet_w32/README.md``): :func:`cephalo.models.public_layout.read_public_layout`
(its training dict with ``model_state_dict`` + ``config``, or a plain state dict; ISBI-19 names,
768x768 letterbox, 192x192 heatmaps, ImageNet normalisation, soft-argmax decoding in the
``hf_corner`` convention).

Loading uses ``torch.load(weights_only=True)`` (numpy scalars allowed); a file that needs full
unpickling is refused unless ``trusted=True``.
"""

from __future__ import annotations

import dataclasses
import pickle
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError
from ..imageio import text_excerpt
from ..io import atomic_path
from .meta import IMAGENET_NORMALISATION, Checkpoint, CheckpointReader, ModelMeta, jsonable, strip_prefixes
from .public_layout import read_public_layout
from .registry import create_model

__all__ = [
    "FORMAT_VERSION",
    "FOREIGN_READERS",
    "IMAGENET_NORMALISATION",
    "ModelMeta",
    "Checkpoint",
    "torch_load_checked",
    "save_checkpoint",
    "write_failure",
    "read_checkpoint",
    "load_checkpoint",
    "load_model",
    "strip_prefixes",
    "unwrap_model",
    "build_and_load",
    "jsonable",
]

FORMAT_VERSION = 1
_RESERVED = ("format", "format_version", "model_state_dict", "meta")

#: the foreign layouts :func:`read_checkpoint` reads by default: the public ISBI HRNet's
FOREIGN_READERS: tuple[CheckpointReader, ...] = (read_public_layout,)


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


def _numpy_safe_globals() -> list:
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
                "if you trust this file, load it with trusted=True",
                path,
            ) from None
        raise CheckpointError(_describe_bad_checkpoint(path), path) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, AttributeError, TypeError):
        raise CheckpointError(_describe_bad_checkpoint(path), path) from None


# ----------------------------------------------------------------------------- public API
def read_checkpoint(
    path: str | Path,
    map_location: Any = "cpu",
    *,
    trusted: bool = False,
    landmark_names: list[str] | None = None,
    readers: Sequence[CheckpointReader] = FOREIGN_READERS,
) -> Checkpoint:
    """Read a cephalo checkpoint, or a foreign one through ``readers``, without building the model.

    Args:
        path: the ``.pt`` / ``.pth`` file.
        map_location: as for ``torch.load``.
        trusted: allow full unpickling (only for files you trust).
        landmark_names: names of the output channels of a public-format file with K not 19/38.
        readers: readers of foreign layouts, tried in order on a file that is not a cephalo
            checkpoint (the first that does not raise wins; the last one's error is raised).

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
                f"cephalo checkpoint format_version {version!r} is not supported "
                f"(this cephalo reads <= {FORMAT_VERSION})",
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

    error = CheckpointError(
        "unknown checkpoint layout: not a cephalo checkpoint, and no reader of foreign layouts was given", path
    )
    for reader in readers:
        try:
            return reader(path, raw, landmark_names)
        except CheckpointError as e:
            error = e
    raise error


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


def build_and_load(ckpt: Checkpoint) -> nn.Module:
    """The model of ``ckpt`` with its weights loaded strictly (CheckpointError when they do not fit)."""
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
    model = build_and_load(ckpt)
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


def save_checkpoint(
    path: str | Path, model: nn.Module, meta: ModelMeta, extra: Mapping[str, Any] | None = None
) -> Path:
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
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            torch.save(obj, f)
    except (OSError, RuntimeError) as e:
        err = write_failure(e, path)
        if err is e:
            raise
        raise err from None
    return path


def write_failure(e: BaseException, path: str | Path) -> BaseException:
    """What to raise when writing checkpoint ``path`` failed with ``e``.

    A full disk (or a read-only one) surfaces from ``torch.save`` as a ``RuntimeError`` ("[enforce
    fail at inline_container.cc] ... unexpected pos") chained onto the ``OSError`` of the Python
    file; both become one :class:`CheckpointError` line naming the path and the system's reason
    (``No space left on device [ENOSPC]``). Any other exception is returned unchanged.
    """
    import errno

    seen, cur = set(), e
    while cur is not None and id(cur) not in seen:  # the OSError behind torch's own error
        seen.add(id(cur))
        if isinstance(cur, OSError):
            code = errno.errorcode.get(cur.errno or 0)
            why = (cur.strerror or str(cur) or type(cur).__name__) + (f" [{code}]" if code else "")
            return CheckpointError(f"cannot write the checkpoint: {why}", path)
        cur = cur.__cause__ or cur.__context__
    if isinstance(e, RuntimeError) and ("inline_container" in str(e) or "file write failed" in str(e)):
        return CheckpointError(
            f"cannot write the checkpoint (torch: {str(e).splitlines()[0][:200]}); is the disk full?", path
        )
    return e
