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
- with ``--reference`` (an evaluation of the same model on images annotated like its training
  images, e.g. its validation split): the reference bias and Hotelling's two-sample T^2 test of
  "same mean error vector" (Hotelling 1931; unequal covariances pooled, as in the classical test).
  A bias the model shows on the test images but not on the reference images of the same labelling
  process is a difference between the two sets of labels (annotation convention or drift); a bias
  on both is the model's own error.

    python scripts/landmark_bias.py --eval results/eval/refine_source-isbi2015 \
        --index results/index/isbi2015.parquet --out bias.md
    python scripts/landmark_bias.py --eval results/eval/refine_source-isbi2015 \
        --reference <evaluation on the held-out training images> --index results/index/isbi2015.parquet
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


def hotelling_two_sample(a: np.ndarray, b: np.ndarray) -> float:
    """p-value of Hotelling's two-sample T^2 test that ``(n, 2)`` samples ``a`` and ``b`` share their mean.

    Pooled covariance; ``F = (na + nb - p - 1) / (p (na + nb - 2)) T^2`` with ``(p, na + nb - p - 1)``
    degrees of freedom, ``p = 2`` (Hotelling 1931). NaN when either sample has fewer than 2 rows.
    """
    na, nb, p = len(a), len(b), a.shape[1]
    if na < 2 or nb < 2:
        return float("nan")
    diff = a.mean(axis=0) - b.mean(axis=0)
    pooled = ((na - 1) * np.cov(a, rowvar=False) + (nb - 1) * np.cov(b, rowvar=False)) / (na + nb - 2)
    t2 = float(diff @ np.linalg.solve(pooled * (1 / na + 1 / nb), diff))
    f = (na + nb - p - 1) / (p * (na + nb - 2)) * t2
    return float(stats.f.sf(f, p, na + nb - p - 1))


def hotelling_one_sample(a: np.ndarray) -> float:
    """p-value of Hotelling's one-sample T^2 test that ``(n, 2)`` errors ``a`` have mean zero (NaN if n < 3)."""
    n, p = a.shape
    if n <= p:
        return float("nan")
    m = a.mean(axis=0)
    t2 = float(n * m @ np.linalg.solve(np.cov(a, rowvar=False), m))
    return float(stats.f.sf((n - p) / (p * (n - 1)) * t2, p, n - p))


def verdict(p_reference_bias: float, p_difference: float, alpha: float = 0.01) -> str:
    """Where a test-set bias comes from, from the two Hotelling p-values (``alpha`` for both tests).

    - ``labels differ``: the test bias is not the reference bias (``p_difference < alpha``) and the
      model shows no bias on the reference images (``p_reference_bias >= alpha``);
    - ``model``: a bias on the reference images too, and no evidence the two differ;
    - ``both``: a reference bias and a different test bias;
    - ``-``: neither.
    """
    ref, dif = p_reference_bias < alpha, p_difference < alpha
    if dif and not ref:
        return "labels differ"
    if ref and not dif:
        return "model"
    if ref and dif:
        return "both"
    return "-"


def without_label_shift(d: pd.DataFrame, ref: pd.DataFrame, landmarks: list[str]) -> float:
    """Test MRE (mm) had ``landmarks`` carried on the test images only the bias they carry on the
    reference images: each one's errors moved by (reference bias - test bias). What the label
    difference costs the test figure, as a bound read off the test labels, not a result to report as one."""
    e = d[["ex", "ey"]].to_numpy().copy()
    for lm in landmarks:
        m = (d["landmark_name"] == lm).to_numpy()
        r = ref.loc[ref["landmark_name"] == lm, ["ex", "ey"]].to_numpy()
        e[m] += r.mean(axis=0) - e[m].mean(axis=0)
    return float(np.hypot(e[:, 0], e[:, 1]).mean())


def reference_table(d: pd.DataFrame, ref: pd.DataFrame) -> list[str]:
    """Per landmark: test bias, reference bias, and the Hotelling tests behind :func:`verdict`."""
    lines = [
        "| landmark | test n | test MRE mm | test bias (dx, dy) mm | reference n | reference MRE mm "
        "| reference bias (dx, dy) mm | p(reference bias = 0) | p(test bias = reference bias) | verdict |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    rows, shifted = [], []
    for lm, g in d.groupby("landmark_name", sort=False):
        r = ref[ref["landmark_name"] == lm]
        a, b = g[["ex", "ey"]].to_numpy(), r[["ex", "ey"]].to_numpy()
        p_ref, p_dif = hotelling_one_sample(b), hotelling_two_sample(a, b)
        said = verdict(p_ref, p_dif)
        if said == "labels differ":
            shifted.append(lm)
        mre = float(np.hypot(a[:, 0], a[:, 1]).mean())
        rows.append(
            (
                mre,
                f"| {lm} | {len(a)} | {mre:.2f} | {a[:, 0].mean():+.2f}, {a[:, 1].mean():+.2f} | {len(b)} | "
                f"{np.hypot(b[:, 0], b[:, 1]).mean():.2f} | {b[:, 0].mean():+.2f}, {b[:, 1].mean():+.2f} | "
                f"{p_ref:.2g} | {p_dif:.2g} | {said} |",
            )
        )
    lines += [line for _, line in sorted(rows, key=lambda r: -r[0])]
    if shifted:
        lines += [
            "",
            f"Test MRE {np.hypot(d['ex'], d['ey']).mean():.3f} mm; with the test-only offset of the "
            f"{len(shifted)} landmarks whose labels differ ({', '.join(shifted)}) taken out: "
            f"{without_label_shift(d, ref, shifted):.3f} mm (an estimate of what the label difference costs, "
            "read off the test labels: not a result).",
        ]
    return lines


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
    ap.add_argument(
        "--reference",
        type=Path,
        default=None,
        help="an evaluation of the same model on images labelled like its training images (its validation split)",
    )
    ap.add_argument("--out", type=Path, default=None, help="Markdown to write (default: print)")
    args = ap.parse_args(argv)
    try:
        pred = pd.read_parquet(args.eval_dir / "predictions.parquet")
        index = pd.read_parquet(args.index)
        ref = pd.read_parquet(args.reference / "predictions.parquet") if args.reference else None
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
    if ref is not None:
        ref["image_id"] = ref["image_id"].astype(str)
        r = errors_mm(ref, index)
        if set(r["image_id"]) & set(d["image_id"]):
            print("cephalo: error: --reference shares images with --eval (it must be other images)", file=sys.stderr)
            return 1
        lines += [
            "",
            f"Against the reference evaluation `{args.reference.name}` ({r['image_id'].nunique()} images, split(s) "
            f"{sorted(r['split'].astype(str).unique())}); Hotelling T^2 tests at alpha 0.01:",
            "",
        ]
        lines += reference_table(d, r)
    text = "\n".join(lines) + "\n"
    if args.out:
        args.out.write_text(text)
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
