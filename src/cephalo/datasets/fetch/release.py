"""Fetch a data set release and unpack it, all or nothing (:func:`fetch_release`).

A *release* (:class:`~.spec.Release`, declared beside each data set's adapter and named in the
registry :data:`cephalo.datasets.DATASETS`) is the archive(s) a data set's authors publish: the
pinned URL, the published checksum (when there is one), the known size and the layout that the
unpacked files must have. :func:`fetch_release` gets the archive from one of three sources -- the
release URL or a mirror (downloaded with **pooch** into a cache, checksum verified, resumable:
:mod:`.http`), an archive already on disk, or a folder that already holds the unpacked release --
then unpacks it (:mod:`.archive`) into a temporary folder beside ``dest`` and renames that folder
onto ``dest`` only once the layout validates (:mod:`.layout`). Whatever goes wrong (HTTP error, an
HTML page served instead of the archive, a truncated body, a checksum mismatch, an unexpected
layout, a full disk), ``dest`` is left as it was and a :class:`cephalo.errors.DownloadError` names
the URL/file and the problem. Unpacking does not resume: it restarts in a fresh temporary folder.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import CephaloError, ConfigError, DownloadError
from ...io import atomic_dir, sweep_stale, write_json
from .. import get_release
from ._common import err, oserror
from .archive import copy_tree, unpack, unpack_nested
from .hashing import archive_sha256, normalise_hash, verify_local_hash
from .http import default_cache_dir, download
from .layout import collapse_wrappers, layout_tops, resolve_ci, validate_layout
from .spec import PROVENANCE_FILE, Layout

__all__ = ["fetch_release", "FetchSettings", "MissingChecksumWarning"]

log = logging.getLogger(__name__)


class MissingChecksumWarning(UserWarning):
    """A release file was fetched without a pinned checksum (nothing to verify it against)."""


@dataclass(frozen=True)
class FetchSettings:
    """How :func:`fetch_release` fetches its source (``data.datasets.<name>.download`` of the params).

    Attributes:
        cache_dir: download cache (``None``: :func:`default_cache_dir`).
        keep_archive: keep the downloaded archive in the cache (else deleted after unpacking).
        timeout_s: HTTP connect/read timeout in seconds.
        link: for ``folder`` sources, hard-link files instead of copying where possible.
    """

    cache_dir: str | Path | None = None
    keep_archive: bool = True
    timeout_s: float = 60.0
    link: bool = False


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
    force: bool = False,
    settings: FetchSettings | None = None,
) -> Path:
    """Fetch the release of data set ``name`` and unpack it into ``dest``, all or nothing.

    Exactly one source is used: ``folder`` (an already unpacked release: validated,
    then copied -- or hard-linked with ``settings.link``), else ``archive`` (archive file(s)
    on disk), else ``url`` (a mirror) or the release's pinned URL (downloaded with pooch
    into ``settings.cache_dir``, resumable, see :mod:`cephalo.datasets.fetch.http`).

    Args:
        name: release name, ``"aariz"`` or ``"isbi2015"`` (see :func:`cephalo.datasets.release_names`).
        dest: the folder to create; on success it holds the release's top-level
            entries (for Aariz ``dest/Aariz/{train,valid,test}/...``; for ISBI 2015
            ``dest/RawImage/...`` and ``dest/AnnotationsByMD/...``) and a provenance
            record ``dest/.cephalo-download.json`` (source, size, SHA-256, date).
        url: mirror URL instead of the release URL (the release checksum still applies).
        archive: local archive file, or several (ISBI 2015 ships ``RawImage.rar`` and
            ``AnnotationsByMD.rar`` separately); each is checksum-checked when a hash is
            known for it.
        folder: local folder that already holds the unpacked release: the folder holding its
            top-level folder(s) (``X`` with ``X/Aariz/...``) or that top-level folder itself
            (``.../Aariz``); its layout is checked before anything is copied.
        known_hash: ``"<alg>:<hex>"`` overriding/pinning the checksum of the (single)
            download or archive; or a mapping file name -> hash for several archives.
            ``None`` uses the release's published checksum; where there is none a
            :class:`MissingChecksumWarning` is issued with the SHA-256 to pin.
        progress: show tqdm progress bars (download, unpack, copy).
        force: replace an existing non-empty ``dest`` that is not this very release.
        settings: download cache, keeping the archive, HTTP timeout, hard links
            (:class:`FetchSettings`; its defaults when not given).

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
    fs = settings or FetchSettings()
    cache_dir, keep_archive, timeout_s, link = fs.cache_dir, fs.keep_archive, fs.timeout_s, fs.link
    # absolute: pooch's extractors read a relative extract_dir as relative to the archive's folder
    dest = Path(dest).absolute()
    cache_dir = None if cache_dir is None else Path(cache_dir).expanduser().absolute()
    if sum(x is not None for x in (folder, archive)) > 1 or (url is not None and (folder or archive)):
        raise ConfigError("give at most one source: a mirror URL, local archive(s), or a local folder")
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    hashes: dict[str, str | None] = {}
    single_hash: str | None = None
    if isinstance(known_hash, Mapping):
        hashes = {k: normalise_hash(v, f"known_hash[{k!r}]") for k, v in known_hash.items()}
    else:
        single_hash = normalise_hash(known_hash, "known_hash")

    sweep_stale(dest)  # a killed earlier unpack: its temporary folder (or the previous release, put back)
    if dest.exists() and not dest.is_dir():
        raise err("destination exists and is not a folder", dest)
    occupied = dest.is_dir() and any(dest.iterdir())

    # ---- resolve the source into archive files (or a folder)
    sources: list[tuple[Path, str, str | None]] = []  # (file, label for messages, hash checked)
    source_kind: str
    folder_top: str | None = None  # the folder given IS the release's top-level folder (".../Aariz")
    if folder is not None:
        source_kind = "folder"
        folder = Path(folder)
        if not folder.is_dir():
            raise err("source folder not found", folder)
        tops = layout_tops(release.layout)
        if folder.name.lower() in tops and not any(resolve_ci(folder, t) for t in tops):
            folder_top = folder.name
        # checked before anything is copied (a 4 GB copy must not end in a layout error)
        validate_layout(folder.parent if folder_top else folder, release.layout, source=str(folder))
    elif archive is not None:
        source_kind = "archive"
        paths = [Path(archive)] if isinstance(archive, (str, Path)) else [Path(a) for a in archive]
        if not paths:
            raise ConfigError("archive: empty list")
        for p in paths:
            if not p.is_file():
                raise err("archive file not found", p)
            h = hashes.get(p.name)
            if h is None and len(paths) == 1:
                h = single_hash
            if h is None and len(paths) == 1 and len(release.files) == 1:
                h = release.files[0].known_hash
            if h is None:
                h = next((rf.known_hash for rf in release.files if rf.name == p.name), None)
            if h is not None:
                verify_local_hash(p, h)
            else:
                _warn_no_hash(name, str(p), p, key=p.name if len(paths) > 1 else None)
            sources.append((p, str(p), h))
    else:
        source_kind = "url"
        if len(release.files) != 1 and url is not None:
            raise ConfigError(f"{name}: a mirror URL can only replace a single-file release")
        wanted = [(url or rf.url, hashes.get(rf.name) or single_hash or rf.known_hash) for rf in release.files]
        if occupied and _already_fetched(dest, name, wanted, release.layout):
            log.info("%s: %s already holds this release (same URL and checksum); nothing to do", name, dest)
            return dest
        for rf in release.files:
            u = url or rf.url
            h = hashes.get(rf.name) or single_hash or rf.known_hash
            if h is None:
                log.warning("%s: no checksum pinned for %s", name, u)
            path = download(rf, u, h, cache, progress=progress, timeout_s=timeout_s)
            if rf.size is not None and u == rf.url and path.stat().st_size != rf.size:
                raise err(f"size {path.stat().st_size} differs from the release's {rf.size} bytes", path)
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
        for s, (p, _, _) in zip(record["sources"], sources, strict=True):
            s["sha256"] = archive_sha256(p)
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
            raise err("destination is not empty and does not hold this release; remove it or use --force", dest)

    # ---- unpack/copy into a temporary folder beside dest; rename on success
    try:
        with atomic_dir(dest) as staging:
            if folder is not None:
                copy_tree(folder, staging / folder_top if folder_top else staging, link=link, progress=progress)
                collapse_wrappers(staging)
                src_label = str(folder)
            else:
                tops = layout_tops(release.layout)
                for p, label, _ in sources:
                    # "AnnotationsByMD.rar" may hold "400_senior/..." without its own folder:
                    # an archive named after a top-level folder of the layout unpacks into it
                    stem = p.name.split(".")[0]
                    into = staging / stem if stem.lower() in tops else staging
                    unpack(p, into, source=label, progress=progress)
                collapse_wrappers(staging)
                nested = unpack_nested(staging, progress=progress)
                if nested:
                    record["nested_archives"] = nested
                    collapse_wrappers(staging)
                src_label = ", ".join(label for _, label, _ in sources)
            missing = validate_layout(staging, release.layout, source=src_label)
            if missing:
                warnings.warn(f"{name}: {src_label}: recommended path(s) missing: {', '.join(missing)}", stacklevel=2)
            record["missing_recommended"] = missing
            record["fetched_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            write_json(staging / PROVENANCE_FILE, record)
    except OSError as e:
        raise oserror(e, f"unpacking into {dest.parent}", dest) from None
    if source_kind == "url" and not keep_archive:
        for p, _, _ in sources:
            p.unlink(missing_ok=True)
    return dest


def _warn_no_hash(name: str, source: str, path: Path, key: str | None = None) -> None:
    sha = archive_sha256(path)
    where = f"data.datasets.{name}.download.known_hash" + (f": {{{key}: {sha}}}" if key else f": {sha}")
    warnings.warn(
        f"{name}: no checksum is published or pinned for {source}; it was not verified. "
        f"Pin it in params ({where}) to detect a changed or corrupted file next time",
        MissingChecksumWarning,
        stacklevel=3,
    )
