"""Aariz release (29 landmarks, 7 devices, per-image pixel size, CVM stages).

Layout (figshare DOI 10.6084/m9.figshare.27986417.v1, zip root ``Aariz/``)::

    Aariz/{train,valid,test}/Cephalograms/<id>.{png,jpg,jpeg,bmp}
    Aariz/{split}/Annotations/Cephalometric Landmarks/{Senior,Junior} Orthodontists/<id>.json
    Aariz/{split}/Annotations/CVM Stages/<id>.json
    Aariz/cephalogram_machine_mappings.csv   (may start with a UTF-8 BOM)

``root`` may be the folder holding ``Aariz/`` or ``Aariz/`` itself; folder names are
matched case-insensitively (the official loader's ``Train/Valid/Test`` also works).
Landmarks are matched by ``landmark_id``, then by ``symbol`` -- never by list position.
Both annotators are indexed (``annotator`` = ``senior`` / ``junior``). A landmark file
with duplicated, missing or unknown landmarks is excluded and reported.

Source: Khalid et al., "Aariz: a benchmark dataset for automatic cephalometric landmark
detection and CVM stage classification", arXiv 2302.07797 / Scientific Data 12, 1336 (2025).
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
from pathlib import Path
from typing import Any

from ...errors import DataError
from ...landmarks import AARIZ29
from ..base import (
    Adapter,
    AdapterResult,
    Exclusion,
    ImageProblem,
    annotation_rows,
    find_child_dir,
    find_images,
    image_header,
)
from ..fetch.layout import check_release_layout

__all__ = ["AarizAdapter", "read_machine_mappings", "parse_landmark_json", "find_aariz_root"]

SPLITS = ("train", "valid", "test")
ANNOTATORS = {"senior": "Senior Orthodontists", "junior": "Junior Orthodontists"}
CSV_NAME = "cephalogram_machine_mappings.csv"
_FORMAT_ALIASES = {"jpg": "jpeg", "jpeg": "jpeg", "png": "png", "bmp": "bmp", "tif": "tiff", "tiff": "tiff"}


def find_aariz_root(root: Path) -> Path:
    """The ``Aariz/`` folder: ``root`` itself if it holds the split folders, else ``root/Aariz``.

    Raises:
        DataError: neither layout is found.
    """
    if not root.is_dir():
        raise DataError("Aariz root folder not found", root)
    if any(find_child_dir(root, s, max_depth=0) for s in SPLITS):
        return root
    inner = find_child_dir(root, "Aariz", max_depth=0)
    if inner is not None and any(find_child_dir(inner, s, max_depth=0) for s in SPLITS):
        return inner
    raise DataError("not an Aariz release: no {train,valid,test}/ folders here or under Aariz/", root)


def read_machine_mappings(path: Path) -> dict[str, dict[str, str]]:
    """Rows of ``cephalogram_machine_mappings.csv`` by ``cephalogram_id`` (BOM tolerated).

    Returns:
        id -> {"machine", "pixel_size", "image_format", "mode"} (strings, stripped).

    Raises:
        DataError: unreadable file or missing columns.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read machine mappings: {e}", path) from None
    reader = csv.DictReader(text.splitlines())
    fields = [f.strip().lower() for f in (reader.fieldnames or [])]
    need = {"cephalogram_id", "machine", "pixel_size"}
    if not need <= set(fields):
        raise DataError(f"machine mappings lack column(s) {sorted(need - set(fields))}; header {fields}", path)
    out = {}
    for row in reader:
        row = {str(k).strip().lower(): (v or "").strip() for k, v in row.items() if k is not None}
        out[row["cephalogram_id"]] = row
    return out


def parse_landmark_json(path: Path) -> tuple[dict[str, tuple[float, float]], list[str], list[str], list[str]]:
    """Parse an Aariz landmark JSON, matching by ``landmark_id`` then ``symbol``.

    Returns:
        (coords name -> (x, y) original pixels, duplicated names, missing names,
        unknown entries) -- the caller decides what to exclude.

    Raises:
        DataError: unreadable JSON or no ``landmarks`` list.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as e:
        raise DataError(f"unreadable landmark JSON: {e}".replace("\n", " "), path) from None
    items = data.get("landmarks") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise DataError("landmark JSON has no 'landmarks' list", path)
    by_id = {lm.source_id: lm for lm in AARIZ29}
    by_symbol = {lm.symbol: lm for lm in AARIZ29}
    coords: dict[str, tuple[float, float]] = {}
    dups, unknown = [], []
    for it in items:
        if not isinstance(it, dict):
            unknown.append(repr(it)[:40])
            continue
        lm = by_id.get(str(it.get("landmark_id", ""))) or by_symbol.get(str(it.get("symbol", "")))
        if lm is None:
            unknown.append(str(it.get("symbol") or it.get("title") or it.get("landmark_id")))
            continue
        v = it.get("value") or {}
        try:
            xy = (float(v["x"]), float(v["y"]))
        except (KeyError, TypeError, ValueError):
            xy = (math.nan, math.nan)
        if lm.name in coords:
            dups.append(lm.symbol)
        coords[lm.name] = xy
    missing = [lm.symbol for lm in AARIZ29 if lm.name not in coords or any(map(math.isnan, coords[lm.name]))]
    return coords, sorted(set(dups)), missing, unknown


def _cvm_stage(path: Path) -> int | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
        v = data["cvm_stage"]["value"]
        stage = int(v)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"unreadable CVM stage JSON ({type(e).__name__})", path) from None
    if not 1 <= stage <= 6:
        raise DataError(f"CVM stage {stage} outside 1..6", path)
    return stage


class AarizAdapter(Adapter):
    """Adapter ``aariz``.

    Options:
        annotators: subset of ``senior``/``junior`` (default both).
        missing_spacing: ``"error"`` (default) or ``"exclude"``. An image without a row in
            ``cephalogram_machine_mappings.csv``, or whose ``pixel_size`` is empty, not a number,
            zero or negative, has no millimetre scale. By default that is a :class:`DataError`
            naming the image and the CSV (an evaluation in mm over silently fewer images would not
            be comparable with published Aariz figures); ``"exclude"`` drops such images and lists
            each one in the quality report's exclusions.
    """

    name = "aariz"
    version = "1"
    option_names = frozenset({"annotators", "missing_spacing"})

    def parse(self, root: str | Path, *, dataset: str | None = None, **options: Any) -> AdapterResult:
        self.check_options(options)
        base = find_aariz_root(Path(root))
        dataset = dataset or self.name
        wanted = list(options.get("annotators", list(ANNOTATORS)))
        on_missing = str(options.get("missing_spacing", "error"))
        if on_missing not in ("error", "exclude"):
            raise DataError(f"option missing_spacing must be 'error' or 'exclude', got {on_missing!r}", base)
        bad = sorted(set(wanted) - set(ANNOTATORS))
        if bad:
            raise DataError(f"unknown Aariz annotator(s) {bad}; valid: {sorted(ANNOTATORS)}", base)
        csv_path = next((p for p in base.iterdir() if p.name.lower() == CSV_NAME), None)
        if csv_path is None:
            raise DataError(f"{CSV_NAME} not found (pixel sizes and devices come from it)", base)
        # the same layout check as `cephalo download aariz` (case-insensitive names)

        check_release_layout("aariz", base)
        mapping = read_machine_mappings(csv_path)
        result = AdapterResult(dataset, self.name, self.version, AARIZ29, options=dict(options))

        for split in SPLITS:
            sdir = find_child_dir(base, split, max_depth=0)
            if sdir is None:
                continue
            cdir = find_child_dir(sdir, "Cephalograms", max_depth=0)
            adir = find_child_dir(sdir, "Annotations", max_depth=0)
            if cdir is None or adir is None:
                raise DataError("split folder lacks Cephalograms/ or Annotations/", sdir)
            ldir = find_child_dir(adir, "Cephalometric Landmarks", max_depth=0)
            cvm_dir = find_child_dir(adir, "CVM Stages", max_depth=0)
            for image_id, img in find_images(cdir).items():
                meta = mapping.get(image_id)
                problem = None
                px = math.nan
                if meta is None:
                    problem = f"no row in {csv_path} (no pixel size/device)"
                else:
                    with contextlib.suppress(ValueError):
                        px = float(meta["pixel_size"])
                    if not (math.isfinite(px) and px > 0):
                        problem = f"invalid pixel_size {meta['pixel_size']!r} in {csv_path}"
                if problem is not None:
                    if on_missing == "error":
                        raise DataError(
                            f"{problem}; fix the CSV, or set the adapter option "
                            "missing_spacing: exclude to leave such images out",
                            img,
                        )
                    result.exclusions.append(Exclusion(str(img), problem.replace(str(csv_path), CSV_NAME), image_id))
                    continue
                self._check_image(img, image_id, split, meta, result)
                cvm = None
                if cvm_dir is not None and (cvm_dir / f"{image_id}.json").is_file():
                    try:
                        cvm = _cvm_stage(cvm_dir / f"{image_id}.json")
                    except DataError as e:
                        result.problems.append(ImageProblem(str(e.path), str(e).split(": ", 1)[-1], image_id))
                n_ok = 0
                for annotator in wanted:
                    adir2 = None if ldir is None else find_child_dir(ldir, ANNOTATORS[annotator], max_depth=0)
                    jpath = None if adir2 is None else adir2 / f"{image_id}.json"
                    if jpath is None or not jpath.is_file():
                        result.exclusions.append(
                            Exclusion(str(img), f"no {annotator} landmark file", image_id, annotator)
                        )
                        continue
                    try:
                        coords, dups, missing, unknown = parse_landmark_json(jpath)
                    except DataError as e:
                        result.exclusions.append(Exclusion(str(jpath), str(e).split(": ", 1)[-1], image_id, annotator))
                        continue
                    reasons = []
                    if dups:
                        reasons.append(f"duplicated landmarks {dups}")
                    if missing:
                        reasons.append(f"missing landmarks {missing}")
                    if unknown:
                        reasons.append(f"unknown landmarks {unknown}")
                    if reasons:
                        result.exclusions.append(
                            Exclusion(
                                str(jpath), "; ".join(reasons), image_id, annotator, tuple(dups + missing + unknown)
                            )
                        )
                        continue
                    result.rows += annotation_rows(
                        dataset=dataset,
                        image_id=image_id,
                        split=split,
                        image_path=img.resolve(),
                        spacing=(px, px),
                        device=meta.get("machine", "") or "unknown",
                        annotator=annotator,
                        coords=coords,
                        catalogue=AARIZ29,
                        cvm_stage=cvm,
                    )
                    n_ok += 1
                if n_ok == 0:
                    result.exclusions.append(Exclusion(str(img), "image without a usable annotation", image_id))
        if not result.rows and not result.exclusions:
            raise DataError("no Aariz images found under {train,valid,test}/Cephalograms/", base)
        return result

    @staticmethod
    def _check_image(img: Path, image_id: str, split: str, meta: dict, result: AdapterResult) -> None:
        ext = _FORMAT_ALIASES.get(img.suffix.lower().lstrip("."), img.suffix.lower())
        declared = meta.get("image_format", "").lower().lstrip(".")
        if declared and _FORMAT_ALIASES.get(declared, declared) != ext:
            result.problems.append(
                ImageProblem(
                    str(img),
                    f"image_format mismatch: {CSV_NAME} says {declared!r}, file is {img.suffix.lstrip('.')!r}",
                    image_id,
                )
            )
        _, _, fmt = image_header(img)
        if fmt and _FORMAT_ALIASES.get(fmt.lower(), fmt.lower()) != ext:
            result.problems.append(
                ImageProblem(str(img), f"content is {fmt} but extension is {img.suffix!r}", image_id)
            )
        mode = meta.get("mode", "").lower()
        if mode and mode != split:
            result.problems.append(
                ImageProblem(str(img), f"{CSV_NAME} says mode {mode!r} but the image is in {split}/", image_id)
            )
