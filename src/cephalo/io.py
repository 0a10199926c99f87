"""Small I/O helpers shared by every stage: atomic writes, JSON, file hashes (params: cephalo.config)."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_path",
    "atomic_dir",
    "sweep_stale",
    "sweep_tree",
    "is_stale",
    "temp_name",
    "temp_owner",
    "write_json",
    "file_sha256",
]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --------------------------------------------------------------------------- temporaries with an owner
#: Age (seconds) after which a temporary whose owner cannot be checked (another host, or a name
#: from before owners were recorded) counts as stale. ``$CEPHALO_STALE_TEMP_S`` overrides it.
STALE_AFTER_S = 24 * 3600

#: ``<host>_<pid>_<random>`` inside a temporary's name: ``.<target>.<owner>.tmp`` / ``.old``
_OWNER = r"(?P<host>[A-Za-z0-9-]{1,40})_(?P<pid>\d{1,10})_(?P<rand>[0-9a-f]{8})"
_OWNED = re.compile(r"^\.(?P<target>.+)\." + _OWNER + r"\.(?P<kind>tmp|old)$")
#: names left by earlier versions: ``tempfile.mkstemp`` (``.<target>.<8 chars>.tmp``), ``.<target>.old``,
#: and the workflow's ``.<target>.tmp``
_LEGACY = re.compile(r"^\.(?P<target>.+?)(?:\.(?P<rand>[a-z0-9_]{8}))?\.(?P<kind>tmp|old)$")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"


def temp_name(target: str | Path, kind: str = "tmp") -> str:
    """Name of a new temporary for ``target``: ``.<name>.<host>_<pid>_<random>.<kind>``.

    The owner (host name and process id) in the name lets :func:`sweep_stale` tell a temporary
    whose writer died (SIGKILL, power loss) from one that is being written right now.
    """
    return f".{Path(target).name}.{_host()}_{os.getpid()}_{secrets.token_hex(4)}.{kind}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed, not yet reaped) is dead for our purposes
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return True


def _stale_after() -> float:
    try:
        return float(os.environ.get("CEPHALO_STALE_TEMP_S", STALE_AFTER_S))
    except ValueError:
        return float(STALE_AFTER_S)


def temp_owner(path: str | Path) -> tuple[str, str, int | None] | None:
    """``(target name, host, pid)`` of a cephalo temporary from its name; pid/host are ``None``/``""``
    for an owner-less name of an earlier version; ``None`` when ``path`` is not a temporary."""
    name = Path(path).name
    m = _OWNED.match(name)
    if m:
        return m["target"], m["host"], int(m["pid"])
    m = _LEGACY.match(name)
    if m:
        return m["target"], "", None
    return None


def is_stale(path: str | Path, *, max_age_s: float | None = None) -> bool:
    """Whether the temporary ``path`` belongs to no running writer.

    Stale: its owner ran on this host and that process is gone; or (owner on another host, or a
    name without an owner) it was last modified more than ``max_age_s`` seconds ago (default
    :data:`STALE_AFTER_S`, ``$CEPHALO_STALE_TEMP_S``). A process id reused by an unrelated process
    keeps a temporary until the age bound -- never the reverse.
    """
    owner = temp_owner(path)
    if owner is None:
        return False
    _, host, pid = owner
    if pid is not None and host == _host() and not _pid_alive(pid):
        return True
    max_age = _stale_after() if max_age_s is None else max_age_s
    try:
        age = time.time() - os.lstat(path).st_mtime
    except FileNotFoundError:
        return False
    return age >= max_age


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _sweep_entries(parent: Path, target: str | None, max_age_s: float | None, dry_run: bool) -> list[Path]:
    try:
        entries = sorted(parent.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = []
    for e in entries:
        owner = temp_owner(e)
        if owner is None or (target is not None and owner[0] != target):
            continue
        if is_stale(e, max_age_s=max_age_s):
            found.append(e)
    # a killed directory swap: `.<target>.<owner>.old` holds the previous output; put it back when
    # the target is missing (the swap stopped between its two renames), else drop it
    found.sort(key=lambda e: not e.name.endswith(".old"))
    done = []
    for e in found:
        if not dry_run:
            try:
                dest = parent / temp_owner(e)[0]
                if e.name.endswith(".old") and not dest.exists():
                    os.replace(e, dest)
                else:
                    _remove(e)
            except FileNotFoundError:  # another process swept it first
                continue
        done.append(e)
    return done


def sweep_stale(target: str | Path, *, max_age_s: float | None = None) -> list[Path]:
    """Remove stale temporaries of ``target`` (see :func:`is_stale`) left beside it by killed writers.

    A stale ``.old`` folder (the previous output of :func:`atomic_dir`, moved aside by a writer
    killed in the middle of its swap) is renamed back onto ``target`` when ``target`` is missing.
    Called by :func:`atomic_path` and :func:`atomic_dir` before they write.

    Returns:
        the temporaries removed (or restored).
    """
    target = Path(target)
    return _sweep_entries(target.parent, target.name, max_age_s, dry_run=False)


#: folders :func:`sweep_tree` does not descend into
_SKIP_DIRS = {".git", ".dvc", ".venv", "node_modules", "__pycache__"}


def sweep_tree(root: str | Path, *, max_age_s: float | None = None, dry_run: bool = False) -> list[Path]:
    """Remove every stale cephalo temporary under ``root`` (all writers, all targets).

    Args:
        root: project folder (``.git``, ``.dvc``, ``.venv`` are not searched).
        max_age_s: age bound for temporaries without a checkable owner (default
            :data:`STALE_AFTER_S`); ``0`` removes them all.
        dry_run: only list what would be removed.

    Returns:
        the temporaries removed (or, with ``dry_run``, that would be).
    """
    root = Path(root)
    out: list[Path] = []
    for dirpath, dirnames, _ in os.walk(root):
        d = Path(dirpath)
        out += _sweep_entries(d, None, max_age_s, dry_run)
        dirnames[:] = [n for n in dirnames if n not in _SKIP_DIRS and temp_owner(n) is None and (d / n).exists()]
    return out


_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``).

    Returns:
        ``False`` where the system or file system cannot (then the caller renames twice).

    Raises:
        OSError: any other failure of the swap.
    """
    global _renameat2
    if _renameat2 is None:
        try:
            import ctypes
            import ctypes.util

            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            fn = libc.renameat2
            fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
            fn.restype = ctypes.c_int
            _renameat2 = fn
        except (OSError, AttributeError):
            _renameat2 = False
    if _renameat2 is False:
        return False
    import ctypes

    if _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


_renameat2 = None


@contextlib.contextmanager
def _naming(target: Path) -> Iterator[None]:
    """Give an OSError raised without a file name (a ``write()`` on a full disk) the target's path."""
    try:
        yield
    except OSError as e:
        if e.filename is None and e.errno is not None:
            raise OSError(e.errno, e.strerror or os.strerror(e.errno), str(target)) from e
        raise


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary file path beside ``path``; rename it onto ``path`` on success.

    The temporary is ``.<name>.<host>_<pid>_<random>.tmp``; stale temporaries of ``path`` (their
    writer is gone, :func:`sweep_stale`) are removed first. On an exception the temporary file is
    removed and ``path`` is untouched, so a reader never sees a half-written file; after a SIGKILL
    the next writer of ``path`` (or ``cephalo clean``) removes it.

    Raises:
        OSError: the folder cannot be created or written (no space, read-only, permission).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(path)
    tmp_path = path.with_name(temp_name(path))
    os.close(os.open(tmp_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    try:
        with _naming(path):
            yield tmp_path
        if tmp_path.exists():  # created 0600; give the final file the usual mode
            os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; it replaces ``path`` whole on success.

    The temporary is ``.<name>.<host>_<pid>_<random>.tmp``; it is swapped with the previous
    ``path`` in one atomic step where the system can (Linux ``renameat2(RENAME_EXCHANGE)``), so
    ``path`` is never missing; elsewhere the previous ``path`` is moved to ``.<name>.<owner>.old``
    for a two-rename swap and deleted after it. Stale temporaries of ``path`` are
    swept first (:func:`sweep_stale`: a killed swap's ``.old`` is put back when ``path`` is
    missing). On an exception the temporary directory is deleted and ``path`` is untouched.

    Raises:
        OSError: the folder cannot be created or written (no space, read-only, permission).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(path)
    tmp = path.with_name(temp_name(path))
    tmp.mkdir(mode=0o700)
    try:
        with _naming(path):
            yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # created 0700
        if path.exists():
            if _exchange(tmp, path):  # one atomic step: `path` is always the old or the new output
                shutil.rmtree(tmp)  # now the previous output
                return
            old = path.with_name(temp_name(path, "old"))
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in ``chunk``-byte blocks (constant memory for GB archives).

    Raises:
        OSError: the file cannot be read.
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
