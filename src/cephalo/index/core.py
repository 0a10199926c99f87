"""Build, validate, write and read the Parquet landmark index; ground-truth policies.

The index is long/tidy: one row per image x landmark x annotator (columns in
:mod:`cephalo.index.schema`). ``x``/``y`` are float64 original-image pixels, xy, origin at
the centre of the top-left pixel (``cephalo.geometry``); NaN = missing (``visible=False``).
Pixel spacing is stored, never applied here (it is multiplied once, in
``cephalo.evaluate.metrics``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..datasets.base import Exclusion, image_header
from ..errors import DataError
from ..imageio import SPACING_RANGE_MM as _SPACING_RANGE_MM
from ..imageio import check_complete, describe_file, exif_orientation, oriented_size
from ..io import atomic_path
from .schema import COLUMNS, IMAGE_COLUMNS, KEY, METADATA_KEY, SCHEMA, SCHEMA_VERSION

__all__ = [
    "build_index",
    "validate_index",
    "write_index",
    "read_index",
    "read_index_metadata",
    "index_hash",
    "ground_truth",
    "landmark_arrays",
    "images_table",
    "spacing_outliers",
    "SPACING_RANGE_MM",
    "SPACING_RATIO_RANGE",
]

#: plausible pixel spacing of a cephalogram, mm/px: one home, :data:`cephalo.imageio.SPACING_RANGE_MM`
SPACING_RANGE_MM: tuple[float, float] = _SPACING_RANGE_MM
#: plausible ratio of an image's spacing to the median spacing of its device
SPACING_RATIO_RANGE: tuple[float, float] = (0.67, 1.5)

_STR = ["dataset", "image_id", "split", "image_path", "device", "annotator", "landmark_name", "landmark_symbol"]


def _coerce(df: pd.DataFrame) -> pd.DataFrame:
    """Columns in schema order with the schema's pandas dtypes."""
    out = pd.DataFrame({c: df[c] for c in COLUMNS})
    for c in _STR:
        out[c] = out[c].astype(str)
    out["width"] = out["width"].astype(np.int32)
    out["height"] = out["height"].astype(np.int32)
    for c in ("spacing_x_mm", "spacing_y_mm", "x", "y"):
        out[c] = pd.to_numeric(out[c], errors="raise").astype(np.float64)
    out["landmark_index"] = out["landmark_index"].astype(np.int16)
    out["visible"] = out["visible"].astype(bool)
    out["cvm_stage"] = (
        pd.array(out["cvm_stage"].astype("float64"), dtype="Int8") if len(out) else pd.array([], dtype="Int8")
    )
    return out.reset_index(drop=True)


def build_index(
    result: Any,
    root: str | Path | None = None,
    *,
    size_from: str = "header",
    drop_out_of_image: bool = False,
    require_spacing: bool = True,
    policy: str | None = None,
    progress: bool = True,
    allow_implausible_spacing: bool = False,
) -> pd.DataFrame:
    """Turn an adapter's :class:`~cephalo.datasets.base.AdapterResult` into the validated index.

    Image sizes are read from the image headers (PIL opens lazily; pixels are not decoded)
    unless ``size_from="pixels"`` (decode every image; for benchmarking/checking only).

    Args:
        result: the adapter output (rows get ``width``/``height`` here).
        root: the release root, recorded in the metadata; image paths under it are stored
            relative to it by :func:`write_index`.
        drop_out_of_image: exclude (and report in ``result.exclusions``) annotations with
            a landmark outside the image instead of raising.
        require_spacing: a missing pixel spacing is an error (default).
        policy: the ground-truth policy to record (and check it can be applied).
        allow_implausible_spacing: index images whose pixel spacing :func:`spacing_outliers`
            flags (they still appear in the quality report) instead of raising.

    Returns:
        DataFrame in schema column order, sorted by (dataset, image_id, annotator,
        landmark_index), image paths absolute; ``df.attrs["cephalo"]`` holds the metadata.

    Raises:
        DataError: unreadable/missing/truncated images, every :func:`validate_index` problem,
            and implausible pixel spacings (unless ``allow_implausible_spacing``).
    """
    from tqdm import tqdm

    if size_from not in ("header", "pixels"):
        raise ValueError(f"size_from must be 'header' or 'pixels', got {size_from!r}")
    if not result.rows:
        raise DataError(
            f"adapter {result.adapter!r} produced no annotations ({len(result.exclusions)} exclusion(s))", root
        )
    df = pd.DataFrame(result.rows)
    paths = pd.unique(df["image_path"])
    sizes = {}
    for p in tqdm(
        paths, desc=f"index {result.dataset}: image {size_from}s", unit="img", disable=not progress, leave=False
    ):
        if size_from == "header":
            sizes[p] = image_header(p)[:2]
        else:
            from PIL import Image

            check_complete(p)
            try:
                with Image.open(p) as im:
                    im.load()
                    sizes[p] = oriented_size(*im.size, exif_orientation(p))
            except (OSError, ValueError, SyntaxError):
                raise DataError(f"cannot read image: {describe_file(p)}", p) from None
    df["width"] = df["image_path"].map(lambda p: sizes[p][0])
    df["height"] = df["image_path"].map(lambda p: sizes[p][1])
    df = _coerce(df)

    if drop_out_of_image:
        bad = _out_of_image(df)
        if bad.any():
            groups = df.loc[bad, ["dataset", "image_id", "annotator"]].drop_duplicates()
            for _, g in groups.iterrows():
                sel = bad & (df["image_id"] == g["image_id"]) & (df["annotator"] == g["annotator"])
                syms = tuple(df.loc[sel, "landmark_symbol"])
                result.exclusions.append(
                    Exclusion(
                        str(df.loc[sel, "image_path"].iloc[0]),
                        f"landmarks outside the image: {list(syms)}",
                        g["image_id"],
                        g["annotator"],
                        syms,
                    )
                )
            drop = df.set_index(["dataset", "image_id", "annotator"]).index.isin(
                groups.set_index(["dataset", "image_id", "annotator"]).index
            )
            df = df.loc[~drop].reset_index(drop=True)

    df = df.sort_values(KEY, kind="mergesort").reset_index(drop=True)
    cat = result.catalogue
    meta = {
        "schema_version": SCHEMA_VERSION,
        "catalogue": {"key": cat.key, "names": cat.names, "symbols": cat.symbols},
        "source": {
            "dataset": result.dataset,
            "adapter": result.adapter,
            "adapter_version": result.adapter_version,
            "root": None if root is None else str(Path(root).resolve()),
            "options": _jsonable(result.options),
        },
        "adapter_version": result.adapter_version,
        "policy": policy,
    }
    validate_index(df, catalogue_names=cat.names, require_spacing=require_spacing, source=root)
    if not allow_implausible_spacing:
        bad = spacing_outliers(images_table(df))
        if bad:
            ex = "; ".join(
                f"{b['image_id']} ({b['device']}): {b['spacing_mm']:g} mm/px, {b['reason']}" for b in bad[:3]
            )
            raise DataError(
                f"implausible pixel spacing for {len(bad)} image(s), e.g. {ex}. Fix the source, or "
                "set allow_implausible_spacing: true for this data set to index it anyway "
                "(the quality report lists them)",
                root,
            )
    if policy is not None:
        ground_truth(df, policy, on_missing="drop")  # raises if the policy matches nothing
    meta["checksum"] = index_hash(df)
    df.attrs["cephalo"] = meta
    return df


def spacing_outliers(
    images: pd.DataFrame,
    *,
    valid_range: tuple[float, float] = SPACING_RANGE_MM,
    ratio_range: tuple[float, float] = SPACING_RATIO_RANGE,
) -> list[dict]:
    """Images whose pixel spacing is implausible: outside ``valid_range`` mm/px, or whose
    ratio to the median spacing of their (dataset, device) is outside ``ratio_range``
    (e.g. 1.139 mm/px among siblings at 0.139). Missing (NaN) spacings are not judged here.

    Args:
        images: one row per image (:func:`images_table`): ``dataset``, ``image_id``, ``device``,
            ``image_path``, ``spacing_x_mm``, ``spacing_y_mm`` (float64 mm/px).

    Returns:
        one dict per (image, axis) flagged: ``dataset``, ``image_id``, ``device``, ``image_path``,
        ``axis`` (``"x"``/``"y"``), ``spacing_mm``, ``device_median_mm``, ``ratio``, ``reason``;
        sorted by (dataset, image_id, axis).
    """
    lo, hi = valid_range
    rlo, rhi = ratio_range
    out = []
    for axis in ("x", "y"):
        col = f"spacing_{axis}_mm"
        v = images[col].astype("float64")
        med = v.groupby([images["dataset"], images["device"]]).transform("median")
        ratio = v / med
        for i in np.flatnonzero(v.notna().to_numpy()):
            sp, m, r = float(v.iloc[i]), float(med.iloc[i]), float(ratio.iloc[i])
            if not lo <= sp <= hi:
                reason = f"outside the plausible range {lo:g}-{hi:g} mm/px"
            elif not rlo <= r <= rhi:
                reason = f"{r:.2f}x the median {m:g} mm/px of device {images['device'].iloc[i]!r}"
            else:
                continue
            out.append(
                {
                    "dataset": str(images["dataset"].iloc[i]),
                    "image_id": str(images["image_id"].iloc[i]),
                    "device": str(images["device"].iloc[i]),
                    "image_path": str(images["image_path"].iloc[i]),
                    "axis": axis,
                    "spacing_mm": sp,
                    "device_median_mm": m,
                    "ratio": r,
                    "reason": reason,
                }
            )
    return sorted(out, key=lambda d: (d["dataset"], d["image_id"], d["axis"]))


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def _out_of_image(df: pd.DataFrame) -> np.ndarray:
    """Rows whose visible landmark lies outside [-0.5, W-0.5] x [-0.5, H-0.5] (pixel-centre frame)."""
    x, y = df["x"].to_numpy(), df["y"].to_numpy()
    w, h = df["width"].to_numpy(), df["height"].to_numpy()
    with np.errstate(invalid="ignore"):
        return df["visible"].to_numpy() & ((x < -0.5) | (y < -0.5) | (x > w - 0.5) | (y > h - 0.5))


def _examples(frame: pd.DataFrame, cols: Sequence[str], n: int = 3) -> str:
    return "; ".join(", ".join(f"{c}={r[c]}" for c in cols) for _, r in frame.head(n).iterrows())


def validate_index(
    df: pd.DataFrame,
    *,
    catalogue_names: Sequence[str] | None = None,
    require_spacing: bool = True,
    source: str | Path | None = None,
) -> None:
    """Check an index table; raise on the first kind of problem, naming examples.

    Checks: schema columns; duplicate keys (dataset, image_id, annotator, landmark_index);
    landmark names/indices against the catalogue; the same number of landmarks for every
    image x annotator; per-image columns constant within an image (so one image is in one
    split); one image file per image id; positive sizes; pixel
    spacing present and positive (unless ``require_spacing=False``); ``visible`` iff x, y
    finite; coordinates inside the image ([-0.5, W-0.5] in the pixel-centre frame);
    coordinates that look like millimetres (every landmark of an annotation below 1/5 of
    the image width and height while a spacing is given).

    Raises:
        DataError: naming ``source`` (the index file or release root) and the problem.
    """
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"index lacks column(s) {missing}", source)
    if len(df) == 0:
        raise DataError("index is empty", source)
    dup = df.duplicated(KEY, keep=False)
    if dup.any():
        raise DataError(f"{int(dup.sum())} rows with duplicate keys {KEY}, e.g. {_examples(df[dup], KEY)}", source)
    if catalogue_names is not None:
        k = len(catalogue_names)
        li = df["landmark_index"].to_numpy()
        if (li < 0).any() or (li >= k).any():
            raise DataError(f"landmark_index outside 0..{k - 1}", source)
        expect = np.asarray(catalogue_names, dtype=object)[li]
        wrong = df["landmark_name"].to_numpy(dtype=object) != expect
        if wrong.any():
            raise DataError(
                "landmark_name does not match the catalogue order, e.g. "
                f"{_examples(df[wrong], ['image_id', 'landmark_index', 'landmark_name'])}",
                source,
            )
    counts = df.groupby(["dataset", "image_id", "annotator"], sort=False).size()
    k_expected = len(catalogue_names) if catalogue_names is not None else int(counts.max())
    odd = counts[counts != k_expected]
    if len(odd):
        ex = ", ".join(f"{i[1]}/{i[2]}: {n}" for i, n in odd.head(3).items())
        raise DataError(
            f"inconsistent landmark counts: expected {k_expected} per image x annotator, {len(odd)} differ ({ex})",
            source,
        )
    per_image = df.drop_duplicates(["dataset", *IMAGE_COLUMNS])
    dupimg = per_image.duplicated(["dataset", "image_id"], keep=False)
    if dupimg.any():
        raise DataError(
            "image columns (split, path, size, spacing, device) differ between rows of one "
            f"image, e.g. image_id={per_image.loc[dupimg, 'image_id'].iloc[0]}",
            source,
        )
    shared = per_image.drop_duplicates(["dataset", "image_id"]).duplicated("image_path", keep=False)
    if shared.any():
        ex = per_image.loc[shared].sort_values("image_path").head(2)
        raise DataError(
            f"one image file under several image ids ({', '.join(ex['image_id'])} -> "
            f"{ex['image_path'].iloc[0]}); an image may appear once (in one split)",
            source,
        )
    if (per_image["width"] <= 0).any() or (per_image["height"] <= 0).any():
        raise DataError("non-positive image width/height", source)
    sx, sy = per_image["spacing_x_mm"], per_image["spacing_y_mm"]
    nos = sx.isna() | sy.isna()
    if require_spacing and nos.any():
        raise DataError(
            f"missing pixel spacing for {int(nos.sum())} image(s), e.g. "
            f"{_examples(per_image[nos], ['image_id', 'image_path'])}",
            source,
        )
    with np.errstate(invalid="ignore"):
        nonpos = ~nos & ((sx <= 0) | (sy <= 0) | ~np.isfinite(sx) | ~np.isfinite(sy))
    if nonpos.any():
        raise DataError(
            f"non-positive pixel spacing, e.g. {_examples(per_image[nonpos], ['image_id', 'spacing_x_mm'])}", source
        )
    finite = np.isfinite(df["x"].to_numpy()) & np.isfinite(df["y"].to_numpy())
    vis_bad = finite != df["visible"].to_numpy()
    if vis_bad.any():
        raise DataError(
            "'visible' disagrees with finite x/y, e.g. "
            f"{_examples(df[vis_bad], ['image_id', 'annotator', 'landmark_name'])}",
            source,
        )
    out = _out_of_image(df)
    if out.any():
        raise DataError(
            f"{int(out.sum())} landmark(s) outside the image, e.g. "
            f"{_examples(df[out], ['image_path', 'annotator', 'landmark_name', 'x', 'y', 'width', 'height'])}",
            source,
        )
    vis = df[df["visible"] & df["spacing_x_mm"].notna()]
    if len(vis):
        g = vis.groupby(["dataset", "image_id", "annotator"], sort=False).agg(
            xmax=("x", "max"),
            ymax=("y", "max"),
            w=("width", "first"),
            h=("height", "first"),
            n=("x", "size"),
            path=("image_path", "first"),
        )
        mm_like = g[(g["n"] >= 3) & (g["xmax"] < g["w"] / 5) & (g["ymax"] < g["h"] / 5)]
        if len(mm_like):
            i, r = next(iter(mm_like.iterrows()))
            raise DataError(
                f"coordinates look like millimetres, not pixels: {len(mm_like)} annotation(s) lie within 1/5 of "
                f"the image size, e.g. {r['path']} ({i[2]}): max x {r['xmax']:.1f}, max y {r['ymax']:.1f} "
                f"in a {r['w']}x{r['h']} image",
                source,
            )


def _relative(p: str, root: Path | None) -> str:
    if root is None:
        return p
    try:
        return Path(p).relative_to(root).as_posix()
    except ValueError:
        return p


def write_index(df: pd.DataFrame, path: str | Path, meta: dict | None = None) -> None:
    """Write the index as Parquet atomically, with the metadata in the file.

    Image paths under ``meta["source"]["root"]`` are stored relative to it.

    Args:
        meta: defaults to ``df.attrs["cephalo"]`` (set by :func:`build_index`).

    Raises:
        ValueError: no metadata; DataError: the table fails :func:`validate_index`.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    meta = dict(meta if meta is not None else df.attrs.get("cephalo") or {})
    if not meta:
        raise ValueError("write_index: no metadata (build the table with build_index or pass meta)")
    df = _coerce(df)
    validate_index(df, catalogue_names=meta.get("catalogue", {}).get("names"), source=path, require_spacing=False)
    meta["schema_version"] = SCHEMA_VERSION
    meta["checksum"] = index_hash(df)
    root = (meta.get("source") or {}).get("root")
    root_p = None if root is None else Path(root)
    df = df.assign(image_path=[_relative(p, root_p) for p in df["image_path"]])
    table = pa.Table.from_pandas(df, schema=SCHEMA, preserve_index=False)
    table = table.replace_schema_metadata({METADATA_KEY: json.dumps(meta).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def read_index_metadata(path: str | Path) -> dict:
    """The ``cephalo`` metadata of an index file (without reading the table).

    Raises:
        DataError: not a Parquet file, or not a cephalo index, or a newer schema version.
    """
    import pyarrow.parquet as pq

    path = Path(path)
    try:
        schema = pq.read_schema(path)
    except FileNotFoundError:
        raise DataError("index file not found", path) from None
    except Exception as e:  # pyarrow raises ArrowInvalid/OSError for non-Parquet files
        raise DataError(f"not a Parquet file ({type(e).__name__})", path) from None
    raw = (schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise DataError("not a cephalo landmark index (no 'cephalo' metadata)", path)
    meta = json.loads(raw)
    if int(meta.get("schema_version", -1)) != SCHEMA_VERSION:
        raise DataError(
            f"index schema version {meta.get('schema_version')} != supported {SCHEMA_VERSION}; "
            "rebuild it with `cephalo index`",
            path,
        )
    return meta


def recorded_policy(path: str | Path, default: str = "mean") -> str:
    """The ground-truth policy ``cephalo index`` recorded in an index file's metadata.

    Returns ``default`` where the file records none or its metadata cannot be read (the table
    reader reports a broken index with its own error).
    """
    try:
        return read_index_metadata(path).get("policy") or default
    except DataError:
        return default


def read_index(
    path: str | Path, *, root: str | Path | None = None, check_images: bool = True, require_spacing: bool = True
) -> pd.DataFrame:
    """Read and validate a landmark index.

    Args:
        root: override the recorded release root (when the data moved).
        check_images: every image file must exist (a ``stat`` per image, no decoding).

    Returns:
        DataFrame (schema columns; ``cvm_stage`` pandas ``Int8``), image paths absolute,
        ``df.attrs["cephalo"]`` = the metadata.

    Raises:
        DataError: unreadable file, wrong schema/version, checksum mismatch, any
            :func:`validate_index` problem, or (``check_images``) a missing image.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    meta = read_index_metadata(path)
    try:
        table = pq.read_table(path)
    except Exception as e:
        raise DataError(f"unreadable Parquet ({type(e).__name__}: {e})", path) from None
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise DataError(f"index lacks column(s) {missing}", path)
    df = table.select(COLUMNS).to_pandas(types_mapper={pa.int8(): pd.Int8Dtype()}.get)
    df = _coerce(df)
    base = (
        Path(root)
        if root is not None
        else (Path(meta["source"]["root"]) if (meta.get("source") or {}).get("root") else path.parent)
    )
    df["image_path"] = [p if os.path.isabs(p) else str(base / p) for p in df["image_path"]]
    validate_index(
        df, catalogue_names=meta.get("catalogue", {}).get("names"), require_spacing=require_spacing, source=path
    )
    if meta.get("checksum") and index_hash(df) != meta["checksum"]:
        raise DataError("content does not match the checksum in its metadata (edited or corrupted)", path)
    if check_images:
        for p in pd.unique(df["image_path"]):
            if not os.path.isfile(p):
                raise DataError(f"image listed in the index is missing: {p}", path)
    meta["source"] = dict(meta.get("source") or {}, root=str(base))
    df.attrs["cephalo"] = meta
    return df


def index_hash(df: pd.DataFrame) -> str:
    """Stable SHA-256 content hash of an index table (for provenance).

    Covers every column except ``image_path`` (where the files lie is not content), after
    sorting by the key; independent of row order, file location and pandas/pyarrow versions.
    """
    d = df.sort_values(KEY, kind="mergesort").reset_index(drop=True)
    h = hashlib.sha256(f"cephalo-index-v{SCHEMA_VERSION}".encode())
    for c in COLUMNS:
        if c == "image_path":
            continue
        h.update(b"\x00" + c.encode() + b"\x00")
        s = d[c]
        if c in _STR:
            h.update("\x1f".join(s.to_numpy(dtype=object).tolist()).encode())
        elif c == "cvm_stage":
            h.update(s.astype("Int64").fillna(-1).to_numpy(dtype=np.int64).tobytes())
        elif c == "visible":
            h.update(s.to_numpy(dtype=np.uint8).tobytes())
        elif c in ("width", "height", "landmark_index"):
            h.update(s.to_numpy(dtype=np.int64).tobytes())
        else:
            a = s.to_numpy(dtype=np.float64)
            a = np.where(np.isnan(a), np.float64("nan"), a) + 0.0  # canonical NaN, -0.0 -> 0.0
            h.update(a.tobytes())
    return h.hexdigest()


def ground_truth(df: pd.DataFrame, policy: str, *, on_missing: str = "error") -> pd.DataFrame:
    """One annotator per image x landmark.

    Policies: ``"senior"``, ``"junior"``, any annotator name present (e.g. ``"Dr.farhadifar"``):
    that annotator's rows. ``"mean"``: an image's ready-made ``mean`` annotation when the
    source ships one (ISBI ``400_mean``), else the float mean of the annotators present for
    that landmark (NaN ignored), never rounded (unlike the official Aariz loader).

    Args:
        on_missing: for a named policy, images lacking that annotator: ``"error"`` or ``"drop"``.

    Returns:
        DataFrame with the index columns, ``annotator`` set to ``policy``, sorted by
        (dataset, image_id, landmark_index).

    Raises:
        DataError: the policy matches no annotation, or (``on_missing="error"``) some images
            lack it (the message names them).
        ValueError: bad ``on_missing``.
    """
    if on_missing not in ("error", "drop"):
        raise ValueError(f"on_missing must be 'error' or 'drop', got {on_missing!r}")
    key_img = ["dataset", "image_id"]
    if policy == "mean":
        has_mean = df["annotator"] == "mean"
        ready_imgs = df.loc[has_mean, key_img].drop_duplicates()
        ready_mask = df.set_index(key_img).index.isin(ready_imgs.set_index(key_img).index)
        ready = df[ready_mask & has_mean]
        rest = df[~ready_mask & (df["annotator"] != "mean")]
        parts = [ready]
        if len(rest):
            keys = ["dataset", "image_id", "landmark_index"]
            agg = rest.groupby(keys, sort=False).agg(x=("x", "mean"), y=("y", "mean"))  # skipna
            first = rest.drop_duplicates(keys).set_index(keys).drop(columns=["x", "y"])
            m = first.join(agg).reset_index()
            m["visible"] = np.isfinite(m["x"]) & np.isfinite(m["y"])
            parts.append(m[COLUMNS])
        out = pd.concat(parts, ignore_index=True)
    else:
        out = df[df["annotator"] == policy]
        if len(out) == 0:
            raise DataError(
                f"ground-truth policy {policy!r} matches no annotator; present: "
                f"{sorted(df['annotator'].unique())} (or 'mean')"
            )
        all_imgs = df[key_img].drop_duplicates()
        lacking = all_imgs[~all_imgs.set_index(key_img).index.isin(out.set_index(key_img).index)]
        if len(lacking) and on_missing == "error":
            raise DataError(
                f"{len(lacking)} image(s) have no {policy!r} annotation (e.g. "
                f"{list(lacking['image_id'].head(5))}); use policy 'mean' or drop them"
            )
    if len(out) == 0:
        raise DataError(f"ground-truth policy {policy!r} produced no rows")
    out = out.assign(annotator=policy)
    out = _coerce(out).sort_values(["dataset", "image_id", "landmark_index"], kind="mergesort")
    out = out.reset_index(drop=True)
    out.attrs = dict(df.attrs)
    return out


def landmark_arrays(df: pd.DataFrame, names: Sequence[str] | None = None) -> tuple[list[str], np.ndarray]:
    """Stack one-annotator rows into a coordinate array.

    Args:
        df: the output of :func:`ground_truth` (one row per image x landmark).
        names: canonical landmark names (the K axis order); default the table's
            catalogue order. Names absent from the table give NaN columns.

    Returns:
        (image_ids in first-appearance order -- the order of :func:`images_table`,
        coords (N, K, 2) float64, xy, original-image pixels, NaN = missing).

    Raises:
        ValueError: several annotators per image x landmark (call ground_truth first).
    """
    if df.duplicated(["dataset", "image_id", "landmark_name"]).any():
        raise ValueError("landmark_arrays: several rows per image x landmark; call ground_truth(df, policy) first")
    if names is None:
        names = list(df.drop_duplicates("landmark_index").sort_values("landmark_index")["landmark_name"])
    ids = list(pd.unique(df["image_id"]))
    ipos = {i: n for n, i in enumerate(ids)}
    kpos = {nm: k for k, nm in enumerate(names)}
    coords = np.full((len(ids), len(names), 2), np.nan, dtype=np.float64)
    sel = df["landmark_name"].isin(kpos)
    sub = df[sel]
    r = sub["image_id"].map(ipos).to_numpy()
    c = sub["landmark_name"].map(kpos).to_numpy()
    coords[r, c, 0] = sub["x"].to_numpy(dtype=np.float64)
    coords[r, c, 1] = sub["y"].to_numpy(dtype=np.float64)
    return ids, coords


def images_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per image: image_id, split, image_path, width, height, spacing_x_mm,
    spacing_y_mm, device, dataset -- in first-appearance order (that of :func:`landmark_arrays`)."""
    out = df.drop_duplicates(["dataset", "image_id"])[IMAGE_COLUMNS].reset_index(drop=True)
    return out
