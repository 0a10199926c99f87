"""Fetch a data set release and unpack it, all or nothing.

A *release* is the archive(s) a data set's authors publish (``RELEASES``): the pinned
URL, the published checksum (when there is one), the known size and the layout that
the unpacked files must have. :func:`fetch_release` gets the archive from one of three
sources -- the release URL or a mirror (downloaded with **pooch** into a cache, checksum
verified), an archive already on disk, or a folder that already holds the unpacked
release -- then unpacks it into a temporary folder beside ``dest`` and renames that
folder onto ``dest`` only once the layout validates. Whatever goes wrong (HTTP error,
an HTML page served instead of the archive, a truncated body, a checksum mismatch, an
unexpected layout, a full disk), ``dest`` is left as it was and a
:class:`cephalo.errors.DownloadError` names the URL/file and the problem.

Resuming: an interrupted HTTP download keeps its bytes in ``<cache>/<file>.part``; the
next call asks the server for the rest with an HTTP ``Range: bytes=N-`` request. When
the server answers ``206 Partial Content`` the bytes are appended; when it answers
``200`` (no range support) the download restarts from zero. The checksum is always
computed over the whole file. A complete download stays in the cache (pooch's
``known_hash`` check), so a second call with the same checksum does not download again.
Unpacking does not resume: it restarts in a fresh temporary folder.

Archive formats are recognised by content (magic bytes), not by file name: zip and
tar (plain, gzip, bzip2, xz) are unpacked with pooch's extractor processors
(subclassed here to reject unsafe member paths and to show progress); RAR (ISBI 2015)
needs the ``rarfile`` package and one of the system tools ``unrar``, ``unar`` or
``bsdtar``.

Sources: Aariz -- figshare article 27986417 v1 (DOI 10.6084/m9.figshare.27986417.v1,
CC BY 4.0; arXiv 2302.07797). ISBI 2015 -- Wang et al., Medical Image Analysis 31
(2016), figshare article 3471833 (private link; RAR archives, no published checksums).
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import tarfile
import time
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Mapping, Sequence

from ..errors import CephaloError, ConfigError, DownloadError
from ..io import atomic_dir, file_sha256, sweep_stale, write_json

__all__ = [
    "ReleaseFile",
    "Layout",
    "Release",
    "RELEASES",
    "get_release",
    "fetch_release",
    "sniff_archive",
    "validate_layout",
    "check_release_layout",
    "resolve_ci",
    "default_cache_dir",
    "PROVENANCE_FILE",
    "MissingChecksumWarning",
]

log = logging.getLogger(__name__)

#: Name of the provenance record written inside every unpacked release.
PROVENANCE_FILE = ".cephalo-download.json"

_CHUNK = 1 << 20  # 1 MiB


class MissingChecksumWarning(UserWarning):
    """A release file was fetched without a pinned checksum (nothing to verify it against)."""


# --------------------------------------------------------------------------- release specs


@dataclass(frozen=True)
class ReleaseFile:
    """One published archive of a release.

    Attributes:
        name: file name in the cache (``"Aariz.zip"``).
        url: pinned download URL.
        known_hash: ``"<alg>:<hex>"`` as pooch expects (``"md5:..."``, ``"sha256:..."``),
            or ``None`` when the authors publish none.
        size: size in bytes, when known (checked after download).
    """

    name: str
    url: str
    known_hash: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class Layout:
    """What an unpacked release must contain (paths relative to ``dest``, POSIX style).

    Attributes:
        dirs: folders that must exist.
        nonempty_dirs: folders that must exist and hold at least one file (any depth).
        files: files that must exist.
        any_of: groups of paths of which at least one per group must exist.
        recommended: paths whose absence only warns (e.g. a test split that a partial
            copy may lack).
    """

    dirs: tuple[str, ...] = ()
    nonempty_dirs: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    any_of: tuple[tuple[str, ...], ...] = ()
    recommended: tuple[str, ...] = ()


@dataclass(frozen=True)
class Release:
    """A data set release: where it is published and what it unpacks to.

    Attributes:
        name: data set name (the adapter name, ``"aariz"``).
        files: the archives to fetch (one for both releases known so far).
        layout: the expected unpacked layout (validated before ``dest`` is written).
        citation: where the release is described (DOI / paper).
        licence: the release licence, as published.
    """

    name: str
    files: tuple[ReleaseFile, ...]
    layout: Layout
    citation: str = ""
    licence: str = ""


_AARIZ_SPLITS = ("train", "valid", "test")

RELEASES: dict[str, Release] = {
    "aariz": Release(
        name="aariz",
        files=(
            ReleaseFile(
                name="Aariz.zip",
                url="https://ndownloader.figshare.com/files/51041642",
                known_hash="md5:e0bd645bca6759abdae4f199d841bda6",
                size=2_098_209_792,
            ),
        ),
        layout=Layout(
            nonempty_dirs=tuple(f"Aariz/{s}/Cephalograms" for s in _AARIZ_SPLITS)
            + tuple(
                f"Aariz/{s}/Annotations/Cephalometric Landmarks/Senior Orthodontists"
                for s in _AARIZ_SPLITS
            ),
            dirs=tuple(
                f"Aariz/{s}/Annotations/Cephalometric Landmarks/Junior Orthodontists"
                for s in _AARIZ_SPLITS
            ),
            files=("Aariz/cephalogram_machine_mappings.csv",),
            recommended=tuple(f"Aariz/{s}/Annotations/CVM Stages" for s in _AARIZ_SPLITS)
            + ("Aariz/Readme.txt",),
        ),
        citation="figshare 10.6084/m9.figshare.27986417.v1; arXiv 2302.07797; Sci Data 12, 1336 (2025)",
        licence="CC BY 4.0",
    ),
    "isbi2015": Release(
        name="isbi2015",
        files=(
            ReleaseFile(
                # figshare's bulk download of the private-link article: a zip holding
                # RawImage.rar, AnnotationsByMD.rar and EvaluationCode.rar.
                name="isbi2015_figshare_3471833.zip",
                url="https://figshare.com/ndownloader/articles/3471833?private_link=37ec464af8e81ae6ebbf",
                known_hash=None,
                size=None,
            ),
        ),
        layout=Layout(
            nonempty_dirs=("RawImage/TrainingData", "RawImage/Test1Data"),
            dirs=("AnnotationsByMD",),
            any_of=(
                (
                    "AnnotationsByMD/400_senior",
                    "AnnotationsByMD/400_junior",
                    "AnnotationsByMD/400_mean",
                ),
            ),
            recommended=("RawImage/Test2Data", "AnnotationsByMD/400_senior", "AnnotationsByMD/400_junior"),
        ),
        citation="Wang et al., Medical Image Analysis 31 (2016); figshare article 3471833",
        licence="unstated (research use)",
    ),
}


def get_release(name: str) -> Release:
    """The :class:`Release` called ``name``.

    Raises:
        ValueError: unknown name (the message lists the valid names).
    """
    try:
        return RELEASES[name]
    except KeyError:
        raise ValueError(f"unknown data set release {name!r}; valid: {', '.join(sorted(RELEASES))}") from None


def default_cache_dir() -> Path:
    """Download cache: ``$CEPHALO_CACHE`` if set, else pooch's OS cache for ``cephalo``."""
    env = os.environ.get("CEPHALO_CACHE")
    if env:
        return Path(env).expanduser()
    import pooch

    return Path(pooch.os_cache("cephalo"))


# --------------------------------------------------------------------------- sniffing


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


def _describe_head(path: Path, n: int = 60) -> str:
    with open(path, "rb") as f:
        head = f.read(n)
    return repr(head)


# --------------------------------------------------------------------------- layout


def _collapse_wrappers(root: Path) -> None:
    """Remove extractor wrapper levels: ``X/X/...`` (X holding only X) becomes ``X/...``.

    Extractors (and figshare's bulk download) may add one level named like the archive,
    e.g. ``RawImage/RawImage/TrainingData``. Applied to the top-level folders only.
    """
    for top in sorted(p for p in root.iterdir() if p.is_dir()):
        while True:
            children = list(top.iterdir())
            if len(children) == 1 and children[0].is_dir() and children[0].name.lower() == top.name.lower():
                inner = children[0]
                tmp = top.with_name(f".{top.name}.collapse")
                os.replace(inner, tmp)
                top.rmdir()
                os.replace(tmp, top)
            else:
                break


def _layout_tops(layout: Layout) -> set[str]:
    """Lower-case names of the top-level folders a layout mentions (``{"rawimage", ...}``)."""
    paths = layout.dirs + layout.nonempty_dirs + layout.files + layout.recommended + tuple(p for g in layout.any_of for p in g)
    return {p.split("/", 1)[0].lower() for p in paths if "/" in p or p in layout.dirs + layout.nonempty_dirs}


def _has_file(d: Path) -> bool:
    for _, _, files in os.walk(d):
        if files:
            return True
    return False


def resolve_ci(root: str | Path, rel: str) -> Path | None:
    """``root / rel`` with every component matched case-insensitively (``Aariz/Train`` for
    ``Aariz/train``); an exact match wins. ``None`` when a component is missing."""
    node = Path(root)
    for part in PurePosixPath(rel).parts:
        exact = node / part
        if exact.exists():
            node = exact
            continue
        try:
            match = next((c for c in sorted(node.iterdir()) if c.name.lower() == part.lower()), None)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if match is None:
            return None
        node = match
    return node


def validate_layout(root: str | Path, layout: Layout, *, source: str, error: type[CephaloError] = DownloadError) -> list[str]:
    """Check that ``root`` holds ``layout``; folder and file names match case-insensitively.

    The one layout check of a release: ``cephalo download`` runs it on the unpacked folder and
    ``cephalo index`` on the folder it reads (:func:`check_release_layout`), so the two commands
    accept the same trees.

    Args:
        root: the unpacked release folder.
        layout: the expectation.
        source: the URL/file the release came from (named in the error).
        error: the exception class raised (``DownloadError`` for downloads, ``DataError`` for indexing).

    Returns:
        the ``recommended`` paths that are missing (the caller warns about them).

    Raises:
        DownloadError (or ``error``): a required path is missing or empty; the message lists what
            is missing and the top-level entries that were found.
    """
    root = Path(root)
    missing: list[str] = []
    for rel in layout.dirs:
        d = resolve_ci(root, rel)
        if d is None or not d.is_dir():
            missing.append(rel + "/")
    for rel in layout.nonempty_dirs:
        d = resolve_ci(root, rel)
        if d is None or not d.is_dir():
            missing.append(rel + "/")
        elif not _has_file(d):
            missing.append(rel + "/ (empty)")
    for rel in layout.files:
        f = resolve_ci(root, rel)
        if f is None or not f.is_file():
            missing.append(rel)
    for group in layout.any_of:
        if not any(resolve_ci(root, rel) is not None for rel in group):
            missing.append(" or ".join(group))
    if missing:
        found = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir() if p.name != PROVENANCE_FILE)
        shown = ", ".join(missing[:6]) + (f" (+{len(missing) - 6} more)" if len(missing) > 6 else "")
        msg = f"unexpected layout: missing {shown}; top-level entries found: {found[:10] or 'none'}"
        raise _err(msg, source) if error is DownloadError else error(msg, source)
    return [rel for rel in layout.recommended if resolve_ci(root, rel) is None]


def check_release_layout(name: str, root: str | Path) -> list[str]:
    """The layout check of :func:`validate_layout` for a folder that ``cephalo index`` reads.

    ``root`` is the folder a download made (``dest``) or its top-level release folder itself
    (``.../Aariz``), as the adapters accept both.

    Returns:
        the missing ``recommended`` paths.

    Raises:
        DataError: a required path is missing (the same paths that make a download fail).
    """
    from ..errors import DataError

    root = Path(root)
    layout = get_release(name).layout
    paths = layout.dirs + layout.nonempty_dirs + layout.files
    top = PurePosixPath(paths[0]).parts[0] if paths else None
    if top and resolve_ci(root, top) is None and root.name.lower() == top.lower():
        root = root.parent  # given the release folder itself
    return validate_layout(root, layout, source=str(root), error=DataError)


# --------------------------------------------------------------------------- HTTP download


class _ResumableDownloader:
    """A pooch downloader (``callable(url, output_file, pooch)``) that resumes with HTTP Range.

    Bytes go to ``part_path`` (kept across calls); once the body is complete it is moved
    onto pooch's temporary ``output_file`` so that pooch checks the hash and caches it.
    Raises :class:`DownloadError` for HTTP errors, an HTML page, a truncated body.
    """

    def __init__(
        self,
        part_path: Path,
        *,
        expected_size: int | None,
        progress: bool,
        timeout_s: float,
        label: str,
    ):
        self.part_path = part_path
        self.expected_size = expected_size
        self.progress = progress
        self.timeout_s = timeout_s
        self.label = label
        self.resumed_from = 0
        self.last_total: int | None = None

    def __call__(self, url: str, output_file: str, pooch_obj: Any) -> None:
        import http.client

        import requests
        import urllib3

        _NETWORK_ERRORS = (
            requests.exceptions.RequestException,
            urllib3.exceptions.HTTPError,
            http.client.HTTPException,
            ConnectionError,
            TimeoutError,
        )
        from tqdm.auto import tqdm

        part = self.part_path
        offset = part.stat().st_size if part.exists() else 0
        headers = {"User-Agent": "cephalo (pooch)", "Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            resp = requests.get(url, stream=True, headers=headers, timeout=(min(30.0, self.timeout_s), self.timeout_s))
        except requests.exceptions.RequestException as e:
            raise _err(f"cannot connect: {type(e).__name__}: {_one_line(e)}", url) from None
        with resp:
            if resp.status_code == 416 and offset and self.expected_size == offset:
                total = offset  # the part file is already complete
                mode = None
            elif resp.status_code == 416:
                part.unlink(missing_ok=True)
                raise _err(
                    f"server refused to resume at byte {offset} (HTTP 416); the partial file was "
                    "discarded, run again to download from the start",
                    url,
                )
            elif resp.status_code == 206 and offset:
                start = _content_range_start(resp.headers.get("Content-Range", ""))
                if start != offset:
                    part.unlink(missing_ok=True)
                    raise _err(
                        f"server resumed at byte {start}, expected {offset}; partial file discarded, run again",
                        url,
                    )
                mode = "ab"
                self.resumed_from = offset
                total = _int_or_none(resp.headers.get("Content-Length"))
                total = None if total is None else offset + total
            elif resp.status_code == 200:
                if offset:
                    log.info("%s: server ignored the Range request; restarting from byte 0", url)
                offset = 0
                mode = "wb"
                total = _int_or_none(resp.headers.get("Content-Length"))
                ctype = resp.headers.get("Content-Type", "").lower()
                if "text/html" in ctype:
                    snippet = resp.raw.read(200, decode_content=True)
                    raise _err(
                        f"the server sent an HTML page (Content-Type {ctype!r}), not an archive: "
                        f"{snippet[:80]!r}; check the URL or mirror (login/expired link?)",
                        url,
                    )
            else:
                raise _err(f"HTTP {resp.status_code} {resp.reason or ''}".strip(), url)

            self.last_total = total
            if mode is not None:
                part.parent.mkdir(parents=True, exist_ok=True)
                written = offset
                bar = tqdm(
                    total=total,
                    initial=offset,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=self.label,
                    disable=not self.progress,
                    leave=False,
                )
                try:
                    with open(part, mode) as f:
                        while True:
                            # read1: whatever has arrived (<= 1 MiB), so an interrupted body
                            # keeps every byte received for the next resume
                            chunk = resp.raw.read1(_CHUNK, decode_content=False)
                            if not chunk:
                                break
                            f.write(chunk)
                            written += len(chunk)
                            bar.update(len(chunk))
                except _NETWORK_ERRORS as e:
                    raise _err(
                        f"download interrupted after {written} bytes"
                        + (f" of {total}" if total else "")
                        + f" ({type(e).__name__}: {_one_line(e)[:120]}); the partial file is kept at "
                        f"{part} and the next run resumes it",
                        url,
                    ) from None
                except OSError as e:
                    raise _oserror(e, f"writing the download to {part}", url) from None
                finally:
                    bar.close()
                if total is not None and written != total:
                    raise _err(
                        f"truncated download: got {written} of {total} bytes; the partial file is kept "
                        f"at {part} and the next run resumes it",
                        url,
                    )

        kind = sniff_archive(part)
        if kind in ("html", "json", "empty"):
            head = _describe_head(part)
            part.unlink(missing_ok=True)
            raise _err(
                f"the server sent {'an HTML page' if kind == 'html' else 'a ' + kind + ' body'}, "
                f"not an archive (starts {head}); check the URL or mirror",
                url,
            )
        size = part.stat().st_size
        if self.expected_size is not None and size != self.expected_size:
            if size < self.expected_size and self.last_total is None:
                raise _err(
                    f"truncated download: got {size} of the release's {self.expected_size} bytes; the "
                    f"partial file is kept at {part} and the next run resumes it",
                    url,
                )
            part.unlink(missing_ok=True)
            raise _err(
                f"size mismatch: the server's file has {size} bytes, the release has "
                f"{self.expected_size}; wrong file or mirror? (discarded)",
                url,
            )
        os.replace(part, output_file)


def _content_range_start(value: str) -> int | None:
    # "bytes 100-199/200"
    try:
        unit, rng = value.split(" ", 1)
        return int(rng.split("-", 1)[0])
    except (ValueError, IndexError):
        return None


def _int_or_none(v: str | None) -> int | None:
    try:
        return None if v is None else int(v)
    except ValueError:
        return None


def _err(message: str, source: str | Path) -> DownloadError:
    """A DownloadError naming ``source``: a URL goes into the message (Path() would mangle it)."""
    if isinstance(source, str) and "://" in source:
        return DownloadError(f"{source}: {message}")
    return DownloadError(message, source)


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def _oserror(e: OSError, doing: str, source: str | Path) -> DownloadError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return _err(f"disk full while {doing}; free space and run again (nothing was kept)", source)
    return _err(f"{type(e).__name__} while {doing}: {e.strerror or e}", source)


def _cache_name(rf: ReleaseFile, url: str, known_hash: str | None) -> str:
    if known_hash is None or url != rf.url:
        # No checksum (or a mirror): key the cache by URL so two sources never share a file.
        tag = hashlib.sha1(url.encode()).hexdigest()[:10]
        return f"{tag}-{rf.name}"
    return rf.name


def _download(
    rf: ReleaseFile,
    url: str,
    known_hash: str | None,
    cache_dir: Path,
    *,
    progress: bool,
    timeout_s: float,
) -> Path:
    """Download ``url`` into ``cache_dir`` with pooch (hash-checked, cached, resumable)."""
    import pooch

    fname = _cache_name(rf, url, known_hash)
    cache_dir.mkdir(parents=True, exist_ok=True)
    downloader = _ResumableDownloader(
        cache_dir / f"{fname}.part",
        expected_size=rf.size if url == rf.url or known_hash == rf.known_hash else None,
        progress=progress,
        timeout_s=timeout_s,
        label=rf.name,
    )
    logger = pooch.get_logger()
    old_level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        path = pooch.retrieve(url, known_hash=known_hash, fname=fname, path=cache_dir, downloader=downloader)
    except DownloadError:
        raise
    except ValueError as e:
        msg = _one_line(e)
        if "hash" in msg.lower():
            raise _err(f"checksum mismatch (the download was deleted): {msg}", url) from None
        raise _err(msg, url) from None
    except OSError as e:
        raise _oserror(e, f"saving the download in {cache_dir}", url) from None
    finally:
        logger.setLevel(old_level)
    return Path(path)


# --------------------------------------------------------------------------- extraction


def _check_member_name(name: str, archive: Path) -> PurePosixPath:
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or (p.parts and ":" in p.parts[0]):
        raise _err(f"unsafe member path {name!r} in archive (absolute or '..'); refusing to unpack", archive)
    return p


def _require_members(members: Sequence[Any], archive: Path, kind: str) -> None:
    if not members:
        raise _err(f"the {kind} archive holds no files (empty, truncated or corrupt)", archive)


def _check_free_space(dest_dir: Path, need: int, archive: Path) -> None:
    try:
        free = shutil.disk_usage(dest_dir).free
    except OSError:
        return
    if need > free:
        raise _err(
            f"not enough disk space to unpack: needs {need / 1e9:.2f} GB, {free / 1e9:.2f} GB free in {dest_dir}",
            archive,
        )


def _write_member(src: Any, dst: Path) -> None:
    """Copy one archive member's stream ``src`` to the new file ``dst`` (the extractor's write)."""
    with open(dst, "wb") as out:
        shutil.copyfileobj(src, out, _CHUNK)


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
                raise _err(f"corrupt or truncated zip archive: {_one_line(e)}", archive) from None
            except (NotImplementedError, RuntimeError) as e:  # unsupported compression / encrypted
                raise _err(f"cannot unpack zip archive: {_one_line(e)}", archive) from None

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
                            raise _err(
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
                raise _err(f"corrupt or truncated tar archive: {_one_line(e)}", archive) from None

    class UnRar(_Progress, pooch.processors.ExtractorProcessor):
        suffix = ".unrar"

        def _all_members(self, fname: str) -> list[str]:
            rarfile = _import_rarfile(Path(fname))
            try:
                with rarfile.RarFile(fname) as rf:
                    return rf.namelist()
            except rarfile.Error as e:
                raise _err(f"corrupt or truncated RAR archive: {_one_line(e)}", Path(fname)) from None

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
                        raise _err("RAR archive is encrypted", archive)
                    if any(i.compress_type != rarfile.RAR_M0 for i in infos if not i.is_dir()):
                        _require_rar_tool(rarfile, archive)
                    self._extract_members(infos, rf.open, out, archive)
            except rarfile.RarCannotExec:
                raise _err(_NO_RAR_TOOL, archive) from None
            except rarfile.Error as e:
                raise _err(f"corrupt or truncated RAR archive: {_one_line(e)}", archive) from None

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
        raise _err(
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
        raise _err(_NO_RAR_TOOL, archive) from None


def _unpack(archive: Path, into: Path, *, source: str, progress: bool) -> str:
    """Sniff ``archive`` and unpack it into the (new) folder ``into``; returns the kind."""
    kind = sniff_archive(archive)
    if kind in ("html", "json", "empty", "unknown"):
        what = {"html": "an HTML page", "json": "a JSON body", "empty": "an empty file"}.get(kind, "not an archive")
        raise _err(
            f"{what}, not a zip/tar/rar archive (starts {_describe_head(archive)}); "
            f"source {source}",
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
        raise _err(f"corrupt or truncated {kind} archive: {_one_line(e)}", archive) from None
    except OSError as e:
        raise _oserror(e, f"unpacking into {into.parent}", archive) from None
    return kind


def _unpack_nested(root: Path, *, progress: bool) -> list[str]:
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
        _unpack(p, target, source=str(p), progress=progress)
        p.unlink()
        done.append(p.name)
    return done


# --------------------------------------------------------------------------- folder source


def _copy_tree(src: Path, dst: Path, *, link: bool, progress: bool) -> None:
    """Copy (or hard-link, falling back to copy) every file of ``src`` into the new ``dst``."""
    from tqdm.auto import tqdm

    files = [Path(dp) / f for dp, _, fs in os.walk(src) for f in fs]
    total = sum(f.stat().st_size for f in files)
    if not link:
        _check_free_space(dst.parent, total, src)
    with tqdm(total=total, unit="B", unit_scale=True, desc=f"copy {src.name}", disable=not progress, leave=False) as bar:
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


# --------------------------------------------------------------------------- public entry


_SHA_MEMO: dict[tuple[str, int, int], str] = {}


def _file_sha256(path: Path) -> str:
    """``"sha256:<hex>"`` of a file (memoised on path, size and mtime: archives are GBs)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key in _SHA_MEMO:
        return _SHA_MEMO[key]
    _SHA_MEMO[key] = "sha256:" + file_sha256(path, _CHUNK)
    return _SHA_MEMO[key]




def _normalise_hash(h: str | None, where: str) -> str | None:
    if h is None or h == "":
        return None
    if not isinstance(h, str):
        raise ConfigError(f"{where}: checksum must be a string like 'sha256:<hex>' or 'md5:<hex>', got {h!r}")
    h = h.strip()
    alg, _, hexd = h.rpartition(":")
    alg = (alg or "sha256").lower()
    if alg not in ("md5", "sha1", "sha256", "sha512") or not hexd or any(c not in "0123456789abcdefABCDEF" for c in hexd):
        raise ConfigError(f"{where}: checksum must look like 'sha256:<hex>' or 'md5:<hex>', got {h!r}")
    return f"{alg}:{hexd.lower()}"


def _verify_local_hash(path: Path, known_hash: str) -> None:
    import pooch

    alg, hexd = known_hash.split(":", 1)
    try:
        got = pooch.file_hash(str(path), alg=alg)
    except OSError as e:
        raise _err(f"cannot read archive: {e.strerror or e}", path) from None
    if got != hexd:
        raise _err(f"checksum mismatch: expected {alg}:{hexd}, got {alg}:{got}", path)


def _already_fetched(dest: Path, name: str, wanted: list[tuple[str, str | None]], layout: Layout) -> bool:
    """``dest`` was unpacked from the same URL(s) with the same pinned checksum(s), and validates."""
    try:
        old = json.loads((dest / PROVENANCE_FILE).read_text())
        got = [(s["source"], s["known_hash"]) for s in old["sources"]]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if old.get("dataset") != name or old.get("source_kind") != "url" or got != wanted:
        return False
    if any(h is None for _, h in wanted):
        return False  # nothing pinned: cannot tell whether the remote file changed
    try:
        validate_layout(dest, layout, source=str(dest))
    except CephaloError:
        return False
    return True


def _existing_matches(dest: Path, record: Mapping[str, Any]) -> bool:
    prov = dest / PROVENANCE_FILE
    if not prov.is_file():
        return False
    try:
        old = json.loads(prov.read_text())
    except (OSError, ValueError):
        return False
    keys = ("dataset", "source_kind", "sha256")
    return all(old.get(k) == record.get(k) for k in keys) and old.get("sha256") is not None


def fetch_release(
    name: str,
    dest: str | Path,
    *,
    url: str | None = None,
    archive: str | Path | Sequence[str | Path] | None = None,
    folder: str | Path | None = None,
    known_hash: str | Mapping[str, str] | None = None,
    progress: bool = True,
    cache_dir: str | Path | None = None,
    keep_archive: bool = True,
    timeout_s: float = 60.0,
    link: bool = False,
    force: bool = False,
) -> Path:
    """Fetch the release of data set ``name`` and unpack it into ``dest``, all or nothing.

    Exactly one source is used: ``folder`` (an already unpacked release: validated,
    then copied -- or hard-linked with ``link=True``), else ``archive`` (archive file(s)
    on disk), else ``url`` (a mirror) or the release's pinned URL (downloaded with pooch
    into ``cache_dir``, resumable, see the module docstring).

    Args:
        name: release name, ``"aariz"`` or ``"isbi2015"`` (see ``RELEASES``).
        dest: the folder to create; on success it holds the release's top-level
            entries (for Aariz ``dest/Aariz/{train,valid,test}/...``; for ISBI 2015
            ``dest/RawImage/...`` and ``dest/AnnotationsByMD/...``) and a provenance
            record ``dest/.cephalo-download.json`` (source, size, SHA-256, date).
        url: mirror URL instead of the release URL (the release checksum still applies).
        archive: local archive file, or several (ISBI 2015 ships ``RawImage.rar`` and
            ``AnnotationsByMD.rar`` separately); each is checksum-checked when a hash is
            known for it.
        folder: local folder that already holds the unpacked release.
        known_hash: ``"<alg>:<hex>"`` overriding/pinning the checksum of the (single)
            download or archive; or a mapping file name -> hash for several archives.
            ``None`` uses the release's published checksum; where there is none a
            :class:`MissingChecksumWarning` is issued with the SHA-256 to pin.
        progress: show tqdm progress bars (download, unpack, copy).
        cache_dir: download cache (default :func:`default_cache_dir`).
        keep_archive: keep the downloaded archive in the cache (else deleted after unpacking).
        timeout_s: HTTP connect/read timeout in seconds.
        link: for ``folder`` sources, hard-link files instead of copying where possible.
        force: replace an existing non-empty ``dest`` that is not this very release.

    Returns:
        ``dest`` as a :class:`Path`.

    Raises:
        ValueError: unknown release name.
        ConfigError: a malformed checksum, or more than one source given.
        DownloadError: HTTP error, an HTML page or other non-archive body, truncated
            download or archive, checksum/size mismatch, unsafe archive member, missing
            RAR tool, unexpected layout, disk full, or ``dest`` occupied (without
            ``force``). ``dest`` is then unchanged and no temporary folder is left.
    """
    release = get_release(name)
    # absolute: pooch's extractors read a relative extract_dir as relative to the archive's folder
    dest = Path(dest).absolute()
    cache_dir = None if cache_dir is None else Path(cache_dir).expanduser().absolute()
    if sum(x is not None for x in (folder, archive)) > 1 or (url is not None and (folder or archive)):
        raise ConfigError("give at most one source: a mirror URL, local archive(s), or a local folder")
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    hashes: dict[str, str | None] = {}
    single_hash: str | None = None
    if isinstance(known_hash, Mapping):
        hashes = {k: _normalise_hash(v, f"known_hash[{k!r}]") for k, v in known_hash.items()}
    else:
        single_hash = _normalise_hash(known_hash, "known_hash")

    sweep_stale(dest)  # a killed earlier unpack: its temporary folder (or the previous release, put back)
    if dest.exists() and not dest.is_dir():
        raise _err("destination exists and is not a folder", dest)
    occupied = dest.is_dir() and any(dest.iterdir())

    # ---- resolve the source into archive files (or a folder)
    sources: list[tuple[Path, str, str | None]] = []  # (file, label for messages, hash checked)
    source_kind: str
    if folder is not None:
        source_kind = "folder"
        folder = Path(folder)
        if not folder.is_dir():
            raise _err("source folder not found", folder)
    elif archive is not None:
        source_kind = "archive"
        paths = [Path(archive)] if isinstance(archive, (str, Path)) else [Path(a) for a in archive]
        if not paths:
            raise ConfigError("archive: empty list")
        for p in paths:
            if not p.is_file():
                raise _err("archive file not found", p)
            h = hashes.get(p.name)
            if h is None and len(paths) == 1:
                h = single_hash
            if h is None and len(paths) == 1 and len(release.files) == 1:
                h = release.files[0].known_hash
            if h is None:
                h = next((rf.known_hash for rf in release.files if rf.name == p.name), None)
            if h is not None:
                _verify_local_hash(p, h)
            else:
                _warn_no_hash(name, str(p), p, key=p.name if len(paths) > 1 else None)
            sources.append((p, str(p), h))
    else:
        source_kind = "url"
        if len(release.files) != 1 and url is not None:
            raise ConfigError(f"{name}: a mirror URL can only replace a single-file release")
        wanted = [
            (url or rf.url, hashes.get(rf.name) or single_hash or rf.known_hash) for rf in release.files
        ]
        if occupied and _already_fetched(dest, name, wanted, release.layout):
            log.info("%s: %s already holds this release (same URL and checksum); nothing to do", name, dest)
            return dest
        for rf in release.files:
            u = url or rf.url
            h = hashes.get(rf.name) or single_hash or rf.known_hash
            if h is None:
                log.warning("%s: no checksum pinned for %s", name, u)
            path = _download(rf, u, h, cache, progress=progress, timeout_s=timeout_s)
            if rf.size is not None and u == rf.url and path.stat().st_size != rf.size:
                raise _err(f"size {path.stat().st_size} differs from the release's {rf.size} bytes", path)
            if h is None:
                _warn_no_hash(name, u, path)
            sources.append((path, u, h))

    # ---- a release already in place?
    record: dict[str, Any] = {
        "dataset": name,
        "source_kind": source_kind,
        "sources": [
            {"source": label, "file": p.name, "size": p.stat().st_size, "known_hash": h, "sha256": None}
            for p, label, h in sources
        ],
        "citation": release.citation,
        "licence": release.licence,
    }
    if sources:
        for s, (p, _, _) in zip(record["sources"], sources):
            s["sha256"] = _file_sha256(p)
        record["sha256"] = ";".join(s["sha256"] for s in record["sources"])
    else:
        record["sha256"] = None
        record["sources"] = [{"source": str(folder), "file": None, "size": None, "known_hash": None, "sha256": None}]
    if occupied:
        if _existing_matches(dest, record):
            try:
                validate_layout(dest, release.layout, source=str(dest))
                log.info("%s: %s already holds this release; nothing to do", name, dest)
                return dest
            except DownloadError:
                pass
        if not force:
            raise _err(
                "destination is not empty and does not hold this release; remove it or use --force", dest
            )

    # ---- unpack/copy into a temporary folder beside dest; rename on success
    try:
        with atomic_dir(dest) as staging:
            if folder is not None:
                _copy_tree(folder, staging, link=link, progress=progress)
                _collapse_wrappers(staging)
                src_label = str(folder)
            else:
                tops = _layout_tops(release.layout)
                for p, label, _ in sources:
                    # "AnnotationsByMD.rar" may hold "400_senior/..." without its own folder:
                    # an archive named after a top-level folder of the layout unpacks into it
                    stem = p.name.split(".")[0]
                    into = staging / stem if stem.lower() in tops else staging
                    _unpack(p, into, source=label, progress=progress)
                _collapse_wrappers(staging)
                nested = _unpack_nested(staging, progress=progress)
                if nested:
                    record["nested_archives"] = nested
                    _collapse_wrappers(staging)
                src_label = ", ".join(label for _, label, _ in sources)
            missing = validate_layout(staging, release.layout, source=src_label)
            if missing:
                warnings.warn(f"{name}: {src_label}: recommended path(s) missing: {', '.join(missing)}", stacklevel=2)
            record["missing_recommended"] = missing
            record["fetched_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            write_json(staging / PROVENANCE_FILE, record)
    except OSError as e:
        raise _oserror(e, f"unpacking into {dest.parent}", dest) from None
    if source_kind == "url" and not keep_archive:
        for p, _, _ in sources:
            p.unlink(missing_ok=True)
    return dest


def _warn_no_hash(name: str, source: str, path: Path, key: str | None = None) -> None:
    sha = _file_sha256(path)
    where = f"data.datasets.{name}.download.known_hash" + (f": {{{key}: {sha}}}" if key else f": {sha}")
    warnings.warn(
        f"{name}: no checksum is published or pinned for {source}; it was not verified. "
        f"Pin it in params ({where}) to detect a changed or corrupted file next time",
        MissingChecksumWarning,
        stacklevel=3,
    )
