"""Generic landmark table (CSV) for users' own data.

One row per image x landmark (x annotator)::

    image_path,landmark,x,y[,annotator][,split][,spacing_x_mm,spacing_y_mm][,device][,image_id]
    images/p001.png,sella,812.0,951.5,senior,train,0.1,0.1,MyCeph 3000,p001

- ``image_path``: relative to the CSV file's folder, or absolute.
- ``landmark``: canonical name, symbol or title in ``catalogue`` (option; when no
  catalogue is given the landmarks are the table's own names, in first-appearance order).
- ``x``, ``y``: original-image pixels, origin at the centre of the top-left pixel;
  empty or ``nan`` = missing landmark (NaN); ``inf`` is an error.
- One image id has one image file and one split (rows that disagree are a ``DataError``).
- ``annotator`` (default ``"default"``), ``split`` (else the ``splits`` option),
  ``spacing_x_mm``/``spacing_y_mm`` (else the ``spacing_mm`` option), ``device``
  (else the ``device`` option), ``image_id`` (else the image file stem).

``root`` is the CSV file, or a folder holding it (option ``file``, default ``landmarks.csv``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ...errors import ConfigError, DataError
from ...landmarks import Catalogue, Landmark, catalogue_from_params
from ..base import Adapter, AdapterResult, Exclusion, annotation_rows, assign_splits
from ..labelme.adapter import parse_spacing

__all__ = ["CSVAdapter", "REQUIRED_COLUMNS", "OPTIONAL_COLUMNS"]

REQUIRED_COLUMNS = ("image_path", "landmark", "x", "y")
OPTIONAL_COLUMNS = ("annotator", "split", "spacing_x_mm", "spacing_y_mm", "device", "image_id")


class CSVAdapter(Adapter):
    """Adapter ``csv``. Options: ``file``, ``catalogue``, ``spacing_mm``, ``device``,
    ``splits``, ``default_split`` (see the module docstring)."""

    name = "csv"
    version = "1"
    option_names = frozenset({"file", "catalogue", "spacing_mm", "device", "splits", "default_split"})

    def parse(self, root: str | Path, *, dataset: str | None = None, **options: Any) -> AdapterResult:
        import pandas as pd

        self.check_options(options)
        root = Path(root)
        dataset = dataset or self.name
        path = root / options.get("file", "landmarks.csv") if root.is_dir() else root
        if not path.is_file():
            raise DataError("landmark table not found", path)
        try:
            table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        except (OSError, ValueError, UnicodeDecodeError) as e:
            raise DataError(f"unreadable CSV: {e}".replace("\n", " "), path) from None
        if not table.index.equals(pd.RangeIndex(len(table))):  # pandas made column 1 the index
            raise DataError("rows have more fields than the header (unquoted commas?)", path)
        table.columns = [c.strip() for c in table.columns]
        missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
        if missing:
            raise DataError(f"missing column(s) {missing}; required {list(REQUIRED_COLUMNS)}", path)
        for c in table.columns:
            table[c] = table[c].str.strip()

        if options.get("catalogue") is not None:
            catalogue = catalogue_from_params(options["catalogue"])
        else:
            names = list(dict.fromkeys(table["landmark"]))
            catalogue = Catalogue("custom", tuple(Landmark(n, n, n) for n in names))

        def num(col: str, i: int) -> float:
            v = table.at[i, col]
            if v == "":
                return math.nan
            try:
                f = float(v)
            except ValueError:
                raise DataError(f"row {i + 2}: column {col!r} is not a number: {v!r}", path) from None
            if math.isinf(f):
                raise DataError(f"row {i + 2}: column {col!r} is not finite: {v!r}", path)
            return f  # "nan" = missing, like an empty cell

        default_spacing = None
        has_spacing_cols = {"spacing_x_mm", "spacing_y_mm"} <= set(table.columns)
        if not has_spacing_cols:
            default_spacing = parse_spacing(options.get("spacing_mm"), f"{path} (no spacing columns)")

        result = AdapterResult(dataset, self.name, self.version, catalogue, options=dict(options))
        groups: dict[tuple[str, str], dict] = {}
        for i in range(len(table)):
            img = Path(table.at[i, "image_path"])
            img = img if img.is_absolute() else (path.parent / img)
            image_id = table.at[i, "image_id"] if "image_id" in table.columns and table.at[i, "image_id"] else img.stem
            annotator = (
                table.at[i, "annotator"] if "annotator" in table.columns and table.at[i, "annotator"] else "default"
            )
            try:
                lm = catalogue.lookup(table.at[i, "landmark"])
            except KeyError:
                raise DataError(
                    f"row {i + 2}: landmark {table.at[i, 'landmark']!r} is not in catalogue {catalogue.key!r}", path
                ) from None
            g = groups.setdefault(
                (image_id, annotator),
                {
                    "image_path": img.resolve(),
                    "coords": {},
                    "dups": [],
                    "split": table.at[i, "split"] if "split" in table.columns else "",
                    "spacing": (
                        (num("spacing_x_mm", i), num("spacing_y_mm", i)) if has_spacing_cols else default_spacing
                    ),
                    "device": (
                        table.at[i, "device"]
                        if "device" in table.columns and table.at[i, "device"]
                        else str(options.get("device", dataset))
                    ),
                    "row": i + 2,
                },
            )
            if g["image_path"] != img.resolve():
                raise DataError(
                    f"row {i + 2}: image {image_id!r} is also {g['image_path'].name} "
                    f"(row {g['row']}): one image id, two files",
                    path,
                )
            split_i = table.at[i, "split"] if "split" in table.columns else ""
            if split_i != g["split"]:
                raise DataError(
                    f"row {i + 2}: image {image_id!r} is in split {split_i!r} here but in "
                    f"{g['split']!r} in row {g['row']}: an image belongs to one split",
                    path,
                )
            if lm.name in g["coords"]:
                g["dups"].append(lm.symbol)
            g["coords"][lm.name] = (num("x", i), num("y", i))

        first: dict[str, dict] = {}
        for (image_id, _), g in groups.items():  # across annotators: one file, one split per image
            f = first.setdefault(image_id, g)
            if f["image_path"] != g["image_path"]:
                raise DataError(
                    f"row {g['row']}: image {image_id!r} is also {f['image_path'].name} "
                    f"(row {f['row']}): one image id, two files",
                    path,
                )
            if f["split"] != g["split"]:
                raise DataError(
                    f"row {g['row']}: image {image_id!r} is in split {g['split']!r} here but in "
                    f"{f['split']!r} in row {f['row']}: an image belongs to one split",
                    path,
                )
        ids = sorted({k[0] for k in groups})
        if "split" in table.columns and all(g["split"] for g in groups.values()):
            split_of = {k[0]: g["split"] for k, g in groups.items()}
        else:
            if not options.get("splits") and options.get("default_split") is None:
                raise ConfigError(f"{path}: no 'split' column values; give options 'splits' or 'default_split'")
            split_of = assign_splits(ids, options.get("splits"), options.get("default_split"), path)
        for (image_id, annotator), g in groups.items():
            if g["dups"]:
                result.exclusions.append(
                    Exclusion(
                        str(path),
                        f"image {image_id!r} annotator {annotator!r}: duplicated landmarks {sorted(set(g['dups']))}",
                        image_id,
                        annotator,
                        tuple(sorted(set(g["dups"]))),
                    )
                )
                continue
            sx, sy = g["spacing"]
            result.rows += annotation_rows(
                dataset=dataset,
                image_id=image_id,
                split=split_of[image_id],
                image_path=g["image_path"],
                spacing=(None if math.isnan(sx) else sx, None if math.isnan(sy) else sy),
                device=g["device"],
                annotator=annotator,
                coords=g["coords"],
                catalogue=catalogue,
            )
        return result
