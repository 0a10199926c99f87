"""Archives: recognise them by content, unpack them safely; copy an unpacked folder the same way.

Formats are recognised by content (magic bytes, :func:`sniff_archive`), not by file name: zip and
tar (plain, gzip, bzip2, xz) are unpacked with pooch's extractor processors (subclassed here to
reject unsafe member paths -- absolute, ``..``, links -- to check the free space first and to show
progress); RAR (ISBI 2015) needs the ``rarfile`` package and one of the system tools ``unrar``,
``unar`` or ``bsdtar``. A corrupt, truncated, encrypted or unsafe archive, or a full disk, is a
:class:`cephalo.errors.DownloadError` naming the file. No data-set knowledge here.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from ...errors import DownloadError
from ._common import CHUNK, err, one_line, oserror
from .spec import PROVENANCE_FILE

__all__ = ["sniff_archive", "describe_head", "unpack", "unpack_nested", "copy_tree"]

_HTML_MARKERS = (b"<!doctype html", b"<html", b"<head", b"<body", b"<?xml", b"<!--", b"<title")


def sniff_archive(path: str | Path) -> str:
    """What a file is, from its first bytes (not its name).

    Returns:
        one of ``"zip"``, ``"tar"``, ``"tar.gz"``, ``"tar.bz2"``, ``"tar.xz"``, ``"rar"``,
        ``"html"`` (an error/login page), ``"json"`` (an API error body), ``"empty"``,
        ``"unknown"``. ``tar.*`` means the compressed stream *claims* to be a tar;
        it is confirmed while unpacking.
    """
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(1024)
        f.seek(257)
        ustar = f.read(5)
    if not head:
        return "empty"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"):
        return "zip"
    if head[:7] == b"Rar!\x1a\x07\x00" or head[:8] == b"Rar!\x1a\x07\x01\x00":
        return "rar"
    if head[:2] == b"\x1f\x8b":
        return "tar.gz"
    if head[:3] == b"BZh":
        return "tar.bz2"
    if head[:6] == b"\xfd7zXZ\x00":
        return "tar.xz"
    if ustar == b"ustar":
        return "tar"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if any(text.startswith(m) for m in _HTML_MARKERS) or b"<html" in text:
        return "html"
    if text[:1] in (b"{", b"["):
        return "json"
    return "unknown"


def describe_head(path: Path, n: int = 60) -> str:
    with open(path, "rb") as f:
        head = f.read(n)
    return repr(head)


# --------------------------------------------------------------------------- extraction


def _check_member_name(name: str, archive: Path) -> PurePosixPath:
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or (p.parts and ":" in p.parts[0]):
        raise err(f"unsafe member path {name!r} in archive (absolute or '..'); refusing to unpack", archive)
    return p


def _require_members(members: Sequence[Any], archive: Path, kind: str) -> None:
    if not members:
        raise err(f"the {kind} archive holds no files (empty, truncated or corrupt)", archive)


def _check_free_space(dest_dir: Path, need: int, archive: Path) -> None:
    try:
        free = shutil.disk_usage(dest_dir).free
    except OSError:
        return
    if need > free:
        raise err(
            f"not enough disk space to unpack: needs {need / 1e9:.2f} GB, {free / 1e9:.2f} GB free in {dest_dir}",
            archive,
        )


def _write_member(src: Any, dst: Path) -> None:
    """Copy one archive member's stream ``src`` to the new file ``dst`` (the extractor's write)."""
    with open(dst, "wb") as out:
        shutil.copyfileobj(src, out, CHUNK)


def _make_extractors() -> dict[str, type]:
    """pooch extractor processors (zip, tar, rar) with path checks, a space check and progress."""
    import pooch

    class _Progress:
        progress: bool = True
        label: str = ""

        def _bar(self, total: int):
            from tqdm.auto import tqdm

            return tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=f"unpack {self.label}",
                disable=not self.progress,
                leave=False,
            )

        def _extract_members(self, infos: list, open_member: Any, out: Path, archive: Path) -> None:
            """Write zip/RAR members (objects with ``filename``, ``file_size``, ``is_dir()``) under
            ``out``: names checked (no ``..``, absolute paths or links), free space checked first."""
            _check_free_space(out, sum(i.file_size for i in infos), archive)
            with self._bar(sum(i.file_size for i in infos)) as bar:
                for info in infos:
                    target = out.joinpath(*_check_member_name(info.filename, archive).parts)
                    if info.is_dir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with open_member(info) as src:
                        _write_member(src, target)
                    bar.update(info.file_size)

    class SafeUnzip(_Progress, pooch.Unzip):
        def _extract_file(self, fname: str, extract_dir: str) -> None:
            archive, out = Path(fname), Path(extract_dir)
            try:
                with zipfile.ZipFile(archive) as zf:
                    infos = zf.infolist()
                    _require_members(infos, archive, "zip")
                    for info in infos:
                        _check_member_name(info.filename, archive)
                    self._extract_members(infos, zf.open, out, archive)
            except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile) as e:
                raise err(f"corrupt or truncated zip archive: {one_line(e)}", archive) from None
            except (NotImplementedError, RuntimeError) as e:  # unsupported compression / encrypted
                raise err(f"cannot unpack zip archive: {one_line(e)}", archive) from None

    class SafeUntar(_Progress, pooch.Untar):
        def _extract_file(self, fname: str, extract_dir: str) -> None:
            archive, out = Path(fname), Path(extract_dir)
            try:
                with tarfile.open(archive, "r:*") as tf:
                    members = tf.getmembers()
                    _require_members(members, archive, "tar")
                    for m in members:
                        _check_member_name(m.name, archive)
                        if not (m.isfile() or m.isdir()):
                            # links / devices: never needed by an image data set, unsafe to follow
                            raise err(
                                f"archive member {m.name!r} is a link or special file; refusing to unpack",
                                archive,
                            )
                    _check_free_space(out, sum(m.size for m in members if m.isfile()), archive)
                    with self._bar(sum(m.size for m in members if m.isfile())) as bar:
                        for m in members:
                            target = out.joinpath(*_check_member_name(m.name, archive).parts)
                            if m.isdir():
                                target.mkdir(parents=True, exist_ok=True)
                                continue
                            target.parent.mkdir(parents=True, exist_ok=True)
                            src = tf.extractfile(m)
                            assert src is not None
                            with src:
                                _write_member(src, target)
                            bar.update(m.size)
            except (tarfile.TarError, EOFError) as e:
                raise err(f"corrupt or truncated tar archive: {one_line(e)}", archive) from None

    class UnRar(_Progress, pooch.processors.ExtractorProcessor):
        suffix = ".unrar"

        def _all_members(self, fname: str) -> list[str]:
            rarfile = _import_rarfile(Path(fname))
            try:
                with rarfile.RarFile(fname) as rf:
                    return rf.namelist()
            except rarfile.Error as e:
                raise err(f"corrupt or truncated RAR archive: {one_line(e)}", Path(fname)) from None

        def _extract_file(self, fname: str, extract_dir: str) -> None:
            archive, out = Path(fname), Path(extract_dir)
            rarfile = _import_rarfile(archive)
            try:
                with rarfile.RarFile(archive) as rf:
                    infos = rf.infolist()
                    _require_members(infos, archive, "RAR")
                    for i in infos:
                        _check_member_name(i.filename, archive)
                    if any(i.needs_password() for i in infos):
                        raise err("RAR archive is encrypted", archive)
                    if any(i.compress_type != rarfile.RAR_M0 for i in infos if not i.is_dir()):
                        _require_rar_tool(rarfile, archive)
                    self._extract_members(infos, rf.open, out, archive)
            except rarfile.RarCannotExec:
                raise err(_NO_RAR_TOOL, archive) from None
            except rarfile.Error as e:
                raise err(f"corrupt or truncated RAR archive: {one_line(e)}", archive) from None

    return {"zip": SafeUnzip, "tar": SafeUntar, "rar": UnRar}


_NO_RAR_TOOL = (
    "cannot unpack RAR archive: no RAR tool found on PATH; install one of the system tools "
    "'unrar', 'unar' or 'bsdtar' (e.g. apt install unrar | unar | libarchive-tools; "
    "brew install unar) and run again"
)


def _import_rarfile(archive: Path):
    try:
        import rarfile
    except ImportError:
        raise err(
            "cannot unpack RAR archive: the Python package 'rarfile' is not installed "
            "(pip install 'cephalo[rar]' or pip install rarfile); it also needs the system tool "
            "'unrar', 'unar' or 'bsdtar'",
            archive,
        ) from None
    return rarfile


def _require_rar_tool(rarfile: Any, archive: Path) -> None:
    try:
        rarfile.tool_setup()
    except rarfile.RarCannotExec:
        raise err(_NO_RAR_TOOL, archive) from None


def unpack(archive: Path, into: Path, *, source: str, progress: bool) -> str:
    """Sniff ``archive`` and unpack it into the (new) folder ``into``; returns the kind."""
    kind = sniff_archive(archive)
    if kind in ("html", "json", "empty", "unknown"):
        what = {"html": "an HTML page", "json": "a JSON body", "empty": "an empty file"}.get(kind, "not an archive")
        raise err(
            f"{what}, not a zip/tar/rar archive (starts {describe_head(archive)}); source {source}",
            archive,
        )
    cls = _make_extractors()["zip" if kind == "zip" else "rar" if kind == "rar" else "tar"]
    proc = cls(extract_dir=str(into))
    proc.progress = progress
    proc.label = archive.name
    try:
        proc(str(archive), "download", None)
    except DownloadError:
        raise
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as e:
        raise err(f"corrupt or truncated {kind} archive: {one_line(e)}", archive) from None
    except OSError as e:
        raise oserror(e, f"unpacking into {into.parent}", archive) from None
    return kind


def unpack_nested(root: Path, *, progress: bool) -> list[str]:
    """Unpack archives found at the top level of ``root`` (figshare bulk zips hold RARs).

    Each ``X.rar``/``X.zip``/``X.tar*`` is unpacked into ``root/X`` and deleted; wrapper
    levels ``X/X`` are collapsed afterwards. Returns the names unpacked.
    """
    done = []
    for p in sorted(root.iterdir()):
        if not p.is_file() or p.name == PROVENANCE_FILE:
            continue
        if sniff_archive(p) not in ("zip", "rar", "tar", "tar.gz", "tar.bz2", "tar.xz"):
            continue
        stem = p.name.split(".")[0] or p.name
        target = root / stem
        if target.exists():
            target = root / f"{stem}.unpacked"
        unpack(p, target, source=str(p), progress=progress)
        p.unlink()
        done.append(p.name)
    return done


# --------------------------------------------------------------------------- folder source


def copy_tree(src: Path, dst: Path, *, link: bool, progress: bool) -> None:
    """Copy (or hard-link, falling back to copy) every file of ``src`` into the new ``dst``."""
    from tqdm.auto import tqdm

    files = [Path(dp) / f for dp, _, fs in os.walk(src) for f in fs]
    total = sum(f.stat().st_size for f in files)
    if not link:
        _check_free_space(dst.parent, total, src)
    with tqdm(
        total=total, unit="B", unit_scale=True, desc=f"copy {src.name}", disable=not progress, leave=False
    ) as bar:
        for f in files:
            target = dst / f.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            size = f.stat().st_size
            if link:
                try:
                    os.link(f, target)
                    bar.update(size)
                    continue
                except OSError:
                    link = False  # other file system / not permitted: copy from here on
            with open(f, "rb") as fin:
                _write_member(fin, target)
            shutil.copystat(f, target)
            bar.update(size)
