"""ISBI 2015 cephalometric challenge release (19 landmarks, 1935x2400 px, 0.1 mm/px).

Layout (after extracting the RAR archives; an extractor may add wrapper levels such as
``RawImage/RawImage/...``)::

    RawImage/{TrainingData,Test1Data,Test2Data}/NNN.{bmp,jpg,png}
    AnnotationsByMD/400_<annotator>/NNN.txt      (400_senior, 400_junior, 400_mean, ...)

Each ``.txt`` holds 19 lines ``x,y`` (integer pixels of the original image, origin at
the top-left pixel, ISBI landmark order), then classification lines that are ignored.
A file with fewer than 19 parsable coordinate lines is excluded and reported.

Source: Wang et al., "A benchmark for comparison of dental radiography analysis
algorithms", Medical Image Analysis 31 (2016); ISBI 2015 grand challenge release.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ...errors import DataError
from ...landmarks import ISBI19
from ..base import Adapter, AdapterResult, Exclusion, annotation_rows, assign_splits, find_child_dir, find_images
from ..fetch.layout import check_release_layout, prefixed_subdirs

__all__ = ["ISBI2015Adapter", "SPLIT_FOLDERS", "parse_isbi_txt"]

#: release folder -> split name
SPLIT_FOLDERS: dict[str, str] = {"TrainingData": "train", "Test1Data": "test1", "Test2Data": "test2"}

_XY = re.compile(r"^\s*([-+]?\d+(?:\.\d+)?)\s*[,;\s]\s*([-+]?\d+(?:\.\d+)?)\s*$")


def parse_isbi_txt(path: Path, n: int = 19) -> list[tuple[float, float]]:
    """The first ``n`` ``x,y`` lines of an ISBI annotation file, in file order.

    Returns:
        ``n`` (x, y) float pairs, original pixels.

    Raises:
        DataError: unreadable file, or one of the first ``n`` lines is not ``x,y``
            (the message gives the line number and its text).
    """
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise DataError(f"cannot read annotation: {e.strerror}", path) from None
    lines = text.splitlines()
    out = []
    for i in range(n):
        if i >= len(lines):
            raise DataError(f"only {len(lines)} lines; expected {n} 'x,y' landmark lines", path)
        m = _XY.match(lines[i])
        if not m:
            raise DataError(f"line {i + 1} is not 'x,y': {lines[i][:40]!r}", path)
        out.append((float(m.group(1)), float(m.group(2))))
    return out


class ISBI2015Adapter(Adapter):
    """Adapter ``isbi2015``.

    Options:
        spacing_mm: pixel spacing (default 0.1 mm/px, the release's value).
        device: device label (default ``"ISBI2015"``).
        annotators: list of annotator names to index (default: every ``400_<name>`` folder).
        split_overrides: re-assign some images to another split, e.g. ``{"valid": "131-150"}`` to
            hold a validation split out of TrainingData (the release has none). Every other image
            keeps its official split (``train``, ``test1``, ``test2``).
    """

    name = "isbi2015"
    version = "1"
    option_names = frozenset({"spacing_mm", "device", "annotators", "split_overrides"})

    def parse(self, root: str | Path, *, dataset: str | None = None, **options: Any) -> AdapterResult:
        self.check_options(options)
        root = Path(root)
        dataset = dataset or self.name
        spacing = float(options.get("spacing_mm", 0.1))
        device = str(options.get("device", "ISBI2015"))
        wanted = options.get("annotators")
        if not root.is_dir():
            raise DataError("ISBI 2015 root folder not found", root)
        raw = find_child_dir(root, "RawImage", max_depth=1)
        ann = find_child_dir(root, "AnnotationsByMD", max_depth=1)
        if raw is None or ann is None:
            raise DataError("not an ISBI 2015 release: expected RawImage/ and AnnotationsByMD/", root)
        result = AdapterResult(dataset, self.name, self.version, ISBI19, options=dict(options))

        images: dict[str, tuple[str, Path]] = {}
        for folder, split in SPLIT_FOLDERS.items():
            d = find_child_dir(raw, folder, max_depth=2)
            if d is None:
                continue
            for image_id, p in find_images(d).items():
                if image_id in images:
                    raise DataError(f"image id {image_id!r} in two split folders", p)
                images[image_id] = (split, p)
        if not images:
            raise DataError("no images under RawImage/{TrainingData,Test1Data,Test2Data}", raw)
        overrides = options.get("split_overrides")
        if overrides:
            official = {i: split for i, (split, _) in images.items()}
            moved = assign_splits(official, overrides, default="", source=root)
            images = {i: ((moved[i] or split), p) for i, (split, p) in images.items()}

        # the layout check `cephalo download` runs, on the folder holding the release
        if raw.parent == ann.parent:
            check_release_layout("isbi2015", raw.parent)
        ann_dirs = prefixed_subdirs(ann, "400_")
        if wanted is not None:
            missing = sorted(set(wanted) - set(ann_dirs))
            if missing:
                raise DataError(f"annotator folder(s) {['400_' + m for m in missing]} not found", ann)
            ann_dirs = {k: v for k, v in ann_dirs.items() if k in set(wanted)}
        if not ann_dirs:
            raise DataError("no AnnotationsByMD/400_<annotator>/ folders", ann)

        annotated: set[str] = set()
        for annotator, d in ann_dirs.items():
            for txt in sorted(d.glob("*.txt")):
                image_id = txt.stem
                if image_id not in images:
                    result.exclusions.append(Exclusion(str(txt), "annotation without an image", image_id, annotator))
                    continue
                try:
                    pts = parse_isbi_txt(txt, len(ISBI19))
                except DataError as e:
                    result.exclusions.append(
                        Exclusion(str(txt), f"malformed annotation: {str(e).split(': ', 1)[-1]}", image_id, annotator)
                    )
                    continue
                split, img = images[image_id]
                coords = {lm.name: pts[k] for k, lm in enumerate(ISBI19)}
                result.rows += annotation_rows(
                    dataset=dataset,
                    image_id=image_id,
                    split=split,
                    image_path=img.resolve(),
                    spacing=(spacing, spacing),
                    device=device,
                    annotator=annotator,
                    coords=coords,
                    catalogue=ISBI19,
                )
                annotated.add(image_id)
        for image_id in sorted(set(images) - annotated):
            result.exclusions.append(
                Exclusion(str(images[image_id][1]), "image without a usable annotation", image_id, None)
            )
        return result
