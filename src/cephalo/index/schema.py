"""The landmark index schema (Parquet, long/tidy: one row per image x landmark x annotator).

Columns and types are those of ``docs/DESIGN.md``. File metadata (Parquet key
``b"cephalo"``, a JSON object): ``schema_version``, ``catalogue`` {key, names, symbols},
``source`` {dataset, adapter, adapter_version, root, options}, ``checksum``
(:func:`cephalo.index.index_hash` of the table), ``adapter_version``, ``policy``.
"""

from __future__ import annotations

import pyarrow as pa

__all__ = ["SCHEMA_VERSION", "SCHEMA", "COLUMNS", "KEY", "IMAGE_COLUMNS", "METADATA_KEY"]

#: bumped whenever a column is added, removed or changes meaning
SCHEMA_VERSION = 1

METADATA_KEY = b"cephalo"

SCHEMA = pa.schema(
    [
        pa.field("dataset", pa.string(), nullable=False),
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("image_path", pa.string(), nullable=False),
        pa.field("width", pa.int32(), nullable=False),
        pa.field("height", pa.int32(), nullable=False),
        pa.field("spacing_x_mm", pa.float64(), nullable=True),
        pa.field("spacing_y_mm", pa.float64(), nullable=True),
        pa.field("device", pa.string(), nullable=False),
        pa.field("annotator", pa.string(), nullable=False),
        pa.field("landmark_index", pa.int16(), nullable=False),
        pa.field("landmark_name", pa.string(), nullable=False),
        pa.field("landmark_symbol", pa.string(), nullable=False),
        pa.field("x", pa.float64(), nullable=True),
        pa.field("y", pa.float64(), nullable=True),
        pa.field("visible", pa.bool_(), nullable=False),
        pa.field("cvm_stage", pa.int8(), nullable=True),
    ]
)

COLUMNS: list[str] = SCHEMA.names

#: a row's identity; duplicates are an error
KEY: list[str] = ["dataset", "image_id", "annotator", "landmark_index"]

#: columns constant within one image
IMAGE_COLUMNS: list[str] = [
    "image_id",
    "split",
    "image_path",
    "width",
    "height",
    "spacing_x_mm",
    "spacing_y_mm",
    "device",
    "dataset",
]
