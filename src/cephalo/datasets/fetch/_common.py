"""What every fetch module shares: the DownloadError builder and the I/O chunk size."""

from __future__ import annotations

import errno
from pathlib import Path

from ...errors import DownloadError

__all__ = ["CHUNK", "err", "one_line", "oserror"]

CHUNK = 1 << 20  # 1 MiB


def err(message: str, source: str | Path) -> DownloadError:
    """A DownloadError naming ``source``: a URL goes into the message (Path() would mangle it)."""
    if isinstance(source, str) and "://" in source:
        return DownloadError(f"{source}: {message}")
    return DownloadError(message, source)


def one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def oserror(e: OSError, doing: str, source: str | Path) -> DownloadError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return err(f"disk full while {doing}; free space and run again (nothing was kept)", source)
    return err(f"{type(e).__name__} while {doing}: {e.strerror or e}", source)
