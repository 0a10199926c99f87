"""Shared pieces of the data set adapters: result records, split assignment, image headers.

An adapter *parses* one source layout (no resizing, no normalisation, no torch) into
long rows, one per image x landmark x annotator, in the column vocabulary of the
landmark index (``docs/DESIGN.md``), plus the annotations it had to exclude
(file + reason) and image-level problems it noticed. ``cephalo.index`` turns an
:class:`AdapterResult` into the validated Parquet index.

Coordinates are the source's own pixel values of the *original* image, xy, origin
at the centre of the top-left pixel (``cephalo.geometry``); integer annotation
values are pixel centres. A landmark that is absent is NaN with ``visible=False``.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

from ..errors import ConfigError, DataError
from ..imageio import check_complete, describe_file, oriented_size
from ..landmarks import Catalogue

__all__ = [
    "IMAGE_EXTENSIONS",
    "Exclusion",
    "ImageProblem",
    "AdapterResult",
    "Adapter",
    "annotation_rows",
    "assign_splits",
    "parse_id_spec",
    "image_header",
    "find_child_dir",
    "find_images",
]

#: Image file extensions the adapters look for (lower case, with dot).
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class Exclusion:
    """An annotation (or image) left out of the index, and why.

    Attributes:
        file: the file concerned (annotation JSON/txt, or image).
        reason: one-line human reason.
        image_id: the image id, when known.
        annotator: the annotator whose annotation was excluded (``None`` = all / the image).
        labels: the labels/landmarks concerned (duplicated, missing, unknown), if any.
    """

    file: str
    reason: str
    image_id: str | None = None
    annotator: str | None = None
    labels: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        d = asdict(self)
        d["labels"] = list(self.labels)
        return d


@dataclass(frozen=True)
class ImageProblem:
    """An image-level oddity that does not exclude the image (e.g. a format mismatch)."""

    file: str
    problem: str
    image_id: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class AdapterResult:
    """What an adapter returns.

    Attributes:
        dataset: data set name (``params["data"]["datasets"]`` key, or the adapter name).
        adapter: adapter name; ``adapter_version``: its version string.
        catalogue: the landmark catalogue the rows use (``landmark_index`` = its order).
        rows: list of dicts with the index columns except ``width``/``height`` (read
            later from image headers by ``cephalo.index.build_index``); ``image_path``
            is absolute.
        exclusions: annotations/images left out, with reasons.
        problems: image-level problems that did not exclude anything.
        options: the options the adapter ran with (recorded as provenance).
    """

    dataset: str
    adapter: str
    adapter_version: str
    catalogue: Catalogue
    rows: list[dict] = field(default_factory=list)
    exclusions: list[Exclusion] = field(default_factory=list)
    problems: list[ImageProblem] = field(default_factory=list)
    options: dict = field(default_factory=dict)


class Adapter(ABC):
    """Base class: one adapter per source layout.

    Subclasses set ``name``, ``version``, ``option_names`` and implement :meth:`parse`.
    """

    name: ClassVar[str]
    version: ClassVar[str]
    option_names: ClassVar[frozenset[str]] = frozenset()

    def __call__(self, root: str | Path, dataset: str | None = None, **options: Any) -> AdapterResult:
        return self.parse(root, dataset=dataset, **options)

    def check_options(self, options: Mapping[str, Any]) -> None:
        """Raise ConfigError for option names this adapter does not know."""
        unknown = sorted(set(options) - set(self.option_names))
        if unknown:
            raise ConfigError(f"adapter {self.name!r}: unknown option(s) {unknown}; valid: {sorted(self.option_names)}")

    @abstractmethod
    def parse(self, root: str | Path, *, dataset: str | None = None, **options: Any) -> AdapterResult:
        """Parse the release under ``root``.

        Raises:
            DataError: the layout is not found / unusable as a whole (naming the path).
            ConfigError: bad options.
        """


def annotation_rows(
    *,
    dataset: str,
    image_id: str,
    split: str,
    image_path: str | Path,
    spacing: tuple[float | None, float | None],
    device: str,
    annotator: str,
    coords: Mapping[str, tuple[float, float]],
    catalogue: Catalogue,
    cvm_stage: int | None = None,
) -> list[dict]:
    """One row per catalogue landmark for one image x annotator.

    Args:
        coords: canonical landmark name -> (x, y) original pixels; names not present
            give NaN rows with ``visible=False``.

    Returns:
        ``len(catalogue)`` row dicts in catalogue order.
    """
    sx, sy = spacing
    rows = []
    for k, lm in enumerate(catalogue):
        xy = coords.get(lm.name)
        x, y = (float(xy[0]), float(xy[1])) if xy is not None else (math.nan, math.nan)
        if math.isnan(x) or math.isnan(y):  # half a point is a missing point
            x = y = math.nan
        rows.append(
            {
                "dataset": dataset,
                "image_id": image_id,
                "split": split,
                "image_path": str(image_path),
                "spacing_x_mm": math.nan if sx is None else float(sx),
                "spacing_y_mm": math.nan if sy is None else float(sy),
                "device": device,
                "annotator": annotator,
                "landmark_index": k,
                "landmark_name": lm.name,
                "landmark_symbol": lm.symbol,
                "x": x,
                "y": y,
                "visible": not (math.isnan(x) or math.isnan(y)),
                "cvm_stage": cvm_stage,
            }
        )
    return rows


_RANGE = re.compile(r"^\s*([^\s-]+)\s*-\s*([^\s-]+)\s*$")


def parse_id_spec(spec: str | Sequence[str] | int) -> list[tuple[str, str | None]]:
    """Parse ``"001-060"``, ``"001,005,010-020"`` or a list into (lo, hi|None) items.

    A pair ``(lo, hi)`` is an inclusive range (numeric when both ends are digits);
    ``(v, None)`` is a single id.
    """
    if isinstance(spec, (int, float)):
        spec = [str(spec)]
    parts = [p for p in spec.split(",") if p.strip()] if isinstance(spec, str) else [str(p) for p in spec]
    out: list[tuple[str, str | None]] = []
    for p in parts:
        m = _RANGE.match(p)
        if m:
            out.append((m.group(1), m.group(2)))
        else:
            out.append((p.strip(), None))
    return out


def _matches(image_id: str, item: tuple[str, str | None]) -> bool:
    lo, hi = item
    if hi is None:
        if lo.isdigit() and image_id.isdigit():
            return int(lo) == int(image_id)
        return image_id == lo
    if lo.isdigit() and hi.isdigit():
        return image_id.isdigit() and int(lo) <= int(image_id) <= int(hi)
    return lo <= image_id <= hi


def assign_splits(
    image_ids: Iterable[str],
    splits: Mapping[str, Any] | None,
    default: str | None = None,
    source: str | Path | None = None,
) -> dict[str, str]:
    """Assign each image id a split from explicit id ranges or lists.

    Args:
        splits: e.g. ``{"train": "001-060", "valid": "061-075", "test": ["076", "080-100"]}``.
            Numeric ranges compare as integers (``"1-60"`` matches ``"001"``).
        default: split for ids no entry covers; ``None`` makes an uncovered id an error.

    Returns:
        image id -> split name.

    Raises:
        ConfigError: an id covered by two splits, named twice by one split (overlapping
            entries), or not covered and no ``default``.
    """
    ids = list(image_ids)
    if not splits:
        if default is None:
            raise ConfigError("no 'splits' option and no 'default_split': cannot assign splits", source)
        return {i: default for i in ids}
    parsed = {str(name): parse_id_spec(spec) for name, spec in splits.items()}
    out: dict[str, str] = {}
    uncovered = []
    for i in ids:
        hits = []
        for name, items in parsed.items():
            n = sum(_matches(i, it) for it in items)
            if n > 1:
                raise ConfigError(
                    f"split {name!r} names image id {i!r} {n} times (overlapping entries "
                    f"{[f'{lo}-{hi}' if hi else lo for lo, hi in items if _matches(i, (lo, hi))]})",
                    source,
                )
            if n:
                hits.append(name)
        if len(hits) > 1:
            raise ConfigError(f"image id {i!r} is in several splits {hits}", source)
        if hits:
            out[i] = hits[0]
        elif default is not None:
            out[i] = default
        else:
            uncovered.append(i)
    if uncovered:
        raise ConfigError(
            f"{len(uncovered)} image id(s) are in no split (e.g. {uncovered[:5]}); "
            "extend 'splits' or set 'default_split'",
            source,
        )
    return out


@lru_cache(maxsize=65536)
def _header(path: str, mtime_ns: int, size: int) -> tuple[int, int, str]:
    from PIL import Image, UnidentifiedImageError

    check_complete(path)  # truncated PNG/JPEG/BMP -> DataError at index time already
    try:
        with Image.open(path) as im:  # lazy: reads the header only, no pixel decoding
            try:
                orientation = int(im.getexif().get(0x0112, 1) or 1)
            except Exception:  # noqa: BLE001 - a broken EXIF block = no rotation (as read_image)
                orientation = 1
            orientation = orientation if 1 <= orientation <= 8 else 1
            w, h = oriented_size(int(im.width), int(im.height), orientation)
            return w, h, str(im.format or "")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise DataError(f"cannot read image: {describe_file(path)}", path) from None


def image_header(path: str | Path) -> tuple[int, int, str]:
    """``(width, height, format)`` of an image from its header (pixels are not decoded).

    ``format`` is PIL's name (``"PNG"``, ``"JPEG"``, ``"BMP"``, ``"TIFF"``). The EXIF
    orientation is applied to (width, height), as :func:`cephalo.preprocess.read_image`
    applies it to the pixels; a truncated PNG/JPEG/BMP is refused
    (:func:`cephalo.imageio.check_complete`).

    Raises:
        DataError: missing, unreadable or truncated file, naming it.
    """
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        raise DataError("image file not found", p) from None
    return _header(str(p), st.st_mtime_ns, st.st_size)


def find_child_dir(parent: Path, name: str, *, max_depth: int = 2) -> Path | None:
    """Find a sub-folder called ``name`` (case-insensitive) directly under ``parent``, or
    under wrapper folders up to ``max_depth`` levels deep (``RawImage/RawImage/...``).

    Returns the shallowest match, or ``None``.
    """
    frontier = [parent]
    for _ in range(max_depth + 1):
        nxt = []
        for d in frontier:
            try:
                children = sorted(c for c in d.iterdir() if c.is_dir())
            except OSError:
                continue
            for c in children:
                if c.name.lower() == name.lower():
                    return c
            nxt.extend(children)
        frontier = nxt
    return None


def find_images(folder: Path) -> dict[str, Path]:
    """Image files directly in ``folder`` by file stem (extensions in :data:`IMAGE_EXTENSIONS`).

    Raises:
        DataError: two images share a stem (ambiguous), naming both.
    """
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."):
            if p.stem in out:
                raise DataError(f"two images with the same id {p.stem!r}: {out[p.stem].name}, {p.name}", folder)
            out[p.stem] = p
    return out
