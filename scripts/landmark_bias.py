#!/usr/bin/env python
"""Per-landmark displacement of an evaluation: model error or annotation convention?

For one evaluation folder (``results/eval/<run>/predictions.parquet``: predicted and ground-truth
positions, original px) and its landmark index (pixel spacing per image, and the annotators' own
positions where the index has more than one), per landmark:

- ``MRE`` and the **bias**: the mean signed error vector (prediction - ground truth, mm, image x to
  the right, y down) with its 95 % t-interval per axis, and the **bias share**: |bias|^2 / mean |e|^2,
  the part of the squared error a constant offset explains (0: scatter only; 1: pure offset);
- with two annotators: their mean signed difference (first - second, mm) and the cosine between it
  and the model's bias (a model that sides with one annotator's convention has |cos| near 1 and a
  bias near half that difference);
- for gonion: the error split into its component along the mandibular angle's contour (the
  bisector's normal at gonion, from the ground-truth articulare and menton: ``u = unit(Me - Go) -
  unit(Ar - Go)``) and across it. An error mostly along the contour is where the definition ("the
  most posterior inferior point of the angle") leaves room, the annotation convention; an error
  across it is a missed edge, a model error.

    python scripts/landmark_bias.py --eval results/eval/refine_source-isbi2015 \
        --index results/index/isbi2015.parquet --out bias.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats


def _t_interval(v: np.ndarray) -> tuple[float, float]:
    half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else np.nan
    return float(v.mean() - half), float(v.mean() + half)


def errors_mm(pred: pd.DataFrame, index: pd.DataFrame) -> pd.DataFrame:
    """Predictions with their pixel spacing and signed error in mm (``ex``, ``ey``)."""
    sp = index.groupby("image_id")[["spacing_x_mm", "spacing_y_mm"]].first()
    d = pred.join(sp, on="image_id")
    if d[["spacing_x_mm", "spacing_y_mm"]].isna().any().any():
        missing = sorted(d.loc[d["spacing_x_mm"].isna(), "image_id"].unique())[:5]
        raise SystemExit(f"cephalo: error: no pixel spacing in the index for images {missing}")
    d["ex"] = (d["x_pred"] - d["x_gt"]) * d["spacing_x_mm"]
    d["ey"] = (d["y_pred"] - d["y_gt"]) * d["spacing_y_mm"]
    return d.dropna(subset=["ex", "ey"])


def annotator_difference(index: pd.DataFrame, ids: set[str]) -> tuple[dict, tuple[str, str] | None]:
    """Per landmark mean (first - second annotator) vector in mm over ``ids`` having both, and the pair."""
    names = sorted(a for a in index["annotator"].unique() if a != "mean")
    if len(names) < 2:
        return {}, None
    a, b = names[:2]
    sub = index[index["image_id"].isin(ids)]
    key = ["image_id", "landmark_name"]
    both = (
        sub[sub["annotator"] == a][key + ["x", "y", "spacing_x_mm", "spacing_y_mm"]]
        .merge(sub[sub["annotator"] == b][key + ["x", "y"]], on=key, suffixes=("_a", "_b"))
        .dropna()
    )
    diff = pd.DataFrame(
        {
            "dx": ((both["x_a"] - both["x_b"]) * both["spacing_x_mm"]).to_numpy(),
            "dy": ((both["y_a"] - both["y_b"]) * both["spacing_y_mm"]).to_numpy(),
        },
        index=both["landmark_name"].to_numpy(),
    )
    return {lm: (float(g["dx"].mean()), float(g["dy"].mean()), len(g)) for lm, g in diff.groupby(level=0)}, (a, b)


def gonion_components(d: pd.DataFrame) -> tuple[float, float, int] | None:
    """RMS error (mm) of gonion along and across the mandibular angle's contour, and the image count."""
    gt = d.pivot_table(index="image_id", columns="landmark_name", values=["x_gt", "y_gt"])
    need = {"gonion", "articulare", "menton"}
    if not need <= set(gt.columns.get_level_values(1)):
        return None
    go = d[d["landmark_name"] == "gonion"].set_index("image_id")
    along, across = [], []
    for iid, r in go.iterrows():
        g = np.array([gt.loc[iid, ("x_gt", "gonion")], gt.loc[iid, ("y_gt", "gonion")]])
        ar = np.array([gt.loc[iid, ("x_gt", "articulare")], gt.loc[iid, ("y_gt", "articulare")]])
        me = np.array([gt.loc[iid, ("x_gt", "menton")], gt.loc[iid, ("y_gt", "menton")]])
        u = (me - g) / np.linalg.norm(me - g) - (ar - g) / np.linalg.norm(ar - g)
        if not np.isfinite(u).all() or np.linalg.norm(u) == 0:
            continue
        u /= np.linalg.norm(u)
        e = np.array([r["ex"], r["ey"]])
        along.append(float(e @ u))
        across.append(float(e @ np.array([-u[1], u[0]])))
    if not along:
        return None
    return float(np.sqrt(np.mean(np.square(along)))), float(np.sqrt(np.mean(np.square(across)))), len(along)


def table(d: pd.DataFrame, annot: dict, pair: tuple[str, str] | None) -> list[str]:
    head = "| landmark | n | MRE mm | bias dx mm [95 % CI] | bias dy mm [95 % CI] | abs(bias) mm | bias share |"
    sep = "| --- | --- | --- | --- | --- | --- | --- |"
    if pair:
        head += f" {pair[0]} - {pair[1]} mm (dx, dy; n) | cos(bias, difference) |"
        sep += " --- | --- |"
    lines = [head, sep]
    rows = []
    for lm, g in d.groupby("landmark_name", sort=False):
        ex, ey = g["ex"].to_numpy(), g["ey"].to_numpy()
        bias = np.array([ex.mean(), ey.mean()])
        share = float(bias @ bias / np.mean(ex**2 + ey**2))
        rows.append((float(np.mean(np.hypot(ex, ey))), lm, len(g), bias, _t_interval(ex), _t_interval(ey), share))
    for mre, lm, n, bias, cx, cy, share in sorted(rows, key=lambda r: -r[0]):
        line = (
            f"| {lm} | {n} | {mre:.2f} | {bias[0]:+.2f} [{cx[0]:+.2f}, {cx[1]:+.2f}] | {bias[1]:+.2f} "
            f"[{cy[0]:+.2f}, {cy[1]:+.2f}] | {np.linalg.norm(bias):.2f} | {share:.2f} |"
        )
        if pair:
            if lm in annot:
                ax, ay, m = annot[lm]
                v = np.array([ax, ay])
                cos = float(bias @ v / (np.linalg.norm(bias) * np.linalg.norm(v))) if np.linalg.norm(v) > 0 else np.nan
                line += f" {ax:+.2f}, {ay:+.2f}; {m} | {cos:+.2f} |"
            else:
                line += " - | - |"
        lines.append(line)
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--eval", dest="eval_dir", type=Path, required=True, help="results/eval/<run>")
    ap.add_argument("--index", type=Path, required=True, help="the data set's landmark index (Parquet)")
    ap.add_argument("--out", type=Path, default=None, help="Markdown to write (default: print)")
    args = ap.parse_args(argv)
    try:
        pred = pd.read_parquet(args.eval_dir / "predictions.parquet")
        index = pd.read_parquet(args.index)
    except (OSError, ValueError) as e:
        print(f"cephalo: error: {e}", file=sys.stderr)
        return 1
    pred["image_id"] = pred["image_id"].astype(str)
    index["image_id"] = index["image_id"].astype(str)
    d = errors_mm(pred, index)
    annot, pair = annotator_difference(index, set(d["image_id"]))
    lines = [
        f"Generated by `python scripts/landmark_bias.py --eval {args.eval_dir} --index {args.index}`: "
        f"{d['image_id'].nunique()} images, split(s) {sorted(d['split'].astype(str).unique())}. Image axes: "
        "x to the right (the face looks right in these images), y down.",
        "",
    ]
    lines += table(d, annot, pair)
    comp = gonion_components(d)
    if comp:
        lines += [
            "",
            f"Gonion, RMS error along the mandibular angle's contour {comp[0]:.2f} mm, across it "
            f"{comp[1]:.2f} mm ({comp[2]} images; directions from the ground-truth articulare and menton).",
        ]
    text = "\n".join(lines) + "\n"
    if args.out:
        args.out.write_text(text)
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
