"""LabelMe point annotations, one folder per annotator (how clinics annotate their own images).

LabelMe JSON (https://github.com/wkentaro/labelme): ``{"shapes": [{"label", "points": [[x, y]],
"shape_type": "point"}], "imagePath", "imageData" (base64 or null), "imageHeight", "imageWidth"}``.
Point coordinates are image pixels, origin top-left (integer values = pixel centres).

Images are found, in order: ``imagePath`` relative to the JSON file (LabelMe's rule); the JSON
file's stem in the ``images`` folder; the embedded ``imageData``, decoded once into
``image_cache`` (the JSON's ``imagePath`` is often stale in the wild).
The label -> landmark map is an option. An annotation with duplicated or missing labels, or
NaN/Infinity coordinates, is excluded and reported with the labels concerned -- never is one of
two duplicates picked. An annotation whose ``imageWidth``/``imageHeight`` disagree with the
image's size (EXIF orientation applied) is excluded and reported: it was made on another
version of the image. A point outside the image (or one ``cephalo predict`` clipped to the border
and flagged :data:`OUTSIDE_FLAG`, not moved since) is indexed as missing and reported per image in
the quality report's image problems -- the folder is never refused for it.

Options:
    annotators: list of folder names, or mapping folder name -> annotator name
        (default: every sub-folder of ``root`` holding ``*.json``; name = folder name).
    images: images folder (relative to ``root`` or absolute) for stem matching.
    image_cache: folder for images decoded from ``imageData`` (default ``<root>/.imagedata``).
    catalogue: landmark catalogue key or custom spec (``cephalo.landmarks.catalogue_from_params``).
    labels: mapping label -> landmark (canonical name, symbol or title), or a template such as
        ``"l{n}"`` meaning label ``l<n>`` is the n-th (1-based) catalogue landmark.
    spacing_mm: pixel spacing (float, or [x, y]); required (the format has none).
    device: device label (default the data set name).
    splits / default_split: id ranges per split (see ``cephalo.datasets.base.assign_splits``).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...errors import ConfigError, DataError
from ...io import atomic_path
from ...landmarks import Catalogue, catalogue_from_params
from ..base import (
    Adapter,
    AdapterResult,
    Exclusion,
    ImageProblem,
    annotation_rows,
    assign_splits,
    find_images,
    image_header,
)

__all__ = ["LabelMeAdapter", "label_map", "parse_spacing", "write_labelme", "OUTSIDE_FLAG"]

#: LabelMe shape flag set by :func:`write_labelme` on a predicted point that lay outside the image and
#: was clipped to its border: read back as missing unless the annotator moved the point (or cleared the flag)
OUTSIDE_FLAG = "outside_image"


def _outside_points(coords: dict, marked: dict, width: int, height: int) -> dict[str, str]:
    """Landmarks to index as missing: a point outside ``[-0.5, W - 0.5] x [-0.5, H - 0.5]`` (pixel-centre
    frame), or a point marked :data:`OUTSIDE_FLAG` still where :func:`write_labelme` clipped it.

    Returns:
        name -> ``"at (x, y)"`` / ``"(clipped by cephalo predict, not moved)"``.
    """
    out = {}
    for n, (x, y) in coords.items():
        if not (math.isfinite(x) and math.isfinite(y)):
            continue
        if not (-0.5 <= x <= width - 0.5 and -0.5 <= y <= height - 0.5):
            out[n] = f"at ({x:.1f}, {y:.1f})"
        elif n in marked and marked[n] == (x, y) and (x in (0.0, width - 1.0) or y in (0.0, height - 1.0)):
            out[n] = "(predicted outside, clipped to the border by cephalo predict, not moved)"
    return out


def parse_spacing(value: Any, where: str) -> tuple[float, float]:
    """``0.127`` or ``[0.127, 0.127]`` -> (x, y) mm/px. Raises ConfigError when absent/invalid."""
    if value is None:
        raise ConfigError(f"{where}: option 'spacing_mm' is required (mm/px; this format carries none)")
    try:
        if isinstance(value, (list, tuple)):
            sx, sy = (float(v) for v in value)
        else:
            sx = sy = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: invalid spacing_mm {value!r}") from None
    if not (sx > 0 and sy > 0):
        raise ConfigError(f"{where}: spacing_mm must be positive, got {value!r}")
    return sx, sy


def label_map(labels: Mapping[str, str] | str | None, catalogue: Catalogue) -> dict[str, str]:
    """Label -> canonical landmark name.

    Args:
        labels: mapping label -> name/symbol/title, or template ``"l{n}"`` (1-based position),
            or ``None`` (labels are the catalogue's canonical names or symbols).

    Raises:
        ConfigError: a target not in the catalogue, or two labels for one landmark.
    """
    if labels is None:
        out = {lm.name: lm.name for lm in catalogue}
        out.update({lm.symbol: lm.name for lm in catalogue})
        return out
    if isinstance(labels, str):
        if "{n}" not in labels:
            raise ConfigError(f"labelme: label template {labels!r} must contain '{{n}}'")
        return {labels.format(n=i + 1): lm.name for i, lm in enumerate(catalogue)}
    out = {}
    for label, target in labels.items():
        try:
            out[str(label)] = catalogue.lookup(str(target)).name
        except KeyError as e:
            raise ConfigError(f"labelme: label {label!r}: {e.args[0]}") from None
    c = Counter(out.values())
    dup = sorted(n for n, k in c.items() if k > 1)
    if dup:
        raise ConfigError(f"labelme: several labels map to {dup}")
    return out


class LabelMeAdapter(Adapter):
    """Adapter ``labelme`` (see the module docstring for options)."""

    name = "labelme"
    version = "2"
    option_names = frozenset(
        {
            "annotators",
            "images",
            "image_cache",
            "catalogue",
            "labels",
            "spacing_mm",
            "device",
            "splits",
            "default_split",
        }
    )

    def parse(self, root: str | Path, *, dataset: str | None = None, **options: Any) -> AdapterResult:
        self.check_options(options)
        root = Path(root)
        dataset = dataset or self.name
        if not root.is_dir():
            raise DataError("LabelMe root folder not found", root)
        catalogue = catalogue_from_params(options.get("catalogue", "isbi19"))
        lmap = label_map(options.get("labels"), catalogue)
        spacing = parse_spacing(options.get("spacing_mm"), f"data set {dataset!r}")
        device = str(options.get("device", dataset))
        images_dir = options.get("images")
        images_dir = None if images_dir is None else (root / images_dir)
        if images_dir is not None and not images_dir.is_dir():
            raise DataError("images folder not found", images_dir)
        by_stem = find_images(images_dir) if images_dir is not None else {}
        cache = Path(options["image_cache"]) if options.get("image_cache") else root / ".imagedata"
        if not cache.is_absolute():
            cache = root / cache

        ann = options.get("annotators")
        if ann is None:
            folders = {
                d.name: d.name
                for d in sorted(root.iterdir())
                if d.is_dir() and not d.name.startswith(".") and any(d.glob("*.json"))
            }
        elif isinstance(ann, Mapping):
            folders = {str(k): str(v) for k, v in ann.items()}
        else:
            folders = {str(k): str(k) for k in ann}
        if not folders:
            raise DataError("no annotator folders with *.json files", root)
        for f in folders:
            if not (root / f).is_dir():
                raise DataError(f"annotator folder {f!r} not found", root)

        result = AdapterResult(dataset, self.name, self.version, catalogue, options=dict(options))
        parsed = []  # (image_id, image_path, annotator, coords)
        for folder, annotator in folders.items():
            for jpath in sorted((root / folder).glob("*.json")):
                try:
                    data = json.loads(jpath.read_text(encoding="utf-8-sig"))
                    shapes = data["shapes"]
                except (OSError, ValueError, KeyError, TypeError) as e:
                    result.exclusions.append(
                        Exclusion(str(jpath), f"unreadable LabelMe JSON ({type(e).__name__})", jpath.stem, annotator)
                    )
                    continue
                if not isinstance(shapes, list):
                    result.exclusions.append(
                        Exclusion(
                            str(jpath),
                            f"unreadable LabelMe JSON ('shapes' is {type(shapes).__name__}, not a list)",
                            jpath.stem,
                            annotator,
                        )
                    )
                    continue
                coords, labels_seen, unknown, nonfinite = {}, Counter(), [], []
                marked: dict[str, tuple[float, float]] = {}  # flagged outside_image by cephalo predict
                for s in shapes:
                    if not isinstance(s, dict):
                        unknown.append(repr(s)[:20])
                        continue
                    label = str(s.get("label", ""))
                    if s.get("shape_type", "point") != "point":
                        continue
                    labels_seen[label] += 1
                    name = lmap.get(label)
                    if name is None:
                        unknown.append(label)
                        continue
                    try:
                        ((x, y),) = s["points"]
                        x, y = float(x), float(y)
                    except (KeyError, TypeError, ValueError):
                        unknown.append(label)
                        continue
                    if not (math.isfinite(x) and math.isfinite(y)):  # JSON NaN/Infinity
                        nonfinite.append(label)
                    coords[name] = (x, y)
                    if isinstance(s.get("flags"), dict) and s["flags"].get(OUTSIDE_FLAG):
                        marked[name] = (x, y)
                dups = sorted((lb for lb, n in labels_seen.items() if n > 1 and lb in lmap), key=_natural)
                inv = {v: k for k, v in lmap.items()}
                missing = [inv[lm.name] for lm in catalogue if lm.name not in coords and lm.name in inv]
                reasons = []
                if dups:
                    reasons.append(f"duplicated labels {dups}")
                if missing:
                    reasons.append(f"missing labels {missing}")
                nonfinite = sorted(set(nonfinite) - set(dups), key=_natural)
                if nonfinite:
                    reasons.append(f"non-finite (NaN/Infinity) coordinates for labels {nonfinite}")
                if reasons:
                    result.exclusions.append(
                        Exclusion(
                            str(jpath), "; ".join(reasons), jpath.stem, annotator, tuple(dups + missing + nonfinite)
                        )
                    )
                    continue
                if unknown:
                    result.exclusions.append(
                        Exclusion(
                            str(jpath),
                            f"labels not in the label map {sorted(set(unknown))}",
                            jpath.stem,
                            annotator,
                            tuple(sorted(set(unknown))),
                        )
                    )
                    continue
                img = self._locate_image(jpath, data, by_stem, cache, result, annotator)
                if img is None:
                    continue
                stated = _stated_size(data)
                try:
                    actual = image_header(img)[:2]
                except DataError as e:
                    result.exclusions.append(
                        Exclusion(str(jpath), f"image unreadable: {str(e)}", jpath.stem, annotator)
                    )
                    continue
                if stated is not None and tuple(actual) != stated:
                    result.exclusions.append(
                        Exclusion(
                            str(jpath),
                            f"size mismatch: imageWidth x imageHeight {stated[0]}x{stated[1]} "
                            f"but {img.name} is {actual[0]}x{actual[1]} px (the annotation was made on "
                            "another version of the image)",
                            jpath.stem,
                            annotator,
                        )
                    )
                    continue
                gone = _outside_points(coords, marked, *actual)
                if gone:
                    sym = {lm.name: lm.symbol for lm in catalogue}
                    result.problems.append(
                        ImageProblem(
                            str(jpath),
                            f"annotator {annotator}: {len(gone)} landmark(s) "
                            "outside the image, indexed as missing: "
                            + ", ".join(f"{sym.get(n, n)} {why}" for n, why in gone.items()),
                            jpath.stem,
                        )
                    )
                    for n in gone:
                        coords[n] = (math.nan, math.nan)
                parsed.append((jpath.stem, img, annotator, coords))

        # one image path per id (the first annotator's choice wins only if they agree)
        paths: dict[str, Path] = {}
        for image_id, img, _, _ in parsed:
            paths.setdefault(image_id, img)
        for stem in sorted(set(by_stem) - set(paths)):
            result.exclusions.append(Exclusion(str(by_stem[stem]), "image without a usable annotation", stem))
        split_of = assign_splits(sorted(paths), options.get("splits"), options.get("default_split"), root)
        for image_id, _img, annotator, coords in parsed:
            result.rows += annotation_rows(
                dataset=dataset,
                image_id=image_id,
                split=split_of[image_id],
                image_path=paths[image_id],
                spacing=spacing,
                device=device,
                annotator=annotator,
                coords=coords,
                catalogue=catalogue,
            )
        return result

    @staticmethod
    def _locate_image(
        jpath: Path, data: dict, by_stem: dict[str, Path], cache: Path, result: AdapterResult, annotator: str
    ) -> Path | None:
        rel = data.get("imagePath")
        if rel:
            cand = jpath.parent / str(rel).replace("\\", "/")
            if cand.is_file():
                return cand.resolve()
        if jpath.stem in by_stem:
            return by_stem[jpath.stem].resolve()
        b64 = data.get("imageData")
        if b64:
            try:
                raw = base64.b64decode(b64, validate=False)
                from PIL import Image

                with Image.open(io.BytesIO(raw)) as im:
                    fmt = (im.format or "PNG").lower()
            except (binascii.Error, ValueError, TypeError, OSError) as e:  # TypeError: not a string
                result.exclusions.append(
                    Exclusion(
                        str(jpath),
                        f"image not found and imageData undecodable ({type(e).__name__})",
                        jpath.stem,
                        annotator,
                    )
                )
                return None
            ext = {"jpeg": ".jpg", "tiff": ".tif"}.get(fmt, f".{fmt}")
            out = cache / f"{jpath.stem}{ext}"
            if not out.is_file() or out.read_bytes() != raw:
                with atomic_path(out) as tmp:
                    tmp.write_bytes(raw)
            return out.resolve()
        result.exclusions.append(
            Exclusion(
                str(jpath),
                f"image not found (imagePath {rel!r} stale, no {jpath.stem}.* in the images folder, no imageData)",
                jpath.stem,
                annotator,
            )
        )
        return None


def _stated_size(data: dict) -> tuple[int, int] | None:
    """LabelMe's ``(imageWidth, imageHeight)`` when both are positive integers, else None."""
    w, h = data.get("imageWidth"), data.get("imageHeight")
    try:
        w_i, h_i = int(w), int(h)
    except (TypeError, ValueError, OverflowError):
        return None
    if isinstance(w, bool) or isinstance(h, bool) or w_i != w or h_i != h or w_i <= 0 or h_i <= 0:
        return None
    return w_i, h_i


def _natural(label: str):
    digits = "".join(c for c in label if c.isdigit())
    return (label.rstrip("0123456789"), int(digits) if digits else math.inf, label)


def write_labelme(
    json_path: str | Path,
    image_path: str | Path,
    labels: list[str],
    coords,
    width: int,
    height: int,
    *,
    version: str = "5.0.1",
) -> Path:
    """Write one LabelMe point-annotation file (atomically), e.g. predicted landmarks to correct by hand.

    Args:
        json_path: the ``.json`` file to write.
        image_path: the image; stored as ``imagePath`` relative to the JSON's folder (LabelMe's rule),
            ``imageData`` null.
        labels: K point labels (canonical landmark names read back by :class:`LabelMeAdapter`'s
            default label map).
        coords: (K, 2) xy image pixels (origin at the centre of the top-left pixel, LabelMe's
            integer-centre convention); a non-finite point is left out; a point outside the image
            is clipped to its border pixel and marked (shape flag :data:`OUTSIDE_FLAG`, description
            with the predicted position), so LabelMe opens it and ``cephalo index`` reads it back.
        width, height: image size (``imageWidth``/``imageHeight``, checked by the adapter).

    Returns:
        ``json_path``.
    """
    import os

    json_path = Path(json_path)
    rel = os.path.relpath(Path(image_path).resolve(), json_path.parent.resolve())
    shapes = []
    for label, (x, y) in zip(labels, coords, strict=False):
        x, y = float(x), float(y)
        if not (math.isfinite(x) and math.isfinite(y)):
            continue
        flags, desc = {}, ""
        if not (-0.5 <= x <= width - 0.5 and -0.5 <= y <= height - 0.5):
            cx, cy = min(max(x, 0.0), width - 1.0), min(max(y, 0.0), height - 1.0)
            flags = {OUTSIDE_FLAG: True}
            desc = (
                f"predicted outside the image at ({x:.1f}, {y:.1f}); clipped to the border. Move it to the "
                f"landmark (and untick {OUTSIDE_FLAG}) or leave it: it is then indexed as missing"
            )
            x, y = cx, cy
        shapes.append(
            {
                "label": str(label),
                "points": [[x, y]],
                "group_id": None,
                "description": desc,
                "shape_type": "point",
                "flags": flags,
            }
        )
    doc = {
        "version": version,
        "flags": {},
        "shapes": shapes,
        "imagePath": rel.replace(os.sep, "/"),
        "imageData": None,
        "imageHeight": int(height),
        "imageWidth": int(width),
    }
    with atomic_path(json_path) as tmp:
        tmp.write_text(json.dumps(doc, indent=2))
    return json_path
