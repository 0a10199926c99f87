"""CL-Detection 2023 training release (38 landmarks, 3 centres; registration required).

Files in ``root``: ``train_stack.mha`` -- the images stacked along the third axis and
zero-padded at the bottom/right to a common size (2400x2880, 3 channels in the release),
read slice by slice with SimpleITK (the stack does not fit in memory at once) -- and
``train-gt.json``: ``{"points": [{"name": "1".."38", "point": [x, y, image_index_1based],
"scale": 0.1}, ...]}`` where ``scale`` is that image's pixel spacing in mm/px.

Each slice has its trailing all-zero rows and columns stripped (padding is bottom/right, so
landmarks are unaffected) and is written ONCE as ``<images_dir>/<NNN>.png`` (an existing
file of the right size is kept); index rows point at these PNGs. Image ids are the 1-based
slice numbers, zero-padded to 3 digits.

Source: CL-Detection 2023 challenge (MICCAI 2023), https://cl-detection2023.grand-challenge.org/,
release documentation of ``train_stack.mha`` / ``train-gt.json``.

Options:
    images_dir: output folder for the PNG slices (required; relative to ``root`` or absolute).
    splits / default_split: id ranges per split (no official split exists).
    device: device label (default ``"CL-Detection2023"``).
    stack / labels: file names (defaults ``train_stack.mha`` / ``train-gt.json``).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ConfigError, DataError
from ...io import atomic_path
from ...landmarks import CLDETECTION38
from ..base import Adapter, AdapterResult, Exclusion, annotation_rows, assign_splits, image_header

__all__ = ["CLDetection2023Adapter", "strip_zero_padding"]


def strip_zero_padding(arr: np.ndarray) -> np.ndarray:
    """Remove trailing all-zero rows (bottom) and columns (right) of one slice.

    Args:
        arr: (H, W) or (H, W, C) array.

    Returns:
        a view ``arr[:h, :w]`` where row ``h-1`` and column ``w-1`` hold a non-zero value
        (an all-zero slice is returned unchanged).
    """
    nz = arr != 0 if arr.ndim == 2 else (arr != 0).any(axis=2)
    rows = np.flatnonzero(nz.any(axis=1))
    cols = np.flatnonzero(nz.any(axis=0))
    if rows.size == 0:
        return arr
    return arr[: rows[-1] + 1, : cols[-1] + 1]


class CLDetection2023Adapter(Adapter):
    """Adapter ``cldetection2023`` (see the module docstring for options)."""

    name = "cldetection2023"
    version = "1"
    option_names = frozenset({"images_dir", "splits", "default_split", "device", "stack", "labels"})

    def parse(self, root: str | Path, *, dataset: str | None = None, **options: Any) -> AdapterResult:
        import SimpleITK as sitk
        from PIL import Image
        from tqdm import tqdm

        self.check_options(options)
        root = Path(root)
        dataset = dataset or self.name
        if not options.get("images_dir"):
            raise ConfigError("cldetection2023: option 'images_dir' (where the PNG slices go) is required")
        out_dir = Path(options["images_dir"])
        out_dir = out_dir if out_dir.is_absolute() else root / out_dir
        stack = root / options.get("stack", "train_stack.mha")
        gt = root / options.get("labels", "train-gt.json")
        for p in (stack, gt):
            if not p.is_file():
                raise DataError("CL-Detection 2023 file not found", p)
        try:
            points = json.loads(gt.read_text())["points"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DataError(f"unreadable ground truth ({type(e).__name__})", gt) from None

        per_image: dict[int, dict] = defaultdict(lambda: {"coords": {}, "scales": set(), "dups": []})
        for n, p in enumerate(points):
            try:
                x, y, idx = p["point"]
                lm = CLDETECTION38.lookup(str(p["name"]))
                entry = per_image[int(idx)]
                if lm.name in entry["coords"]:
                    entry["dups"].append(lm.symbol)
                entry["coords"][lm.name] = (float(x), float(y))
                entry["scales"].add(float(p["scale"]))
            except (KeyError, TypeError, ValueError) as e:
                raise DataError(f"points[{n}] malformed ({type(e).__name__}: {e})", gt) from None

        reader = sitk.ImageFileReader()
        reader.SetFileName(str(stack))
        try:
            reader.ReadImageInformation()
        except RuntimeError as e:
            raise DataError(f"unreadable .mha ({str(e).splitlines()[0][:80]})", stack) from None
        size = reader.GetSize()
        if len(size) != 3:
            raise DataError(f"expected a 3-D stack (W, H, N), got size {size}", stack)
        w_pad, h_pad, n = size

        result = AdapterResult(dataset, self.name, self.version, CLDETECTION38, options=dict(options))
        ids = [f"{i:03d}" for i in range(1, n + 1)]
        split_of = assign_splits(ids, options.get("splits"), options.get("default_split"), root)
        device = str(options.get("device", "CL-Detection2023"))
        for i in tqdm(range(1, n + 1), desc="cldetection2023 slices", unit="img", leave=False):
            image_id = f"{i:03d}"
            entry = per_image.get(i)
            if entry is None:
                result.exclusions.append(Exclusion(f"{stack}[{i}]", "slice without landmarks", image_id))
                continue
            reader.SetExtractIndex([0, 0, i - 1])
            reader.SetExtractSize([w_pad, h_pad, 0])  # 0 collapses the slice axis -> 2-D image
            arr = sitk.GetArrayFromImage(reader.Execute())  # (H, W) or (H, W, C)
            arr = strip_zero_padding(arr)
            h, w = arr.shape[:2]
            png = out_dir / f"{image_id}.png"
            if not (png.is_file() and image_header(png)[:2] == (w, h)):
                if arr.ndim == 3 and arr.shape[2] == 3 and (arr == arr[..., :1]).all():
                    arr = arr[..., 0]
                if arr.dtype != np.uint8 and arr.max() <= 255:
                    arr = arr.astype(np.uint8)
                with atomic_path(png) as tmp:
                    Image.fromarray(np.ascontiguousarray(arr)).save(tmp, format="PNG")
            if entry["dups"]:
                result.exclusions.append(
                    Exclusion(
                        str(gt),
                        f"image {i}: duplicated landmarks {sorted(set(entry['dups']))}",
                        image_id,
                        labels=tuple(sorted(set(entry["dups"]))),
                    )
                )
                continue
            if len(entry["scales"]) != 1:
                result.exclusions.append(
                    Exclusion(str(gt), f"image {i}: inconsistent scale values {sorted(entry['scales'])}", image_id)
                )
                continue
            scale = entry["scales"].pop()
            if not (scale > 0 and math.isfinite(scale)):
                result.exclusions.append(Exclusion(str(gt), f"image {i}: invalid scale {scale}", image_id))
                continue
            result.rows += annotation_rows(
                dataset=dataset,
                image_id=image_id,
                split=split_of[image_id],
                image_path=png.resolve(),
                spacing=(scale, scale),
                device=device,
                annotator="default",
                coords=entry["coords"],
                catalogue=CLDETECTION38,
            )
        extra = sorted(set(per_image) - set(range(1, n + 1)))
        if extra:
            result.exclusions.append(Exclusion(str(gt), f"landmarks for slices beyond the stack: {extra[:10]}"))
        return result
