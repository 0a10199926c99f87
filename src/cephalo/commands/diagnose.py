"""``cephalo diagnose``: what is wrong with landmark predictions made by any pipeline.

    cephalo diagnose --predictions preds.csv --index results/index/aariz.parquet --split test --out diag/

Reads predictions from CSV or JSON (one row/record per image x landmark: an image id, a landmark
by name/symbol or by index in a named catalogue, x, y), matches them to the index's ground truth
of ``--split``, reports MRE/SDR in mm (each image's own pixel spacing, via
:mod:`cephalo.evaluate.metrics`) and names the mistakes that explain the errors, each with its
evidence and the MRE once undone (:func:`cephalo.evaluate.mistakes.diagnose_predictions`), for the
whole file or per device / image size / data set of the index (docs/diagnose.md).

Accepted layouts (column / key names are matched case-insensitively):

* CSV, long: ``image_id`` (or ``image``, ``id``, ``file``, ``filename``: a file name's stem is used),
  ``landmark`` (or ``landmark_name``, ``name``, ``symbol``, ``title``) *or* ``landmark_index`` (or
  ``index``), and ``x, y`` (or ``x_px, y_px``; ``x_mm, y_mm`` mean millimetres) - e.g. the
  ``predictions.csv`` of ``cephalo predict``;
* JSON: a list of such records; ``{"predictions": [records]}``; the ``predictions.json`` of
  ``cephalo predict`` (``{"images": [{"image_id", "landmarks": [{"name", "x", "y"}]}]}``); or
  ``{image_id: {landmark: [x, y]}}`` / ``{image_id: [[x, y], ...]}`` (list position = index).

Image ids are text (``076`` stays ``076``); duplicated rows (the first is used), NaN coordinates,
unknown ids and images without predictions are counted in ``diagnosis.json`` (``input``) and the summary.

Output folder (written whole, atomically): ``diagnosis.md`` (plain words), ``diagnosis.json``,
``per_landmark.csv`` (MRE and bias per landmark, as given and after undoing), ``plots/diagnosis.png``,
``plots/corrections.png`` (per group: as given and corrected).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import numpy as np

from ..errors import DataError
from ._common import params_option, read_params

_ID_COLS = ("image_id", "image", "id", "file", "filename", "file_name", "image_name")
_NAME_COLS = ("landmark_name", "landmark", "name", "symbol", "landmark_symbol", "title")
_INDEX_COLS = ("landmark_index", "index", "landmark_idx", "idx", "landmark_id")
_XY_COLS = (("x", "y", "px"), ("x_px", "y_px", "px"), ("x_mm", "y_mm", "mm"))


def _records_from_json(doc: Any, path: Path) -> list[dict]:
    """Flatten the accepted JSON layouts to long records."""
    if isinstance(doc, dict) and isinstance(doc.get("images"), list):
        out = []
        for img in doc["images"]:
            iid = img.get("image_id", img.get("file"))
            for k, lm in enumerate(img.get("landmarks") or []):
                out.append(
                    {
                        "image_id": iid,
                        **({"landmark_index": k} if "name" not in lm and "symbol" not in lm else {}),
                        **lm,
                    }
                )
        return out
    if isinstance(doc, dict) and isinstance(doc.get("predictions"), list):
        return list(doc["predictions"])
    if isinstance(doc, list):
        return list(doc)
    if isinstance(doc, dict):
        out = []
        for iid, lms in doc.items():
            if isinstance(lms, dict):
                items = [(name, v) for name, v in lms.items()]
                key = "landmark"
            elif isinstance(lms, list):
                items = list(enumerate(lms))
                key = "landmark_index"
            else:
                raise DataError(
                    f"image {iid!r}: expected a mapping or list of landmarks, got {type(lms).__name__}", path
                )
            for name, v in items:
                xy = (v.get("x"), v.get("y")) if isinstance(v, dict) else tuple(v)
                if len(xy) != 2:
                    raise DataError(f"image {iid!r}, landmark {name!r}: expected [x, y], got {v!r}", path)
                out.append({"image_id": iid, key: name, "x": xy[0], "y": xy[1]})
        return out
    raise DataError(f"unrecognised JSON layout (top level {type(doc).__name__})", path)


def read_predictions(path: str | Path):
    """Read a predictions file into a long table.

    Returns:
        ``(table, units)``: a DataFrame with ``image_id`` (str), ``landmark`` (str or None),
        ``landmark_index`` (int or -1), ``x``, ``y`` (float64), and ``units`` ``"px"`` or ``"mm"``.

    Raises:
        DataError: unreadable file, no image / landmark / coordinate column, non-numeric x/y.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError("predictions file not found", path)
    try:
        if path.suffix.lower() == ".json":
            df = pd.DataFrame.from_records(_records_from_json(json.loads(path.read_text()), path))
        else:
            df = pd.read_csv(path, dtype=str)  # ids stay text: "076" is not 76
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as e:
        raise DataError(f"cannot read predictions ({type(e).__name__}: {e})".splitlines()[0], path) from None
    if df.empty:
        raise DataError("no predictions in the file", path)
    cols = {str(c).strip().lower(): c for c in df.columns}
    idc = next((cols[c] for c in _ID_COLS if c in cols), None)
    if idc is None:
        raise DataError(f"no image id column (one of {list(_ID_COLS)}); columns: {list(df.columns)}", path)
    namec = next((cols[c] for c in _NAME_COLS if c in cols), None)
    indexc = next((cols[c] for c in _INDEX_COLS if c in cols), None)
    if namec is None and indexc is None:
        raise DataError(
            f"no landmark column (a name: {list(_NAME_COLS)}, or an index: {list(_INDEX_COLS)}); "
            f"columns: {list(df.columns)}",
            path,
        )
    xy = next(((cols[a], cols[b], u) for a, b, u in _XY_COLS if a in cols and b in cols), None)
    if xy is None:
        raise DataError(f"no coordinate columns (x, y / x_px, y_px / x_mm, y_mm); columns: {list(df.columns)}", path)
    if df[idc].isna().any():
        raise DataError(f"column {idc!r}: {int(df[idc].isna().sum())} row(s) without an image id", path)
    out = pd.DataFrame({"image_id": [str(v).strip() for v in df[idc]]})
    named = namec is not None and df[namec].notna().all() and pd.to_numeric(df[namec], errors="coerce").isna().any()
    if named:
        out["landmark"] = df[namec].astype(str).str.strip().to_numpy()
        out["landmark_index"] = -1
    else:
        col = indexc if indexc is not None else namec
        idx = pd.to_numeric(df[col], errors="coerce")
        if idx.isna().any() or (idx % 1 != 0).any():
            bad = df.loc[idx.isna() | (idx % 1 != 0), col].head(3).tolist()
            raise DataError(f"column {col!r}: landmark indices must be integers, got {bad}", path)
        out["landmark"] = None
        out["landmark_index"] = idx.astype(int).to_numpy()
    for c, src in (("x", xy[0]), ("y", xy[1])):
        v = pd.to_numeric(df[src], errors="coerce")
        bad = v.isna() & df[src].notna()
        if bad.any():
            raise DataError(f"column {src!r}: non-numeric value {df.loc[bad, src].iloc[0]!r}", path)
        out[c] = v.astype(np.float64).to_numpy()
    return out, xy[2]


def _resolve_names(table, catalogue, path: Path) -> list:
    """Canonical landmark name per row: by name/symbol/title (any built-in catalogue) or index in ``catalogue``."""
    from ..landmarks import CATALOGUES

    names = []
    for lm, i in zip(table["landmark"], table["landmark_index"], strict=True):
        if lm is not None and i < 0:
            hit = None
            for cat in [catalogue, *CATALOGUES.values()]:
                try:
                    hit = cat.lookup(lm).name
                    break
                except KeyError:
                    continue
            if hit is None:
                raise DataError(
                    f"landmark {lm!r} is in no catalogue ({catalogue.key} or built-in "
                    f"{sorted(CATALOGUES)}); use canonical names, symbols or titles",
                    path,
                )
            names.append(hit)
        else:
            if not 0 <= i < len(catalogue):
                raise DataError(
                    f"landmark index {i} outside catalogue {catalogue.key!r} (0-{len(catalogue) - 1}); "
                    "give --catalogue or --first-index",
                    path,
                )
            names.append(catalogue.names[i])
    return names


def _arrays(table, names_col, ids, names) -> tuple[np.ndarray, int]:
    """``(N, K, 2)`` float64 coordinates of ``ids`` x ``names`` (NaN = none) and the number of
    duplicated (image, landmark) rows; the first row of a duplicate is used."""
    out = np.full((len(ids), len(names), 2), np.nan)
    seen = np.zeros(out.shape[:2], dtype=bool)
    ri = {i: n for n, i in enumerate(ids)}
    ci = {n: k for k, n in enumerate(names)}
    dup = 0
    for iid, nm, x, y in zip(table["image_id"], names_col, table["x"], table["y"], strict=True):
        r, c = ri.get(iid), ci.get(nm)
        if r is not None and c is not None:
            if seen[r, c]:
                dup += 1
                continue
            seen[r, c] = True
            out[r, c] = (x, y)
    return out, dup


def match_ids(file_ids, known) -> tuple[list[str], dict]:
    """Map the file's image ids (text) to the index's: as written, a file name's stem (folders and
    extensions dropped), or - for purely numeric ids - the one index id of the same number.

    Returns:
        (mapped ids, ``{"by_file_name": n, "by_number": n}``: how many distinct ids matched how).
    """
    known = list(known)
    kset = set(known)
    by_num: dict[int, list[str]] = {}
    for k in known:
        if k.isdigit():
            by_num.setdefault(int(k), []).append(k)
    memo: dict[str, str] = {}
    how = {"by_file_name": 0, "by_number": 0}
    for i in dict.fromkeys(file_ids):
        j, stem = i, Path(i).stem
        if i not in kset and stem in kset:
            j = stem
            how["by_file_name"] += 1
        elif i not in kset and stem.isdigit() and len(by_num.get(int(stem), [])) == 1:
            j = by_num[int(stem)][0]
            how["by_number"] += 1
        memo[i] = j
    return [memo[i] for i in file_ids], how


@click.command(name="diagnose")
@click.option(
    "--predictions",
    "pred_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="predictions CSV or JSON (image id, landmark name or index, x, y)",
)
@click.option(
    "--index",
    "index_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="the landmark index (cephalo index) holding the ground truth and pixel spacings",
)
@click.option("--split", default="test", show_default=True, help="split of the index ('all' for every image)")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="output folder (diagnosis.md, diagnosis.json, per_landmark.csv, plots/)",
)
@click.option(
    "--catalogue",
    default=None,
    help="catalogue of landmark indices in the file (isbi19, aariz29, cldetection38); default the index's",
)
@click.option(
    "--first-index",
    type=click.IntRange(0, 1),
    default=0,
    show_default=True,
    help="number of the first landmark in the file (1 for 1-based indices)",
)
@click.option(
    "--units",
    type=click.Choice(["auto", "px", "mm"]),
    default="auto",
    show_default=True,
    help="units of x/y (auto: mm for x_mm/y_mm columns, else px)",
)
@click.option("--policy", default=None, help="ground-truth annotator policy (default: the index's)")
@click.option("--name", default=None, help="run name in the report and plots (default: the output folder's name)")
@params_option
def command(
    pred_path: Path,
    index_path: Path,
    split: str,
    out_dir: Path,
    catalogue: str | None,
    first_index: int,
    units: str,
    policy: str | None,
    name: str | None,
    params_path: Path,
) -> None:
    """Diagnose predictions made by any pipeline: metrics in mm and what is wrong with them."""
    import pandas as pd

    from ..evaluate import plots
    from ..evaluate.mistakes import diagnose_predictions
    from ..evaluate.mistakes.figure import corrections_figure
    from ..geometry import apply_affine, scale_translate
    from ..index import read_index
    from ..index.core import ground_truth, images_table, landmark_arrays
    from ..io import atomic_dir, write_json
    from ..landmarks import CATALOGUES, get_catalogue

    th = read_params(params_path, optional=True).evaluate.diagnosis.model_dump()
    name = name or out_dir.name
    df = read_index(index_path, check_images=False)
    meta = df.attrs.get("cephalo", {})
    cat_meta = meta.get("catalogue") or {}
    try:
        index_cat = get_catalogue(cat_meta["key"]) if cat_meta.get("key") in CATALOGUES else None
        file_cat = get_catalogue(catalogue) if catalogue else index_cat
    except ValueError as e:
        raise DataError(str(e), pred_path) from None
    if split != "all":
        df = df[df["split"] == split]
        if df.empty:
            raise DataError(f"no image in split {split!r}", index_path)
    gt_df = ground_truth(df, policy or meta.get("policy") or "mean")
    gt_names = list(gt_df.drop_duplicates("landmark_index").sort_values("landmark_index")["landmark_name"])
    ids, gt = landmark_arrays(gt_df, gt_names)
    imgs = images_table(gt_df)

    table, file_units = read_predictions(pred_path)
    units = file_units if units == "auto" else units
    table["landmark_index"] = np.where(table["landmark_index"] >= 0, table["landmark_index"] - first_index, -1)
    if file_cat is None and (table["landmark_index"] >= 0).any():
        raise DataError(
            "landmarks are given by index but the index has no built-in catalogue; pass --catalogue", pred_path
        )
    lm_names = _resolve_names(table, file_cat, pred_path) if file_cat is not None else list(table["landmark"])
    known = set(ids)
    table["image_id"], how = match_ids(list(table["image_id"]), ids)
    file_ids = list(dict.fromkeys(table["image_id"]))
    unknown = [i for i in file_ids if i not in known]
    keep = [i for i, iid in enumerate(ids) if iid in set(file_ids)]
    if not keep:
        raise DataError(
            f"no image of the file is in split {split!r} of {index_path} (file ids e.g. "
            f"{file_ids[:3]}, index ids e.g. {ids[:3]})",
            pred_path,
        )
    ids = [ids[i] for i in keep]
    gt = gt[keep]
    imgs = imgs.set_index("image_id").loc[ids].reset_index()
    spacing = imgs[["spacing_x_mm", "spacing_y_mm"]].to_numpy(dtype=np.float64)
    sizes = imgs[["width", "height"]].to_numpy(dtype=np.int64)
    pred, n_dup = _arrays(table, lm_names, ids, gt_names)
    if not np.isfinite(pred).all(-1).any():
        raise DataError(f"no predicted landmark matches the ground truth's ({gt_names[:4]}...)", pred_path)
    if units == "mm":  # mm -> px with each image's own spacing
        pred = np.stack(
            [apply_affine(scale_translate(1 / sx, 1 / sy), p) for (sx, sy), p in zip(spacing, pred, strict=True)]
        )
    relabelled = {}
    if (table["landmark_index"] >= 0).all():
        for key, cat in CATALOGUES.items():
            if file_cat is not None and key == file_cat.key:
                continue
            if int(table["landmark_index"].max()) < len(cat):
                alt_names = [cat.names[i] for i in table["landmark_index"]]
                alt = _arrays(table, alt_names, ids, gt_names)[0]
                if units == "mm":
                    alt = np.stack(
                        [
                            apply_affine(scale_translate(1 / sx, 1 / sy), p)
                            for (sx, sy), p in zip(spacing, alt, strict=True)
                        ]
                    )
                if np.isfinite(alt).all(-1).any():
                    relabelled[key] = alt
    groups = {
        "device": imgs["device"].astype(str).tolist(),
        "image size": [f"{w}x{h}" for w, h in sizes],
        "dataset": imgs["dataset"].astype(str).tolist(),
    }
    n_all = len(gt_df["image_id"].unique())
    counts = {
        "rows": int(len(table)),
        "images_in_file": len(file_ids),
        "images_diagnosed": len(ids),
        "images_not_in_split": len(unknown),
        "images_of_split_without_predictions": n_all - len(ids),
        "duplicated_rows_first_used": n_dup,
        "rows_with_nan_coordinates": int(
            (~np.isfinite(table[["x", "y"]].to_numpy(dtype=np.float64))).any(axis=1).sum()
        ),
        "ids_matched_by_file_name": how["by_file_name"],
        "ids_matched_by_number": how["by_number"],
    }
    try:
        rep = diagnose_predictions(
            pred,
            gt,
            spacing,
            sizes,
            gt_names,
            relabelled=relabelled,
            groups=groups,
            units=units,
            thresholds=th,
            label=name,
        )
    except ValueError as e:
        raise DataError(str(e), pred_path) from None
    rep.input = counts
    issues = [
        f"{v} {k.replace('_', ' ')}"
        for k, v in counts.items()
        if v and k not in ("rows", "images_in_file", "images_diagnosed")
    ]
    if issues:
        rep.summary += " Input: " + ", ".join(issues) + " (counted, see diagnosis.json)."

    after = rep.diagnosis_after or rep.diagnosis
    before = {r["landmark"]: r for r in rep.diagnosis.per_landmark}
    rows = [
        {
            "landmark": r["landmark"],
            "n": r["n"],
            "mre_mm": before[r["landmark"]]["mre_mm"],
            "mre_after_mm": r["mre_mm"],
            "bias_dx_after_mm": r["bias_dx_mm"],
            "bias_dy_after_mm": r["bias_dy_mm"],
        }
        for r in after.per_landmark
    ]
    doc = {
        "name": name,
        "predictions": str(pred_path),
        "index": str(index_path),
        "split": split,
        "units": units,
        "n_images_in_file": len(file_ids),
        "n_images_not_in_split": len(unknown),
        "catalogue": file_cat.key if file_cat else None,
        **rep.to_dict(),
    }
    with atomic_dir(out_dir) as tmp:
        write_json(tmp / "diagnosis.json", _jsonable(doc))
        (tmp / "diagnosis.md").write_text(rep.to_markdown())
        pd.DataFrame(rows).to_csv(tmp / "per_landmark.csv", index=False, float_format="%.6g")
        (tmp / "plots").mkdir()
        plots.diagnosis_figure(
            pred,
            gt,
            rep.diagnosis.per_landmark,
            tmp / "plots" / "diagnosis.png",
            title=f"{name}: predictions as given, MRE {rep.mre_mm:.2f} mm. "
            + (f"Found: {rep.mistakes[0].title}." if rep.mistakes else rep.diagnosis.summary),
        )
        corrections_figure(
            pred,
            rep.undone,
            gt,
            rep.groups,
            groups,
            tmp / "plots" / "corrections.png",
            title=f"{name}: as given (MRE {rep.mre_mm:.2f} mm) and corrected (MRE {rep.mre_after_mm:.2f} mm)",
        )
    click.echo(
        f"{name}: {len(ids)} images, MRE {rep.mre_mm:.2f} mm as given"
        + (
            f", {rep.mre_after_mm:.2f} mm after undoing: " + ", ".join(m.code for m in rep.mistakes)
            if rep.mistakes and np.isfinite(rep.mistakes[-1].mre_after_mm)
            else ""
        )
    )
    if unknown:
        click.echo(
            f"warning: {len(unknown)} image id(s) of the file are not in split {split!r} (e.g. {unknown[:3]})", err=True
        )
    click.echo(f"diagnosis: {rep.summary}")


def _jsonable(x):
    if isinstance(x, float) and not np.isfinite(x):
        return None
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return _jsonable(x.item())
    return x
