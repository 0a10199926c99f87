"""Data sets: parse a source release into long landmark rows (no resizing, no torch), and fetch it.

One home per data set: ``cephalo/datasets/<name>/`` holds its adapter (``adapter.py``) and, where
the authors publish an archive, its release spec and layout (``release.py``) and the writer of its
synthetic demo tree (``demo.py``). The generic download/unpack machinery is :mod:`.fetch`.

Registry: :data:`DATASETS` (name -> :class:`DataSet`, its modules imported on demand),
:func:`create_adapter`, :func:`release_names` and :func:`get_release`. Data sets: ``aariz``,
``isbi2015``, ``cldetection2023``, ``labelme``, ``csv``. Layouts and formats: each adapter's
docstring and ``docs/DESIGN.md``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, NamedTuple

from .base import Adapter, AdapterResult, Exclusion, ImageProblem, assign_splits

if TYPE_CHECKING:
    from .fetch.spec import Release

__all__ = [
    "DATASETS",
    "DataSet",
    "create_adapter",
    "release_names",
    "get_release",
    "Adapter",
    "AdapterResult",
    "Exclusion",
    "ImageProblem",
    "assign_splits",
]


class DataSet(NamedTuple):
    """Where a data set's code lives: ``"module:attribute"``, relative to :mod:`cephalo.datasets`.

    Attributes:
        adapter: its :class:`Adapter` subclass.
        release: its :class:`~cephalo.datasets.fetch.spec.Release` (``cephalo download``), or
            ``None`` when there is no public archive to fetch.
    """

    adapter: str
    release: str | None = None


#: data set (adapter) name -> its adapter and release; adding a data set adds one line here
DATASETS: dict[str, DataSet] = {
    "aariz": DataSet("aariz.adapter:AarizAdapter", release="aariz.release:RELEASE"),
    "isbi2015": DataSet("isbi2015.adapter:ISBI2015Adapter", release="isbi2015.release:RELEASE"),
    "cldetection2023": DataSet("cldetection2023.adapter:CLDetection2023Adapter"),
    "labelme": DataSet("labelme.adapter:LabelMeAdapter"),
    "csv": DataSet("csv_table.adapter:CSVAdapter"),
}


def _load(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), attr)


def create_adapter(name: str) -> Adapter:
    """Instantiate the adapter registered as ``name``.

    Raises:
        ValueError: unknown name; the message lists the valid names.
    """
    try:
        target = DATASETS[name].adapter
    except (KeyError, TypeError):
        raise ValueError(f"unknown dataset adapter {name!r}; valid: {sorted(DATASETS)}") from None
    return _load(target)()


def release_names() -> list[str]:
    """Names of the data sets with a release to fetch (``cephalo download``), sorted."""
    return sorted(name for name, entry in DATASETS.items() if entry.release)


def get_release(name: str) -> Release:
    """The :class:`~cephalo.datasets.fetch.spec.Release` of data set ``name``.

    Raises:
        ValueError: unknown name, or a data set without a release (the message lists the valid names).
    """
    entry = DATASETS.get(name) if isinstance(name, str) else None
    if entry is None or entry.release is None:
        raise ValueError(f"unknown data set release {name!r}; valid: {', '.join(release_names())}")
    return _load(entry.release)
