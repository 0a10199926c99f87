"""Checksums of release archives: parse a pinned one, verify a file against it, memoise SHA-256."""

from __future__ import annotations

from pathlib import Path

from ...errors import ConfigError
from ...io import file_sha256
from ._common import CHUNK, err

__all__ = ["archive_sha256", "normalise_hash", "verify_local_hash"]

_SHA_MEMO: dict[tuple[str, int, int], str] = {}


def archive_sha256(path: Path) -> str:
    """``"sha256:<hex>"`` of a file (memoised on path, size and mtime: archives are GBs)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key in _SHA_MEMO:
        return _SHA_MEMO[key]
    _SHA_MEMO[key] = "sha256:" + file_sha256(path, CHUNK)
    return _SHA_MEMO[key]


def normalise_hash(h: str | None, where: str) -> str | None:
    if h is None or h == "":
        return None
    if not isinstance(h, str):
        raise ConfigError(f"{where}: checksum must be a string like 'sha256:<hex>' or 'md5:<hex>', got {h!r}")
    h = h.strip()
    alg, _, hexd = h.rpartition(":")
    alg = (alg or "sha256").lower()
    if (
        alg not in ("md5", "sha1", "sha256", "sha512")
        or not hexd
        or any(c not in "0123456789abcdefABCDEF" for c in hexd)
    ):
        raise ConfigError(f"{where}: checksum must look like 'sha256:<hex>' or 'md5:<hex>', got {h!r}")
    return f"{alg}:{hexd.lower()}"


def verify_local_hash(path: Path, known_hash: str) -> None:
    import pooch

    alg, hexd = known_hash.split(":", 1)
    try:
        got = pooch.file_hash(str(path), alg=alg)
    except OSError as e:
        raise err(f"cannot read archive: {e.strerror or e}", path) from None
    if got != hexd:
        raise err(f"checksum mismatch: expected {alg}:{hexd}, got {alg}:{got}", path)
