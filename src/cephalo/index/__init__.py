"""The landmark index: Parquet schema, build/validate/write/read, ground-truth policies,
array views, provenance hash, and the data-quality report.

Knows no specific source (adapters live in :mod:`cephalo.datasets`). See ``docs/DESIGN.md``.
"""

from __future__ import annotations

from ..datasets import create_adapter
from ..errors import ConfigError
from .core import (
    build_index,
    ground_truth,
    images_table,
    index_hash,
    landmark_arrays,
    read_index,
    read_index_metadata,
    recorded_policy,
    spacing_outliers,
    validate_index,
    write_index,
)
from .quality import quality_report, write_quality_report
from .schema import COLUMNS, KEY, SCHEMA, SCHEMA_VERSION

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "COLUMNS",
    "KEY",
    "build_index",
    "validate_index",
    "write_index",
    "read_index",
    "read_index_metadata",
    "recorded_policy",
    "index_hash",
    "ground_truth",
    "landmark_arrays",
    "images_table",
    "spacing_outliers",
    "quality_report",
    "write_quality_report",
    "index_dataset",
]


def index_dataset(name: str, spec: dict, root, out, report_dir=None, *, progress: bool = True):
    """Parse, build, write the index and (optionally) the quality report, from a params entry.

    Args:
        name: data set name (``params["data"]["datasets"]`` key).
        spec: ``{"adapter": ..., "policy": ..., "options": {...}, "drop_out_of_image": bool,
            "require_spacing": bool, "hash_images": bool, "allow_implausible_spacing": bool}``.
        root: release root; out: index ``.parquet`` path; report_dir: folder for
            ``quality.json``/``quality.md``.

    Returns:
        (index DataFrame, report dict or None).

    Raises:
        ConfigError: bad spec; DataError: bad data (nothing is written then).
    """
    if not isinstance(spec, dict) or "adapter" not in spec:
        raise ConfigError(f"params: data.datasets.{name} needs an 'adapter' entry")
    known = {
        "adapter",
        "policy",
        "options",
        "drop_out_of_image",
        "require_spacing",
        "hash_images",
        "download",
        "allow_implausible_spacing",
    }
    unknown = sorted(set(spec) - known)
    if unknown:
        raise ConfigError(f"params: data.datasets.{name}: unknown key(s) {unknown}; valid: {sorted(known)}")
    try:
        adapter = create_adapter(spec["adapter"])
    except ValueError as e:
        raise ConfigError(f"params: data.datasets.{name}.adapter: {e}") from None
    result = adapter.parse(root, dataset=name, **(spec.get("options") or {}))
    df = build_index(
        result,
        root,
        drop_out_of_image=bool(spec.get("drop_out_of_image", False)),
        require_spacing=bool(spec.get("require_spacing", True)),
        policy=spec.get("policy"),
        progress=progress,
        allow_implausible_spacing=bool(spec.get("allow_implausible_spacing", False)),
    )
    report = None
    if report_dir is not None:
        report = quality_report(
            df, result.exclusions, result.problems, hash_images=bool(spec.get("hash_images", True)), progress=progress
        )
    write_index(df, out)
    if report is not None:
        write_quality_report(report, report_dir)
    return df, report
