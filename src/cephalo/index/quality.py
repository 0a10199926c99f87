"""Data-quality report of an index: counts, spacing/size distributions, exclusions,
byte-identical images, and the inter-annotator disagreement in mm (the human limit).

Written as ``quality.json`` (the truth) and ``quality.md`` (the same, for people).
Annotator disagreement: for every pair of annotators (a ready-made ``mean`` annotation
excluded) the radial distance between their two positions of a landmark, in mm with each
image's own spacing (``cephalo.geometry.radial_errors_mm``), summarised per landmark
(mean = the MRE between annotators, SD, median, max) -- the floor a model cannot be judged
below (Wang et al., Medical Image Analysis 31 (2016), report it for ISBI 2015).
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..geometry import radial_errors_mm
from ..io import atomic_path, file_sha256, write_json
from .core import images_table, landmark_arrays, spacing_outliers

__all__ = ["quality_report", "write_quality_report", "file_sha256", "identical_images", "annotator_disagreement"]


def identical_images(images: pd.DataFrame, progress: bool = True) -> list[dict]:
    """Groups of byte-identical image files.

    Args:
        images: ``images_table`` output (image_id, split, image_path, ...).

    Returns:
        one dict per group of >= 2 images with the same bytes: ``sha256``, ``image_ids``,
        ``splits``, ``paths``, ``cross_split`` (True when the group spans several splits:
        a train/test leak).
    """
    from tqdm import tqdm

    # Only files of equal size can be identical: hash those alone.
    sizes = images["image_path"].map(lambda p: Path(p).stat().st_size)
    cand = images[sizes.duplicated(keep=False)]
    groups: dict[str, list[int]] = defaultdict(list)
    for i, p in tqdm(
        list(zip(cand.index, cand["image_path"], strict=True)),
        desc="hashing images",
        unit="img",
        disable=not progress,
        leave=False,
    ):
        groups[file_sha256(p)].append(i)
    out = []
    for digest, rows in sorted(groups.items()):
        if len(rows) < 2:
            continue
        sub = images.loc[rows]
        out.append(
            {
                "sha256": digest,
                "image_ids": list(sub["image_id"]),
                "splits": list(sub["split"]),
                "paths": list(sub["image_path"]),
                "cross_split": sub["split"].nunique() > 1,
            }
        )
    return out


def annotator_disagreement(df: pd.DataFrame) -> list[dict]:
    """Inter-annotator distance in mm per landmark, for each pair of annotators.

    ``mean`` (a derived annotation) is left out. Only images both annotators labelled count.

    Returns:
        one dict per pair: ``annotators``, ``n_images``, ``mre_mm`` (mean over all landmark
        pairs), ``sd_mm``, ``median_mm``, ``per_landmark`` (list of dicts: landmark, symbol,
        n, mean_mm, sd_mm, median_mm, max_mm), ``per_device`` (device -> MRE mm).
    """
    ann = [a for a in sorted(df["annotator"].unique()) if a != "mean"]
    names = list(df.drop_duplicates("landmark_index").sort_values("landmark_index")["landmark_name"])
    symbols = list(df.drop_duplicates("landmark_index").sort_values("landmark_index")["landmark_symbol"])
    out = []
    for a, b in itertools.combinations(ann, 2):
        da, db = df[df["annotator"] == a], df[df["annotator"] == b]
        common = sorted(set(da["image_id"]) & set(db["image_id"]))
        if not common:
            continue
        da, db = da[da["image_id"].isin(common)], db[db["image_id"].isin(common)]
        ids_a, ca = landmark_arrays(da.sort_values(["image_id", "landmark_index"]), names)
        ids_b, cb = landmark_arrays(db.sort_values(["image_id", "landmark_index"]), names)
        assert ids_a == ids_b
        img = da.drop_duplicates("image_id").set_index("image_id").loc[ids_a]
        spacing = img[["spacing_x_mm", "spacing_y_mm"]].to_numpy(dtype=np.float64)
        ok = np.isfinite(spacing).all(axis=1)
        if not ok.any():
            continue
        err = radial_errors_mm(ca[ok], cb[ok], spacing[ok])  # (N, K) mm
        devices = img["device"].to_numpy()[ok]
        per_lm = []
        for k, (nm, sym) in enumerate(zip(names, symbols, strict=False)):
            e = err[:, k][np.isfinite(err[:, k])]
            per_lm.append(
                {
                    "landmark": nm,
                    "symbol": sym,
                    "n": int(e.size),
                    "mean_mm": float(e.mean()) if e.size else None,
                    "sd_mm": float(e.std(ddof=1)) if e.size > 1 else None,
                    "median_mm": float(np.median(e)) if e.size else None,
                    "max_mm": float(e.max()) if e.size else None,
                }
            )
        flat = err[np.isfinite(err)]
        out.append(
            {
                "annotators": [a, b],
                "n_images": int(ok.sum()),
                "mre_mm": float(flat.mean()),
                "sd_mm": float(flat.std(ddof=1)) if flat.size > 1 else None,
                "median_mm": float(np.median(flat)),
                "per_landmark": per_lm,
                "per_device": {str(d): float(np.nanmean(err[devices == d])) for d in sorted(set(devices))},
            }
        )
    return out


def _dist(values: pd.Series) -> dict:
    v = values.dropna().to_numpy(dtype=np.float64)
    if v.size == 0:
        return {"n": 0}
    return {"n": int(v.size), "min": float(v.min()), "median": float(np.median(v)), "max": float(v.max())}


def quality_report(
    df: pd.DataFrame,
    exclusions: Sequence[Any] = (),
    problems: Sequence[Any] = (),
    *,
    hash_images: bool = True,
    progress: bool = True,
) -> dict:
    """The data-quality report of an index (JSON-serialisable dict).

    Args:
        df: the index (``build_index``/``read_index`` output; absolute image paths).
        exclusions, problems: the adapter's ``Exclusion`` / ``ImageProblem`` records (or dicts).
        hash_images: look for byte-identical images (reads every same-sized file).

    Returns:
        dict with ``dataset``, ``index`` (metadata subset), ``counts`` (images/rows/annotators,
        per split, per device, split x device), ``spacing_mm`` (distinct values with counts,
        per-axis distribution, ``implausible``: ``cephalo.index.spacing_outliers``), ``image_size``
        (distinct WxH with counts, width/height distribution), ``missing_landmarks``, ``exclusions``
        (list + counts by annotator), ``problems``, ``identical_images`` (+ ``identical_cross_split``),
        ``annotator_disagreement``.
    """
    meta = df.attrs.get("cephalo", {})
    imgs = images_table(df)
    ann_per_img = df.groupby("image_id")["annotator"].unique()
    spacing = Counter(zip(imgs["spacing_x_mm"].round(6), imgs["spacing_y_mm"].round(6), strict=True))
    sizes = Counter(f"{w}x{h}" for w, h in zip(imgs["width"], imgs["height"], strict=True))
    missing = df[~df["visible"]].groupby("landmark_name").size()
    ex = [e if isinstance(e, dict) else e.to_dict() for e in exclusions]
    pr = [p if isinstance(p, dict) else p.to_dict() for p in problems]
    ident = identical_images(imgs, progress=progress) if hash_images else None
    cvm = df.drop_duplicates("image_id")["cvm_stage"]
    report = {
        "dataset": sorted(df["dataset"].unique().tolist()),
        "index": {k: meta.get(k) for k in ("schema_version", "checksum", "policy", "adapter_version")}
        | {
            "catalogue": (meta.get("catalogue") or {}).get("key"),
            "source": {k: (meta.get("source") or {}).get(k) for k in ("adapter", "root")},
        },
        "counts": {
            "images": int(len(imgs)),
            "rows": int(len(df)),
            "landmarks_per_annotation": int(df["landmark_index"].max()) + 1,
            "annotators": {
                a: int(n) for a, n in df.drop_duplicates(["image_id", "annotator"]).groupby("annotator").size().items()
            },
            "images_with_n_annotators": {str(k): int(v) for k, v in Counter(len(a) for a in ann_per_img).items()},
            "per_split": {str(k): int(v) for k, v in imgs.groupby("split").size().items()},
            "per_device": {str(k): int(v) for k, v in imgs.groupby("device").size().items()},
            "per_split_device": {f"{s}|{d}": int(v) for (s, d), v in imgs.groupby(["split", "device"]).size().items()},
            "cvm_stage": {str(int(k)): int(v) for k, v in cvm.dropna().value_counts().sort_index().items()},
        },
        "spacing_mm": {
            "values": [{"x": float(x), "y": float(y), "images": int(n)} for (x, y), n in sorted(spacing.items())],
            "x": _dist(imgs["spacing_x_mm"]),
            "y": _dist(imgs["spacing_y_mm"]),
            "missing": int((imgs["spacing_x_mm"].isna() | imgs["spacing_y_mm"].isna()).sum()),
            "implausible": spacing_outliers(imgs),
        },
        "image_size": {
            "values": [{"size": s, "images": int(n)} for s, n in sizes.most_common()],
            "width": _dist(imgs["width"]),
            "height": _dist(imgs["height"]),
        },
        "missing_landmarks": {str(k): int(v) for k, v in missing.items()},
        "exclusions": {
            "count": len(ex),
            "by_annotator": dict(Counter(str(e.get("annotator")) for e in ex)),
            "items": ex,
        },
        "problems": {"count": len(pr), "items": pr},
        "identical_images": ident,
        "identical_cross_split": None if ident is None else sum(g["cross_split"] for g in ident),
        "annotator_disagreement": annotator_disagreement(df),
    }
    return report


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3f}"
        return "" if v is None else str(v).replace("|", "\\|")

    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return out


def report_markdown(r: dict) -> str:
    """The report as Markdown (the same facts as the JSON)."""
    c = r["counts"]
    lines = [f"# Data-quality report: {', '.join(r['dataset'])}", ""]
    lines += [
        f"- index checksum `{r['index'].get('checksum')}`, catalogue `{r['index'].get('catalogue')}`, "
        f"ground-truth policy `{r['index'].get('policy')}`",
        f"- {c['images']} images, {c['rows']} rows, {c['landmarks_per_annotation']} landmarks per annotation",
        f"- annotations per annotator: {c['annotators']}",
        "",
    ]
    lines += ["## Images per split and device", ""]
    splits = sorted(c["per_split"])
    devs = sorted(c["per_device"])
    lines += _md_table(
        ["device", *splits, "total"],
        [[d, *[c["per_split_device"].get(f"{s}|{d}", 0) for s in splits], c["per_device"][d]] for d in devs]
        + [["total", *[c["per_split"][s] for s in splits], c["images"]]],
    )
    if c["cvm_stage"]:
        lines += ["", f"CVM stages: {c['cvm_stage']}"]
    lines += ["", "## Pixel spacing (mm/px)", ""]
    lines += _md_table(["x", "y", "images"], [[v["x"], v["y"], v["images"]] for v in r["spacing_mm"]["values"]])
    if r["spacing_mm"]["missing"]:
        lines += ["", f"**{r['spacing_mm']['missing']} images without spacing.**"]
    bad = r["spacing_mm"].get("implausible") or []
    if bad:
        lines += ["", f"**Implausible spacing ({len(bad)}):**", ""]
        lines += _md_table(
            ["image", "device", "axis", "mm/px", "reason"],
            [[b["image_id"], b["device"], b["axis"], b["spacing_mm"], b["reason"]] for b in bad],
        )
    lines += ["", "## Image sizes (W x H px)", ""]
    lines += _md_table(["size", "images"], [[v["size"], v["images"]] for v in r["image_size"]["values"][:20]])
    lines += ["", f"## Excluded annotations ({r['exclusions']['count']})", ""]
    if r["exclusions"]["items"]:
        lines += _md_table(
            ["file", "annotator", "reason"],
            [[e["file"], e.get("annotator"), e["reason"]] for e in r["exclusions"]["items"]],
        )
    else:
        lines += ["None."]
    lines += ["", f"## Image problems ({r['problems']['count']})", ""]
    lines += (
        _md_table(["file", "problem"], [[p["file"], p["problem"]] for p in r["problems"]["items"]])
        if r["problems"]["items"]
        else ["None."]
    )
    lines += ["", "## Byte-identical images", ""]
    if r["identical_images"] is None:
        lines += ["Not checked."]
    elif not r["identical_images"]:
        lines += ["None."]
    else:
        lines += [
            f"{len(r['identical_images'])} group(s), {r['identical_cross_split']} across splits (train/test leak):",
            "",
        ]
        lines += _md_table(
            ["image ids", "splits", "across splits"],
            [
                [", ".join(g["image_ids"]), ", ".join(g["splits"]), "**yes**" if g["cross_split"] else "no"]
                for g in r["identical_images"]
            ],
        )
    lines += ["", "## Annotator disagreement (the human limit)", ""]
    if not r["annotator_disagreement"]:
        lines += ["Only one annotator per image: not measurable."]
    for d in r["annotator_disagreement"]:
        a, b = d["annotators"]
        lines += [
            f"**{a} vs {b}**: {d['n_images']} images, MRE {d['mre_mm']:.3f} mm "
            f"(SD {d['sd_mm'] or float('nan'):.3f}, median {d['median_mm']:.3f}); per device {d['per_device']}",
            "",
        ]
        lines += _md_table(
            ["landmark", "symbol", "n", "mean mm", "SD mm", "median mm", "max mm"],
            [
                [p["landmark"], p["symbol"], p["n"], p["mean_mm"], p["sd_mm"], p["median_mm"], p["max_mm"]]
                for p in d["per_landmark"]
            ],
        )
        lines += [""]
    return "\n".join(lines).rstrip() + "\n"


def write_quality_report(report: dict, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``quality.json`` and ``quality.md`` into ``out_dir`` (each atomically)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    j, m = out_dir / "quality.json", out_dir / "quality.md"
    write_json(j, report)
    with atomic_path(m) as tmp:
        tmp.write_text(report_markdown(report))
    return j, m
