"""Resumable HTTP download into the pooch cache (no data-set knowledge).

An interrupted download keeps its bytes in ``<cache>/<file>.part``; the next call asks the server
for the rest with an HTTP ``Range: bytes=N-`` request. When the server answers ``206 Partial
Content`` the bytes are appended; when it answers ``200`` (no range support) the download restarts
from zero. The checksum is always computed over the whole file. A complete download stays in the
cache (pooch's ``known_hash`` check), so a second call with the same checksum does not download
again. HTTP errors, an HTML page served instead of the archive and a truncated body are each a
:class:`cephalo.errors.DownloadError` naming the URL.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

from ...errors import DownloadError
from ._common import CHUNK, err, one_line, oserror
from .archive import describe_head, sniff_archive
from .spec import ReleaseFile

__all__ = ["default_cache_dir", "download"]

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """Download cache: ``$CEPHALO_CACHE`` if set, else pooch's OS cache for ``cephalo``."""
    env = os.environ.get("CEPHALO_CACHE")
    if env:
        return Path(env).expanduser()
    import pooch

    return Path(pooch.os_cache("cephalo"))


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
            raise err(f"cannot connect: {type(e).__name__}: {one_line(e)}", url) from None
        with resp:
            if resp.status_code == 416 and offset and self.expected_size == offset:
                total = offset  # the part file is already complete
                mode = None
            elif resp.status_code == 416:
                part.unlink(missing_ok=True)
                raise err(
                    f"server refused to resume at byte {offset} (HTTP 416); the partial file was "
                    "discarded, run again to download from the start",
                    url,
                )
            elif resp.status_code == 206 and offset:
                start = _content_range_start(resp.headers.get("Content-Range", ""))
                if start != offset:
                    part.unlink(missing_ok=True)
                    raise err(
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
                    raise err(
                        f"the server sent an HTML page (Content-Type {ctype!r}), not an archive: "
                        f"{snippet[:80]!r}; check the URL or mirror (login/expired link?)",
                        url,
                    )
            else:
                raise err(f"HTTP {resp.status_code} {resp.reason or ''}".strip(), url)

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
                            chunk = resp.raw.read1(CHUNK, decode_content=False)
                            if not chunk:
                                break
                            f.write(chunk)
                            written += len(chunk)
                            bar.update(len(chunk))
                except _NETWORK_ERRORS as e:
                    raise err(
                        f"download interrupted after {written} bytes"
                        + (f" of {total}" if total else "")
                        + f" ({type(e).__name__}: {one_line(e)[:120]}); the partial file is kept at "
                        f"{part} and the next run resumes it",
                        url,
                    ) from None
                except OSError as e:
                    raise oserror(e, f"writing the download to {part}", url) from None
                finally:
                    bar.close()
                if total is not None and written != total:
                    raise err(
                        f"truncated download: got {written} of {total} bytes; the partial file is kept "
                        f"at {part} and the next run resumes it",
                        url,
                    )

        kind = sniff_archive(part)
        if kind in ("html", "json", "empty"):
            head = describe_head(part)
            part.unlink(missing_ok=True)
            raise err(
                f"the server sent {'an HTML page' if kind == 'html' else 'a ' + kind + ' body'}, "
                f"not an archive (starts {head}); check the URL or mirror",
                url,
            )
        size = part.stat().st_size
        if self.expected_size is not None and size != self.expected_size:
            if size < self.expected_size and self.last_total is None:
                raise err(
                    f"truncated download: got {size} of the release's {self.expected_size} bytes; the "
                    f"partial file is kept at {part} and the next run resumes it",
                    url,
                )
            part.unlink(missing_ok=True)
            raise err(
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


def _cache_name(rf: ReleaseFile, url: str, known_hash: str | None) -> str:
    if known_hash is None or url != rf.url:
        # No checksum (or a mirror): key the cache by URL so two sources never share a file.
        tag = hashlib.sha1(url.encode()).hexdigest()[:10]
        return f"{tag}-{rf.name}"
    return rf.name


def download(
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
        msg = one_line(e)
        if "hash" in msg.lower():
            raise err(f"checksum mismatch (the download was deleted): {msg}", url) from None
        raise err(msg, url) from None
    except OSError as e:
        raise oserror(e, f"saving the download in {cache_dir}", url) from None
    finally:
        logger.setLevel(old_level)
    return Path(path)
