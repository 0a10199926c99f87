"""The layout check of a release: the one function ``cephalo download`` and ``cephalo index`` share.

:func:`validate_layout` checks an unpacked tree against a :class:`~.spec.Layout` (names matched
case-insensitively); :func:`check_release_layout` runs it, for ``cephalo index``, with the layout of a
registered release. :func:`collapse_wrappers` removes the wrapper levels extractors add.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from ...errors import CephaloError, DataError, DownloadError
from .. import get_release
from ._common import err
from .spec import PROVENANCE_FILE, Layout

__all__ = [
    "validate_layout",
    "check_release_layout",
    "resolve_ci",
    "collapse_wrappers",
    "layout_tops",
    "prefixed_subdirs",
]

#: wrapper folder levels tolerated above prefixed folders (``AnnotationsByMD/<wrapper>/400_senior``)
MAX_WRAPPERS = 2


def collapse_wrappers(root: Path) -> None:
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


def layout_tops(layout: Layout) -> set[str]:
    """Lower-case names of the top-level folders a layout mentions (``{"rawimage", ...}``)."""
    paths = (
        layout.dirs
        + layout.nonempty_dirs
        + layout.files
        + layout.recommended
        + tuple(p for g in layout.any_of for p in g)
    )
    return {p.split("/", 1)[0].lower() for p in paths if "/" in p or p in layout.dirs + layout.nonempty_dirs}


def _has_file(d: Path) -> bool:
    return any(files for _, _, files in os.walk(d))


def prefixed_subdirs(folder: str | Path, prefix: str, max_wrappers: int = MAX_WRAPPERS) -> dict[str, Path]:
    """The folders in ``folder`` whose names start with ``prefix`` (any case), keyed by the rest of
    the name in lower case (``{"senior": .../400_senior}``), found directly or, when there are none,
    under up to ``max_wrappers`` levels of wrapper folders (the first level that has any wins).
    Empty when there are none (or ``folder`` is not a folder)."""
    found: dict[str, Path] = {}
    frontier = [Path(folder)]
    p = prefix.lower()
    for _ in range(max_wrappers + 1):
        nxt = []
        for d in frontier:
            try:
                children = sorted(x for x in d.iterdir() if x.is_dir())
            except (FileNotFoundError, NotADirectoryError):
                continue
            for c in children:
                if c.name.lower().startswith(p) and len(c.name) > len(p):
                    found.setdefault(c.name[len(p) :].lower(), c)
                else:
                    nxt.append(c)
        if found:
            break
        frontier = nxt
    return found


def resolve_ci(root: str | Path, rel: str) -> Path | None:
    """``root / rel`` with every component matched case-insensitively (``Aariz/Train`` for
    ``Aariz/train``); an exact match wins; an extractor's wrapper level (``RawImage/RawImage/
    TrainingData`` for ``RawImage/TrainingData``) is looked through, so that ``cephalo index``
    accepts what ``cephalo download`` would collapse. ``None`` when a component is missing."""
    node = Path(root)
    for i, part in enumerate(PurePosixPath(rel).parts):
        match = _child_ci(node, part)
        if match is None and i > 0:  # an extractor's wrapper level X/X/... (what collapse_wrappers removes)
            wrapper = _child_ci(node, node.name)
            match = _child_ci(wrapper, part) if wrapper is not None and wrapper.is_dir() else None
        if match is None:
            return None
        node = match
    return node


def _child_ci(node: Path, part: str) -> Path | None:
    exact = node / part
    if exact.exists():
        return exact
    try:
        return next((c for c in sorted(node.iterdir()) if c.name.lower() == part.lower()), None)
    except (FileNotFoundError, NotADirectoryError):
        return None


def validate_layout(
    root: str | Path, layout: Layout, *, source: str, error: type[CephaloError] = DownloadError
) -> list[str]:
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
    for rel, prefix in layout.prefixed_dirs:
        d = resolve_ci(root, rel)
        if d is not None and d.is_dir() and not prefixed_subdirs(d, prefix):
            missing.append(f"{rel}/{prefix}<name>/")
    if missing:
        found = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir() if p.name != PROVENANCE_FILE)
        shown = ", ".join(missing[:6]) + (f" (+{len(missing) - 6} more)" if len(missing) > 6 else "")
        msg = f"unexpected layout: missing {shown}; top-level entries found: {found[:10] or 'none'}"
        raise err(msg, source) if error is DownloadError else error(msg, source)
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
    root = Path(root)
    layout = get_release(name).layout
    paths = layout.dirs + layout.nonempty_dirs + layout.files
    top = PurePosixPath(paths[0]).parts[0] if paths else None
    if top and resolve_ci(root, top) is None and root.name.lower() == top.lower():
        root = root.parent  # given the release folder itself
    return validate_layout(root, layout, source=str(root), error=DataError)
