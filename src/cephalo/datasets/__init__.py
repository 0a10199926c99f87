"""Data set adapters: parse a source release into long landmark rows (no resizing, no torch).

Registry: :data:`ADAPTERS` (name -> ``"module:Class"``, imported on demand) and
:func:`create_adapter`. Adapters: ``aariz``, ``isbi2015``, ``cldetection2023``, ``labelme``,
``csv``. Layouts and formats: each module's docstring and ``docs/DESIGN.md``.
"""

from __future__ import annotations

import importlib

from .base import Adapter, AdapterResult, Exclusion, ImageProblem, assign_splits

__all__ = ["ADAPTERS", "create_adapter", "Adapter", "AdapterResult", "Exclusion", "ImageProblem",
           "assign_splits"]

#: adapter name -> "module:Class" (relative to cephalo.datasets)
ADAPTERS: dict[str, str] = {
    "aariz": "aariz:AarizAdapter",
    "isbi2015": "isbi2015:ISBI2015Adapter",
    "cldetection2023": "cldetection2023:CLDetection2023Adapter",
    "labelme": "labelme:LabelMeAdapter",
    "csv": "csv_table:CSVAdapter",
}


def create_adapter(name: str) -> Adapter:
    """Instantiate the adapter registered as ``name``.

    Raises:
        ValueError: unknown name; the message lists the valid names.
    """
    try:
        target = ADAPTERS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown dataset adapter {name!r}; valid: {sorted(ADAPTERS)}") from None
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)()
