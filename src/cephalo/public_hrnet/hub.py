"""Get the public ISBI-2015 HRNet-W32 checkpoint (``best_model.pth``): Hugging Face or a local file.

The checkpoint is published on the Hugging Face Hub as
``cwlachap/hrnet-cephalometric-landmark-detection`` / ``best_model.pth`` (a ``torch.save``
training dict; see ``docs/DESIGN.md`` "Model loading contract"). This module only
*finds* the file -- it never unpickles it (``cephalo.models.load_model`` does that):

* ``kind="huggingface"``: ``huggingface_hub.hf_hub_download(repo_id, filename,
  revision=..., cache_dir=...)``; the Hub's own cache layout
  (``<cache>/models--<owner>--<name>/{blobs,snapshots/<commit>,refs}``) makes a second call
  free and lets offline mode (``HF_HUB_OFFLINE=1`` or ``offline=True``) resolve from the
  cache. Pin ``revision`` to a 40-hex commit for a reproducible result; a branch name
  (default ``main``) warns.
* ``kind="local"``: a ``best_model.pth`` already on disk.

Either way the file is sniffed (a torch zip container ``PK..`` or a legacy pickle
``\\x80``; an HTML page or an empty file is refused) and, when ``sha256`` is given,
verified.
"""

from __future__ import annotations

import os
import re
import shutil
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, ConfigError, DownloadError
from ..io import atomic_path, file_sha256

__all__ = [
    "HF_REPO_ID",
    "HF_FILENAME",
    "ModelSource",
    "ResolvedCheckpoint",
    "resolve_checkpoint",
    "fetch_model",
    "UnpinnedRevisionWarning",
]

#: Hugging Face repository of the public ISBI-2015 HRNet-W32 (19 landmarks, 768x768 input).
HF_REPO_ID = "cwlachap/hrnet-cephalometric-landmark-detection"
#: The checkpoint file inside it.
HF_FILENAME = "best_model.pth"

_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_KINDS = ("huggingface", "local")


class UnpinnedRevisionWarning(UserWarning):
    """A Hugging Face revision that is a branch/tag, not a commit: the file may change."""


@dataclass(frozen=True)
class ModelSource:
    """Where the checkpoint comes from (the ``model.source`` params section).

    Attributes:
        kind: ``"huggingface"`` or ``"local"``.
        repo_id: Hub repository (``kind="huggingface"``).
        filename: file inside the repository.
        revision: branch, tag or 40-hex commit; ``None`` = ``"main"`` (warns: not pinned).
        cache_dir: Hub cache folder; ``None`` = the Hub default (``$HF_HUB_CACHE`` /
            ``$HF_HOME/hub``).
        path: the checkpoint file (``kind="local"``).
        sha256: optional pin (hex, with or without ``"sha256:"``), verified after resolving.
        offline: ``True`` = cache only; ``None`` = follow ``HF_HUB_OFFLINE``.
        link: :func:`fetch_model` hard-links instead of copying where possible.
    """

    kind: str = "huggingface"
    repo_id: str = HF_REPO_ID
    filename: str = HF_FILENAME
    revision: str | None = None
    cache_dir: str | None = None
    path: str | None = None
    sha256: str | None = None
    offline: bool | None = None
    link: bool = False

    @classmethod
    def from_params(cls, section: Mapping[str, Any] | None) -> ModelSource:
        """Build from the ``model.source`` mapping (``None``/``{}`` = all defaults).

        Raises:
            ConfigError: not a mapping, an unknown key (valid ones listed), an unknown
                ``kind``, ``kind="local"`` without ``path``, or a malformed ``sha256``.
        """
        if section is None:
            section = {}
        if not isinstance(section, Mapping):
            raise ConfigError("params: model.source must be a mapping")
        valid = {f.name for f in fields(cls)}
        unknown = set(section) - valid
        if unknown:
            raise ConfigError(f"params: model.source: unknown key(s) {sorted(unknown)}; valid: {sorted(valid)}")
        src = cls(**{k: v for k, v in section.items() if v is not None})  # null -> default
        src.validate()
        return src

    def validate(self) -> None:
        """Raise :class:`ConfigError` for an inconsistent source (see :meth:`from_params`)."""
        if self.kind not in _KINDS:
            raise ConfigError(f"params: model.source.kind {self.kind!r} unknown; valid: {', '.join(_KINDS)}")
        if self.kind == "local" and not self.path:
            raise ConfigError("params: model.source.kind is 'local' but model.source.path is not set")
        if self.kind == "huggingface" and (not self.repo_id or not self.filename):
            raise ConfigError("params: model.source.repo_id and model.source.filename must be set")
        if self.sha256 is not None:
            _norm_sha(self.sha256)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ResolvedCheckpoint:
    """A checkpoint file found on disk, with where it came from.

    Attributes:
        path: the local file (inside the Hub cache for ``huggingface``).
        sha256: hex digest of the file.
        size: bytes.
        kind, repo_id, filename, revision: the source asked for.
        commit: the Hub commit the cached file belongs to (``None`` for a local file).
    """

    path: Path
    sha256: str
    size: int
    kind: str
    repo_id: str | None
    filename: str
    revision: str | None
    commit: str | None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


def _norm_sha(value: str) -> str:
    v = str(value).strip().lower()
    if v.startswith("sha256:"):
        v = v[len("sha256:") :]
    if not re.fullmatch(r"[0-9a-f]{64}", v):
        raise ConfigError(f"params: model.source.sha256 must be 64 hex digits (optionally 'sha256:'), got {value!r}")
    return v


def _env_offline() -> bool:
    val = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    if val.strip().lower() in ("1", "true", "yes", "on"):
        return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except Exception:  # pragma: no cover - very old hub
        return False


def _check_file(path: Path, where: str) -> None:
    """Refuse what cannot be a torch checkpoint (empty, HTML, text)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint: {e.strerror or e}", path) from None
    if not head:
        raise CheckpointError(f"empty file, not a checkpoint ({where})", path)
    if head[:2] == b"PK" or head[:1] == b"\x80":
        return  # torch zip container / legacy pickle
    text = head.lstrip().lower()
    what = (
        "an HTML page"
        if text.startswith((b"<!doctype", b"<html", b"<"))
        else f"not a torch checkpoint (starts {head[:16]!r})"
    )
    if text.startswith(b"version https://git-lfs"):
        what = "a Git LFS pointer, not the checkpoint (fetch the LFS object)"
    raise CheckpointError(f"{what} ({where})", path)


def _commit_from_path(p: Path) -> str | None:
    parts = p.parts
    for i, part in enumerate(parts[:-1]):
        if part == "snapshots" and i + 1 < len(parts) and _COMMIT_RE.match(parts[i + 1]):
            return parts[i + 1]
    return None


def _hf_download(src: ModelSource, offline: bool) -> Path:
    try:
        from huggingface_hub import errors as hf_errors
        from huggingface_hub import hf_hub_download
    except ImportError:  # pragma: no cover - a declared dependency
        raise ConfigError("the package 'huggingface_hub' is needed for model.source.kind=huggingface") from None
    revision = src.revision or "main"
    where = f"{src.repo_id}/{src.filename}@{revision}"
    cache = src.cache_dir or "the Hugging Face cache ($HF_HUB_CACHE)"
    try:
        return Path(
            hf_hub_download(
                repo_id=src.repo_id,
                filename=src.filename,
                revision=revision,
                cache_dir=src.cache_dir,
                local_files_only=offline,
            )
        )
    except hf_errors.LocalEntryNotFoundError:
        why = (
            "offline mode is on (HF_HUB_OFFLINE=1 or model.source.offline)"
            if offline
            else "the Hub could not be reached"
        )
        raise DownloadError(
            f"{where}: not found in {cache} and {why}; run `cephalo fetch-model` once with network "
            "access (same cache_dir/revision), or set model.source.kind: local and model.source.path "
            "to a downloaded best_model.pth"
        ) from None
    except hf_errors.RepositoryNotFoundError:
        raise DownloadError(f"{where}: repository not found on the Hub (or private/gated)") from None
    except hf_errors.RevisionNotFoundError:
        raise DownloadError(f"{where}: revision {revision!r} not found") from None
    except hf_errors.EntryNotFoundError:
        raise DownloadError(f"{where}: file {src.filename!r} not found in the repository") from None
    except hf_errors.HfHubHTTPError as e:
        raise DownloadError(f"{where}: Hub HTTP error: {' '.join(str(e).split())[:200]}") from None
    except OSError as e:
        import errno

        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DownloadError(f"{where}: disk full while downloading into {cache}") from None
        raise DownloadError(f"{where}: {type(e).__name__}: {e}") from None


def resolve_checkpoint(source: ModelSource | Mapping[str, Any] | str | Path | None = None) -> ResolvedCheckpoint:
    """Find the checkpoint file on disk, downloading it from the Hub when needed.

    Args:
        source: a :class:`ModelSource`, the ``model.source`` params mapping, a file path
            (= ``kind="local"``), or ``None`` (the public HF checkpoint, defaults).

    Returns:
        a :class:`ResolvedCheckpoint`; ``.path`` is the local file (for the Hub, inside
        its cache -- do not modify it).

    Raises:
        ConfigError: an invalid source.
        CheckpointError: a local file that is missing, empty, not a torch checkpoint
            (e.g. an HTML page or a Git LFS pointer) or fails the ``sha256`` pin.
        DownloadError: the Hub download failed, or offline mode is on and the file is not
            cached (the message says how to fix it).
    """
    if source is None:
        src = ModelSource()
    elif isinstance(source, ModelSource):
        src = source
        src.validate()
    elif isinstance(source, (str, Path)):
        src = ModelSource(kind="local", path=str(source))
    else:
        src = ModelSource.from_params(source)

    if src.kind == "local":
        path = Path(src.path).expanduser()  # type: ignore[arg-type]
        if not path.is_file():
            raise CheckpointError("checkpoint file not found (model.source.path)", path)
        where = "model.source.path"
        commit = None
    else:
        if not (src.revision and _COMMIT_RE.match(src.revision)):
            warnings.warn(
                f"model.source.revision {src.revision or 'main'!r} is not a commit hash; pin a 40-hex "
                f"commit of {src.repo_id} for a reproducible checkpoint",
                UnpinnedRevisionWarning,
                stacklevel=2,
            )
        offline = _env_offline() if src.offline is None else bool(src.offline)
        path = _hf_download(src, offline)
        where = f"{src.repo_id}/{src.filename}@{src.revision or 'main'}"
        commit = _commit_from_path(path)
    _check_file(path, where)
    digest = file_sha256(path)
    if src.sha256 is not None and digest != _norm_sha(src.sha256):
        raise CheckpointError(f"sha256 mismatch ({where}): expected {_norm_sha(src.sha256)}, got {digest}", path)
    return ResolvedCheckpoint(
        path=path,
        sha256=digest,
        size=path.stat().st_size,
        kind=src.kind,
        repo_id=src.repo_id if src.kind == "huggingface" else None,
        filename=src.filename if src.kind == "huggingface" else path.name,
        revision=(src.revision or "main") if src.kind == "huggingface" else None,
        commit=commit,
    )


def fetch_model(
    source: ModelSource | Mapping[str, Any] | str | Path | None,
    out: str | Path,
    *,
    link: bool | None = None,
    verify: Callable[[Path], object] | None = None,
) -> ResolvedCheckpoint:
    """Resolve the checkpoint, check it, and place it at ``out`` atomically (copy, or hard link).

    Args:
        source: as for :func:`resolve_checkpoint`.
        out: destination file; written through a temporary file beside it and renamed,
            so ``out`` is either the whole checkpoint or unchanged.
        link: hard-link instead of copying (falls back to a copy across file systems);
            ``None`` = ``source.link``.
        verify: called with the resolved file before anything is written (e.g. a full load into
            the network, so that a checkpoint with a missing or misshapen tensor stops here, with
            ``out`` untouched, instead of in every stage that reads it); it raises to refuse.

    Returns:
        the :class:`ResolvedCheckpoint` of the source file (``.path`` is the source, not ``out``).

    Raises:
        as :func:`resolve_checkpoint`; DownloadError when ``out`` cannot be written (disk full).
    """
    resolved = resolve_checkpoint(source)
    if verify is not None:
        verify(resolved.path)
    if link is None:
        link = (
            bool(source.link)
            if isinstance(source, ModelSource)
            else bool(isinstance(source, Mapping) and source.get("link"))
        )
    out = Path(out)
    if out.exists() and out.resolve() == resolved.path.resolve():
        return resolved
    try:
        with atomic_path(out) as tmp:
            done = False
            if link:
                try:
                    tmp.unlink()
                    os.link(resolved.path.resolve(), tmp)
                    done = True
                except OSError:
                    done = False
            if not done:
                shutil.copyfile(resolved.path, tmp)
            if tmp.stat().st_size != resolved.size:
                raise CheckpointError(f"copy of {resolved.path} is incomplete", out)
    except OSError as e:
        import errno

        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DownloadError("disk full while writing the checkpoint (nothing was written)", out) from None
        raise DownloadError(f"cannot write the checkpoint: {e.strerror or e}", out) from None
    return resolved
