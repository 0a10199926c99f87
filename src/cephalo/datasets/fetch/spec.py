"""What a release is: its published archives and the layout they unpack to (no I/O).

Each data set that publishes an archive declares one :class:`Release` beside its adapter
(``cephalo.datasets.<name>.release.RELEASE``) and names it in the registry
(:data:`cephalo.datasets.DATASETS`).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PROVENANCE_FILE", "ReleaseFile", "Layout", "Release"]

#: Name of the provenance record written inside every unpacked release.
PROVENANCE_FILE = ".cephalo-download.json"


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
        prefixed_dirs: ``(folder, prefix)`` pairs: ``folder`` must hold at least one folder whose
            name starts with ``prefix`` (any case), directly or under wrapper folders
            (:func:`cephalo.datasets.fetch.layout.prefixed_subdirs`), e.g. ISBI 2015's
            ``AnnotationsByMD/400_<annotator>/``.
        recommended: paths whose absence only warns (e.g. a test split that a partial
            copy may lack).
    """

    dirs: tuple[str, ...] = ()
    nonempty_dirs: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    any_of: tuple[tuple[str, ...], ...] = ()
    recommended: tuple[str, ...] = ()
    prefixed_dirs: tuple[tuple[str, str], ...] = ()


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
