"""Build and load a preprocessing variant: the image cache + variant index.

A variant directory holds (see ``docs/DESIGN.md``):

* ``images.npy`` — ``(N, H, W)`` uint8 or uint16, memory-mappable; intensity steps baked
  in, final tensor normalisation not. If any source image is 16-bit the cache is uint16
  and 8-bit images are scaled by 257 (``255 -> 65535``), so no image loses bits.
* ``variant.parquet`` — one row per image: ``image_id, split, dataset, device, image_path,
  spacing_x_mm, spacing_y_mm, orig_width, orig_height``, the affine ``a00 a01 a02 a10 a11 a12``
  (original px -> preprocessed px), ground-truth landmarks ``<name>_x, <name>_y``
  (preprocessed px) and ``<name>_x_orig, <name>_y_orig`` (original px), and every
  annotator's landmarks as ``ann:<annotator>:<name>_x`` / ``_y`` (preprocessed px).
* ``variant.json`` — the resolved variant spec (fitted references included),
  normalisation, landmark names, input size, dtype, source index hash and the
  fingerprint; ``histogram_reference.npz`` when a ``histogram_match`` step is used.

The output is a pure function of (index file bytes, variant spec, ground-truth policy,
normalisation, reference index bytes, format version): :func:`variant_fingerprint`.
:func:`build_variant` skips all work when the directory already holds that fingerprint.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import geometry as G
from ..errors import ConfigError, DataError
from ..imageio import image_bit_depth, read_image
from ..index import ground_truth, images_table, landmark_arrays, read_index, recorded_policy
from ..io import atomic_dir, file_sha256, sweep_stale, write_json
from .normalise import normalisation_spec
from .steps import HistogramMatch, Pipeline

__all__ = [
    "FORMAT_VERSION",
    "AFFINE_COLUMNS",
    "Variant",
    "BuildResult",
    "file_sha256",
    "variant_fingerprint",
    "build_variant",
    "load_variant",
    "preprocess_image",
]

FORMAT_VERSION = 1
AFFINE_COLUMNS = ("a00", "a01", "a02", "a10", "a11", "a12")


def _canonical_spec(spec: Mapping) -> dict:
    """The variant spec with steps in canonical (defaults filled) form, quantiles dropped."""
    pipe = Pipeline.from_spec(spec)
    steps = []
    for s in pipe.to_spec():
        s = dict(s)
        if s["step"] == "histogram_match":
            s.pop("quantiles", None)
            s.pop("reference_source", None)
        steps.append(s)
    return {"steps": steps}


def variant_fingerprint(
    index_sha256: str,
    spec: Mapping,
    ground_truth: str,
    normalisation: Any,
    reference_sha256: Mapping[str, str] | None = None,
) -> str:
    """Hex SHA-256 identifying a variant's output (see module doc). Raises like :func:`parse_steps`."""
    payload = {
        "format_version": FORMAT_VERSION,
        "index_sha256": index_sha256,
        "spec": _canonical_spec(spec),
        "ground_truth": ground_truth,
        "normalisation": normalisation_spec(normalisation),
        "reference_sha256": dict(sorted((reference_sha256 or {}).items())),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


@dataclass
class Variant:
    """A loaded variant (``load_variant``). All arrays are indexed by image, in file order.

    Attributes:
        images: ``(N, H, W)`` uint8/uint16 read-only memmap, preprocessed pixels.
        image_ids: ``list[str]``.
        splits, devices, datasets: ``(N,)`` object ndarrays of str.
        spacing: ``(N, 2)`` float64 mm/px (x, y) of the *original* image (NaN if unknown).
        affines: ``(N, 2, 3)`` float64, original px -> preprocessed px.
        landmarks: ``(N, K, 2)`` float64 xy, preprocessed px, ground truth (NaN missing).
        landmarks_original: ``(N, K, 2)`` float64 xy, original px.
        annotators: ``{name: (N, K, 2)}`` float64 xy preprocessed px per annotator.
        landmark_names: ``list[str]`` canonical names (K).
        orig_sizes: ``(N, 2)`` int64 (w, h) original px.
        input_size: ``(W, H)`` of the preprocessed images.
        normalisation: dict (``normalise`` spec); spec: resolved variant spec dict.
        meta: the whole ``variant.json``; table: the ``variant.parquet`` DataFrame.
    """

    path: Path
    images: np.ndarray
    image_ids: list
    splits: np.ndarray
    devices: np.ndarray
    datasets: np.ndarray
    spacing: np.ndarray
    affines: np.ndarray
    landmarks: np.ndarray
    landmarks_original: np.ndarray
    annotators: dict
    landmark_names: list
    orig_sizes: np.ndarray
    input_size: tuple
    normalisation: dict
    spec: dict
    meta: dict = field(repr=False)
    table: Any = field(repr=False)

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getstate__(self) -> dict:
        # pickling (DataLoader workers under spawn) must not copy the whole image cache:
        # drop the memmap and re-open it on the other side
        state = dict(self.__dict__)
        state["images"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.images = np.load(Path(self.path) / "images.npy", mmap_mode="r")

    def select(self, split: str) -> np.ndarray:
        """Integer indices of the images of ``split``."""
        return np.flatnonzero(self.splits == split)


@dataclass
class BuildResult:
    out_dir: Path
    fingerprint: str
    skipped: bool
    n_images: int


# --------------------------------------------------------------------------- helpers


def _index_api():
    """(read_index without the spacing requirement, ground_truth, images_table, landmark_arrays)."""

    def read(path):
        return read_index(path, require_spacing=False)

    return read, ground_truth, images_table, landmark_arrays


def _index_root(index_path: Path, df) -> Path:
    """Folder that relative image paths are resolved against (``read_index`` already makes
    them absolute from the recorded release root; this is the fallback: the index's folder)."""
    root = ((getattr(df, "attrs", {}) or {}).get("cephalo") or {}).get("source", {}).get("root")
    return Path(root) if root else index_path.parent


def _resolve(root: Path, p: str) -> Path:
    q = Path(p)
    return q if q.is_absolute() else root / q


def _landmark_names(df) -> list[str]:
    pairs = df[["landmark_index", "landmark_name"]].drop_duplicates().sort_values("landmark_index")
    if pairs["landmark_index"].duplicated().any() or pairs["landmark_name"].duplicated().any():
        raise DataError("index: landmark_index and landmark_name do not correspond one to one")
    return [str(n) for n in pairs["landmark_name"]]


def _arrays_for(ids: list[str], table, landmark_arrays, names: list[str]) -> np.ndarray:
    """landmark_arrays(table) aligned to ``ids`` (NaN rows for images absent from ``table``)."""
    out = np.full((len(ids), len(names), 2), np.nan)
    if len(table) == 0:
        return out
    got_ids, coords = landmark_arrays(table, names)
    pos = {i: k for k, i in enumerate(ids)}
    for j, i in enumerate(got_ids):
        if str(i) in pos:
            out[pos[str(i)]] = coords[j]
    return out


def _fit_references(pipe: Pipeline, df, root: Path, index_path: Path, index_sha: str, progress: bool) -> dict:
    """Fit every histogram_match step; returns {reference index path: sha256}."""
    from tqdm.auto import tqdm

    hashes: dict[str, str] = {}
    for i, step in enumerate(pipe.steps):
        if not isinstance(step, HistogramMatch) or step.fitted:
            continue
        if step.reference_index:
            ref_path = Path(step.reference_index)
            read_index, _, images_table, _ = _index_api()
            ref_df = read_index(ref_path)
            ref_root = _index_root(ref_path, ref_df)
            ref_sha = file_sha256(ref_path)
        else:
            ref_path, ref_df, ref_root, ref_sha = index_path, df, root, index_sha
            images_table = _index_api()[2]
        hashes[str(ref_path)] = ref_sha
        imgs = images_table(ref_df)
        if step.reference_split and (imgs["split"] == step.reference_split).any():
            imgs = imgs[imgs["split"] == step.reference_split]
        imgs = imgs.sort_values("image_id").head(int(step.max_images))
        before = Pipeline(pipe.steps[:i])

        def gen(imgs, ref_root, before):
            for row in tqdm(list(imgs.itertuples(index=False)), desc="histogram reference", disable=not progress):
                img = read_image(_resolve(ref_root, row.image_path))
                yield before(img, (row.spacing_x_mm, row.spacing_y_mm))[0]

        step.fit(
            gen(imgs, ref_root, before),
            source={"index": str(ref_path), "sha256": ref_sha, "split": step.reference_split},
        )
    return hashes


# --------------------------------------------------------------------------- build


def _allocated_memmap(path: Path, dtype: Any, shape: tuple[int, ...]) -> np.memmap:
    """A new ``.npy`` memmap whose blocks are allocated on disk before any pixel is written.

    ``open_memmap`` makes a sparse file; writing through the map on a full disk then kills the
    process with SIGBUS. ``posix_fallocate`` reserves every block first, so a full disk is an
    ``OSError`` (ENOSPC, naming ``path``) before the cache is filled.

    Raises:
        OSError: no space (or another I/O error) while allocating.
    """
    cache = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    size = os.path.getsize(path)
    fd = os.open(path, os.O_RDWR)
    try:
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                del cache
                raise OSError(e.errno, e.strerror, str(path)) from None
            # no fallocate on this file system: write zeros (a full disk fails here, not in the map)
            with open(path, "r+b") as f:
                f.seek(cache.offset)
                block = b"\0" * (1 << 20)
                left = size - cache.offset
                while left > 0:
                    left -= f.write(block[: min(left, len(block))])
    finally:
        os.close(fd)
    return cache


def variant_columns(
    rows: Mapping[str, Any],
    affines: np.ndarray,
    names: list[str],
    landmarks: np.ndarray,
    landmarks_orig: np.ndarray,
    annotators: Mapping[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """The columns of ``variant.parquet``: the per-image ``rows`` (image_id, split, dataset,
    device, image_path, spacing_x_mm, spacing_y_mm, orig_width, orig_height), then the
    2x3 affine of each image, then each landmark in input pixels and in original pixels,
    then each annotator's landmarks (already in input pixels)."""
    cols: dict[str, Any] = dict(rows)
    for j, c in enumerate(AFFINE_COLUMNS):
        cols[c] = affines[:, j // 3, j % 3]
    for k, nm in enumerate(names):
        cols[f"{nm}_x"], cols[f"{nm}_y"] = landmarks[:, k, 0], landmarks[:, k, 1]
        cols[f"{nm}_x_orig"], cols[f"{nm}_y_orig"] = landmarks_orig[:, k, 0], landmarks_orig[:, k, 1]
    for a, pa in (annotators or {}).items():
        for k, nm in enumerate(names):
            cols[f"ann:{a}:{nm}_x"], cols[f"ann:{a}:{nm}_y"] = pa[:, k, 0], pa[:, k, 1]
    return cols


@dataclass(frozen=True)
class ImagesShape:
    """What ``images.npy`` of a variant holds: ``n_images`` images of ``input_size`` ``(W, H)`` px,
    of numpy dtype ``dtype`` (its name, e.g. ``"uint8"``)."""

    n_images: int
    input_size: tuple[int, int]
    dtype: str


def variant_meta(
    *,
    name: str,
    spec: Mapping,
    ground_truth: Any,
    normalisation: Mapping,
    landmark_names: list[str],
    annotators: list[str],
    images: ImagesShape,
    source_index: Mapping,
    reference_indexes: Mapping,
    fingerprint: str,
) -> dict[str, Any]:
    """The content of ``variant.json`` (format and version filled in)."""
    input_size, dtype, n_images = images.input_size, images.dtype, images.n_images
    return {
        "format": "cephalo-variant",
        "format_version": FORMAT_VERSION,
        "name": name,
        "spec": dict(spec),
        "ground_truth": ground_truth,
        "normalisation": dict(normalisation),
        "landmark_names": list(landmark_names),
        "annotators": list(annotators),
        "input_size": [int(input_size[0]), int(input_size[1])],
        "dtype": dtype,
        "n_images": int(n_images),
        "source_index": dict(source_index),
        "reference_indexes": dict(reference_indexes),
        "fingerprint": fingerprint,
    }


def _write_table_and_meta(tmp: Path, columns: Mapping[str, Any], meta: Mapping) -> None:
    import pandas as pd

    pd.DataFrame(dict(columns)).to_parquet(tmp / "variant.parquet", index=False)
    write_json(tmp / "variant.json", dict(meta))


def write_variant(out_dir: str | Path, images: np.ndarray, columns: Mapping[str, Any], meta: Mapping) -> Path:
    """Write a variant directory whose images are already in memory: ``images.npy``,
    ``variant.parquet`` (``columns``, see :func:`variant_columns`) and ``variant.json``
    (``meta``, see :func:`variant_meta`), replacing ``out_dir`` whole and atomically, as
    :func:`build_variant` does."""
    out_dir = Path(out_dir)
    n = int(meta["n_images"])
    if images.shape[0] != n or any(len(v) != n for v in columns.values()):
        raise ConfigError(f"write_variant: {images.shape[0]} images and a table for {n} images")
    with atomic_dir(out_dir) as tmp:
        np.save(tmp / "images.npy", images)
        _write_table_and_meta(tmp, columns, meta)
    return out_dir


def build_variant(
    index_path: str | Path,
    spec: Mapping,
    out_dir: str | Path,
    *,
    name: str = "",
    ground_truth: str | None = None,
    normalisation: Any = "imagenet",
    force: bool = False,
    progress: bool = True,
    workers: int | None = None,
) -> BuildResult:
    """Preprocess every image of a landmark index into a variant directory (module doc).

    Args:
        index_path: the Parquet landmark index (``cephalo.index`` schema).
        spec: the variant spec: ``{"steps": [...]}`` (see :func:`cephalo.preprocess.parse_steps`).
        out_dir: the variant directory (replaced whole, atomically).
        name: the variant's name (recorded only).
        ground_truth: annotator policy for ``cephalo.index.ground_truth``; None -> the policy
            recorded in the index metadata, else ``"mean"``.
        normalisation: load-time normalisation spec recorded in ``variant.json``.
        force: rebuild even when the fingerprint matches.
        progress: show tqdm progress bars.
        workers: decoding/resizing threads (OpenCV releases the GIL); default ``min(4, CPUs)``.
            The output does not depend on it.

    Returns:
        :class:`BuildResult` (``skipped`` True when the existing output was up to date).

    Raises:
        DataError: unreadable index/image, image size not the index's width/height,
            missing spacing for a ``spacing`` step.
        ConfigError: a spec with no fixed-size geometric step, or bad step arguments.
        ValueError: an unknown step name.
    """
    from tqdm.auto import tqdm

    index_path, out_dir = Path(index_path), Path(out_dir)
    if not index_path.is_file():
        raise DataError("index file not found", index_path)
    if not isinstance(spec, Mapping) or "steps" not in spec:
        raise ConfigError(f"variant {name!r}: spec needs a 'steps' list, got {spec!r}")
    norm = normalisation_spec(normalisation)
    pipe = Pipeline.from_spec(spec)
    out_wh = pipe.output_wh()
    if out_wh is None:
        raise ConfigError(
            f"variant {name!r}: needs a geometric step with a fixed output size (letterbox, stretch, spacing)"
        )

    sweep_stale(out_dir)  # a killed earlier build's temporaries, even when the variant is up to date
    index_sha = file_sha256(index_path)
    if ground_truth is None:
        ground_truth = recorded_policy(index_path)
    ref_hashes = {
        str(s.reference_index): file_sha256(s.reference_index)
        for s in pipe.steps
        if isinstance(s, HistogramMatch) and s.reference_index
    }
    fp = variant_fingerprint(index_sha, spec, ground_truth, norm, ref_hashes)
    if not force and (out_dir / "variant.json").is_file() and (out_dir / "images.npy").is_file():
        try:
            old = json.loads((out_dir / "variant.json").read_text())
        except ValueError:
            old = {}
        if old.get("fingerprint") == fp:
            return BuildResult(out_dir, fp, True, int(old.get("n_images", 0)))

    read_index, ground_truth_fn, images_table, landmark_arrays = _index_api()
    df = read_index(index_path)
    root = _index_root(index_path, df)
    names = _landmark_names(df)
    imgs = images_table(df).reset_index(drop=True)
    ids = [str(i) for i in imgs["image_id"]]
    if len(set(ids)) != len(ids):
        raise DataError(
            "index holds the same image_id in several data sets; preprocess one data set per variant", index_path
        )
    gt = ground_truth_fn(df, ground_truth)
    coords_orig = _arrays_for(ids, gt, landmark_arrays, names)
    annotators = sorted(str(a) for a in df["annotator"].dropna().unique())
    ann_orig = {a: _arrays_for(ids, df[df["annotator"] == a], landmark_arrays, names) for a in annotators}

    _fit_references(pipe, df, root, index_path, index_sha, progress)

    paths = [_resolve(root, p) for p in imgs["image_path"]]
    depth = 8
    for p in paths:
        if not p.is_file():
            raise DataError("image file not found (listed in the index)", p)
    for p in paths:
        if image_bit_depth(p) == 16:
            depth = 16
            break
    dtype = np.uint16 if depth == 16 else np.uint8
    n = len(ids)
    W, H = out_wh
    affines = np.zeros((n, 2, 3))

    with atomic_dir(out_dir) as tmp:
        cache = _allocated_memmap(tmp / "images.npy", dtype, (n, H, W))
        rows = list(imgs.itertuples(index=False))

        def work(k: int):
            row = rows[k]
            img = read_image(paths[k])
            h, w = img.shape
            if (w, h) != (int(row.width), int(row.height)):
                raise DataError(f"image is {w}x{h} px but the index says {row.width}x{row.height}", paths[k])
            if dtype == np.uint16 and img.dtype == np.uint8:
                img = img.astype(np.uint16) * 257
            elif img.dtype != dtype:  # never let a 16-bit image wrap into an 8-bit cache
                raise DataError(f"image decodes as {img.dtype} but its header said 8-bit", paths[k])
            try:
                out, m = pipe(img, (row.spacing_x_mm, row.spacing_y_mm))
            except DataError as e:
                raise DataError(str(e), paths[k]) from None
            if out.shape != (H, W):
                raise ConfigError(f"variant {name!r}: step output {out.shape[::-1]} is not the fixed size {out_wh}")
            return out, m

        n_workers = max(1, int(workers if workers is not None else min(4, os.cpu_count() or 1)))
        with ThreadPoolExecutor(n_workers) as pool:
            results = pool.map(work, range(n)) if n_workers > 1 else map(work, range(n))
            for k, (out, m) in enumerate(
                tqdm(results, total=n, desc=f"preprocess {name}".strip(), disable=not progress)
            ):
                cache[k] = out
                affines[k] = m
        cache.flush()
        del cache

        lm = G.apply_affine(affines, coords_orig)
        cols = variant_columns(
            {
                "image_id": ids,
                "split": imgs["split"].astype(str).tolist(),
                "dataset": imgs["dataset"].astype(str).tolist() if "dataset" in imgs else [""] * n,
                "device": imgs["device"].astype(str).tolist() if "device" in imgs else [""] * n,
                "image_path": imgs["image_path"].astype(str).tolist(),
                "spacing_x_mm": imgs["spacing_x_mm"].astype("float64").to_numpy(),
                "spacing_y_mm": imgs["spacing_y_mm"].astype("float64").to_numpy(),
                "orig_width": imgs["width"].astype("int32").to_numpy(),
                "orig_height": imgs["height"].astype("int32").to_numpy(),
            },
            affines,
            names,
            lm,
            coords_orig,
            {a: G.apply_affine(affines, arr) for a, arr in ann_orig.items()},
        )
        resolved = {"steps": pipe.to_spec()}
        for s in pipe.steps:
            if isinstance(s, HistogramMatch) and getattr(s, "hist16", None) is not None:
                np.savez_compressed(
                    tmp / "histogram_reference.npz",
                    hist16=s.hist16,
                    quantiles=np.asarray(s.quantiles),
                )
        meta = variant_meta(
            name=name,
            spec=resolved,
            ground_truth=ground_truth,
            normalisation=norm,
            landmark_names=names,
            annotators=annotators,
            images=ImagesShape(n_images=n, input_size=(int(W), int(H)), dtype=np.dtype(dtype).name),
            source_index={
                "path": str(index_path),
                "sha256": index_sha,
                "content_hash": ((df.attrs.get("cephalo") or {}).get("checksum")),
            },
            reference_indexes=ref_hashes,
            fingerprint=fp,
        )
        _write_table_and_meta(tmp, cols, meta)
    return BuildResult(out_dir, fp, False, n)


# --------------------------------------------------------------------------- load


def load_variant(path: str | Path) -> Variant:
    """Open a variant directory written by :func:`build_variant` (images memory-mapped).

    Raises:
        DataError: missing/corrupt files or inconsistent sizes.
    """
    import pandas as pd

    path = Path(path)
    for f in ("images.npy", "variant.parquet", "variant.json"):
        if not (path / f).is_file():
            raise DataError(f"not a variant directory (no {f})", path)
    try:
        meta = json.loads((path / "variant.json").read_text())
        table = pd.read_parquet(path / "variant.parquet")
        images = np.load(path / "images.npy", mmap_mode="r")
    except Exception as e:  # noqa: BLE001 - any corruption is a data problem
        raise DataError(f"cannot read variant ({type(e).__name__}: {e})".splitlines()[0], path) from None
    if meta.get("format") != "cephalo-variant":
        raise DataError("variant.json is not a cephalo variant", path / "variant.json")
    n = len(table)
    W, H = meta["input_size"]
    if images.shape != (n, H, W):
        raise DataError(f"images.npy has shape {images.shape}, expected {(n, H, W)}", path / "images.npy")
    names = list(meta["landmark_names"])

    def _xy(fmt: str) -> np.ndarray:
        if not names:
            return np.zeros((n, 0, 2))
        return np.stack(
            [
                np.stack(
                    [table[fmt.format(nm, "x")].to_numpy(np.float64), table[fmt.format(nm, "y")].to_numpy(np.float64)],
                    -1,
                )
                for nm in names
            ],
            axis=1,
        )

    affines = table[list(AFFINE_COLUMNS)].to_numpy(np.float64).reshape(n, 2, 3)
    return Variant(
        path=path,
        images=images,
        image_ids=[str(i) for i in table["image_id"]],
        splits=table["split"].astype(str).to_numpy(object),
        devices=table["device"].astype(str).to_numpy(object),
        datasets=table["dataset"].astype(str).to_numpy(object),
        spacing=table[["spacing_x_mm", "spacing_y_mm"]].to_numpy(np.float64),
        affines=affines,
        landmarks=_xy("{}_{}"),
        landmarks_original=_xy("{}_{}_orig"),
        annotators={a: _xy(f"ann:{a}:{{}}_{{}}") for a in meta.get("annotators", [])},
        landmark_names=names,
        orig_sizes=table[["orig_width", "orig_height"]].to_numpy(np.int64),
        input_size=(int(W), int(H)),
        normalisation=dict(meta["normalisation"]),
        spec=dict(meta["spec"]),
        meta=meta,
        table=table,
    )


def preprocess_image(
    image: np.ndarray, spec: Mapping | list | Variant, spacing: tuple[float, float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Preprocess one image for inference exactly as the variant's images were.

    Args:
        image: ``(H, W)`` uint8/uint16 original pixels.
        spec: a resolved variant spec (``variant.json["spec"]``, ``Variant.spec``, a model's
            ``meta.variant``), a bare step list, or a :class:`Variant`.
        spacing: ``(x, y)`` mm/px of ``image`` (needed by a ``spacing`` step).

    Returns:
        ``(image (H', W') same dtype, M (2, 3) float64 original px -> preprocessed px)``.
        (A 16-bit variant's uint8 input is *not* rescaled here; ``normalise`` handles both.)

    Raises:
        ConfigError: an unfitted ``histogram_match`` step; ValueError: unknown step / bad image.
    """
    if isinstance(spec, Variant):
        spec = spec.spec
    return Pipeline.from_spec(spec)(image, spacing)
