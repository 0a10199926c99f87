"""The human limit: annotator-vs-annotator error, where a data set has two or more annotators.

ISBI 2015 ships a senior and a junior doctor's landmarks; the hamedan set two named doctors.
Their disagreement, in mm per landmark, is the floor a model's error is shown beside
(Wang et al., Medical Image Analysis 31, 2016, report it for ISBI). Computed from the landmark
index (documented columns: ``image_id``, ``annotator``, ``landmark_name``, ``x``, ``y``,
``spacing_x_mm``, ``spacing_y_mm``), or from a preprocessing variant's per-annotator landmarks
mapped back (:func:`variant_human_limit`), in original pixels with each image's own spacing, through
:func:`cephalo.evaluate.metrics.radial_errors_mm`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from itertools import combinations

import numpy as np
import pandas as pd

from ..geometry import apply_affine, invert
from .metrics import DEFAULT_THRESHOLDS_MM, radial_errors_mm, summarise

__all__ = ["human_limit", "like_with_like", "pooled_mre", "variant_annotators", "variant_human_limit"]

_DERIVED = {"mean"}  # annotator labels that are not a person


def _arrays(df: pd.DataFrame, ann: str, ids: list[str], names: list[str]) -> np.ndarray:
    sub = df[df["annotator"] == ann]
    out = np.full((len(ids), len(names), 2), np.nan)
    ri = {i: n for n, i in enumerate(ids)}
    ci = {nm: k for k, nm in enumerate(names)}
    for row in sub.itertuples(index=False):
        r, c = ri.get(str(row.image_id)), ci.get(str(row.landmark_name))
        if r is not None and c is not None:
            out[r, c] = (row.x, row.y)
    return out


def human_limit(
    index: pd.DataFrame,
    image_ids: Sequence[str],
    names: Sequence[str],
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS_MM,
) -> dict | None:
    """Annotator-vs-annotator radial error per landmark (mm), over the given images.

    With more than two annotators, every pair is compared and the per-landmark MRE is the mean
    over pairs (pooled errors). The derived ``mean`` annotator is ignored.

    Args:
        index: the landmark index (long format, see DESIGN.md), any subset of rows.
        image_ids: images to use (the evaluated ones); ids absent from the index are skipped.
        names: canonical landmark names, the column order of the result.
        thresholds: SDR thresholds (mm).

    Returns:
        None when fewer than two annotators annotate these images; else ``{"annotators":
        [...], "pairs": [[a, b], ...], "n_images": .., "overall": summarise(...),
        "per_landmark": {name: mre_mm}, "per_landmark_n": {name: n}}``.

    Raises:
        ValueError: a needed column is missing, or an image has no finite spacing.
    """
    need = {"image_id", "annotator", "landmark_name", "x", "y", "spacing_x_mm", "spacing_y_mm"}
    missing = sorted(need - set(index.columns))
    if missing:
        raise ValueError(f"landmark index lacks columns {missing}")
    ids = [str(i) for i in image_ids]
    df = index[index["image_id"].astype(str).isin(ids)]
    anns = [a for a in pd.unique(df["annotator"].astype(str)) if a not in _DERIVED]
    if len(anns) < 2:
        return None
    present = [i for i in ids if i in set(df["image_id"].astype(str))]
    names = [str(n) for n in names]
    sp = df.groupby(df["image_id"].astype(str))[["spacing_x_mm", "spacing_y_mm"]].first().reindex(present)
    spacing = sp.to_numpy(dtype=np.float64)
    errs = []
    pairs = []
    for a, b in combinations(sorted(anns), 2):
        ea = _arrays(df, a, present, names)
        eb = _arrays(df, b, present, names)
        errs.append(radial_errors_mm(ea, eb, spacing))
        pairs.append([a, b])
    e = np.concatenate(errs, axis=0)  # (pairs * N, K)
    with np.errstate(invalid="ignore"):
        per = {
            n: (float(np.nanmean(e[:, k])) if np.isfinite(e[:, k]).any() else float("nan")) for k, n in enumerate(names)
        }
    return {
        "annotators": sorted(anns),
        "pairs": pairs,
        "n_images": len(present),
        "overall": summarise(e, thresholds),
        "per_landmark": per,
        "per_landmark_n": {n: int(np.isfinite(e[:, k]).sum()) for k, n in enumerate(names)},
    }


def _block(e: np.ndarray, names: Sequence[str], thresholds: Sequence[float]) -> dict:
    """Pooled summary + per-landmark MRE and counts of an (M, K) error array (mm)."""
    with np.errstate(invalid="ignore"):
        per = {
            n: (float(np.nanmean(e[:, k])) if np.isfinite(e[:, k]).any() else float("nan")) for k, n in enumerate(names)
        }
    return {
        "overall": summarise(e, thresholds),
        "per_landmark": per,
        "per_landmark_n": {n: int(np.isfinite(e[:, k]).sum()) for k, n in enumerate(names)},
    }


def like_with_like(
    pred: np.ndarray,
    annotators: dict[str, np.ndarray],
    spacing: np.ndarray,
    names: Sequence[str],
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS_MM,
) -> dict | None:
    """The model and the annotators measured the same way, over the same images and landmarks.

    Two comparisons, each like with like:

    * against **each annotator**: the model's error against annotator A, pooled over the
      annotators (``model_vs_each``), beside annotator-vs-annotator (``annotator_vs_annotator``,
      every pair);
    * against the **mean** of the annotators (the usual ground truth): the model
      (``model_vs_mean``) beside each annotator against that mean (``annotator_vs_mean``). With
      two annotators an annotator is exactly half the inter-annotator distance from their mean,
      so this human figure is half the one above: a model "below" it is not better than a human,
      it is compared with a reference half-made of that human.

    Args:
        pred: (N, K, 2) float xy original px, the model's landmarks (NaN = missing).
        annotators: annotator name -> (N, K, 2) float xy original px (NaN = not annotated); the
            derived ``mean`` entry, if any, is ignored (the mean is recomputed as the float mean
            of the annotators present, never rounded, as ``cephalo.index.ground_truth`` does).
        spacing: (N, 2) mm/px (x, y).
        names: K landmark names (keys of the per-landmark dicts).
        thresholds: SDR thresholds (mm).

    Returns:
        None with fewer than two annotators; else ``{"annotators", "pairs", "model_vs_each",
        "annotator_vs_annotator", "model_vs_mean", "annotator_vs_mean"}``, each block
        ``{"overall": summarise(...), "per_landmark": {name: MRE mm}, "per_landmark_n": {name: n}}``;
        ``model_vs_each`` also has ``per_annotator: {name: MRE mm}``.

    Raises:
        ValueError: shapes differ (from :func:`radial_errors_mm`).
    """
    anns = {str(a): np.asarray(v, dtype=np.float64) for a, v in annotators.items() if str(a) not in _DERIVED}
    if len(anns) < 2:
        return None
    order = sorted(anns)
    pred = np.asarray(pred, dtype=np.float64)
    stack = np.stack([anns[a] for a in order])  # (A, N, K, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices: not annotated by anyone
        mean = np.nanmean(stack, axis=0)
    e_each = {a: radial_errors_mm(pred, anns[a], spacing) for a in order}
    pairs = list(combinations(order, 2))
    e_pairs = np.concatenate([radial_errors_mm(anns[a], anns[b], spacing) for a, b in pairs])
    e_ann_mean = np.concatenate([radial_errors_mm(anns[a], mean, spacing) for a in order])
    each = _block(np.concatenate([e_each[a] for a in order]), names, thresholds)
    with np.errstate(invalid="ignore"):
        each["per_annotator"] = {
            a: (float(np.nanmean(e_each[a])) if np.isfinite(e_each[a]).any() else float("nan")) for a in order
        }
    return {
        "annotators": order,
        "pairs": [list(p) for p in pairs],
        "model_vs_each": each,
        "annotator_vs_annotator": _block(e_pairs, names, thresholds),
        "model_vs_mean": _block(radial_errors_mm(pred, mean, spacing), names, thresholds),
        "annotator_vs_mean": _block(e_ann_mean, names, thresholds),
    }


def pooled_mre(block: dict | None, landmarks: Sequence[str]) -> float | None:
    """Pooled MRE (mm) of a per-landmark block over a subset of landmarks.

    ``sum(mre_k * n_k) / sum(n_k)`` over ``landmarks``: exactly the MRE of the pooled errors of
    those landmarks (every error weighs the same). None when the block or the counts are absent.
    """
    if not block:
        return None
    per, cnt = block.get("per_landmark") or {}, block.get("per_landmark_n") or {}
    num = den = 0.0
    for n in landmarks:
        m, c = per.get(n), cnt.get(n)
        if m is None or not c or not np.isfinite(m):
            continue
        num += float(m) * int(c)
        den += int(c)
    return num / den if den else None


def variant_annotators(variant, rows, names) -> dict[str, np.ndarray]:
    """Each annotator's landmarks (``mean`` excluded) of a variant's ``rows`` x ``names``, mapped back to
    original pixels; ``{}`` with fewer than two annotators."""

    anns = {a: v for a, v in (getattr(variant, "annotators", {}) or {}).items() if a != "mean"}
    if len(anns) < 2:
        return {}
    di = [list(variant.landmark_names).index(n) for n in names]
    inv = np.stack([invert(variant.affines[r]) for r in rows])
    return {a: apply_affine(inv, np.asarray(v, dtype=np.float64)[rows][:, di]) for a, v in anns.items()}


def variant_human_limit(variant, rows, names, thresholds) -> dict | None:
    """Annotator-vs-annotator limit from a variant's per-annotator landmarks (mapped back to original px)."""

    orig = variant_annotators(variant, rows, names)
    if len(orig) < 2:
        return None
    spacing = np.asarray(variant.spacing, dtype=np.float64)[rows]
    pairs = list(combinations(sorted(orig), 2))
    e = np.concatenate([radial_errors_mm(orig[a], orig[b], spacing) for a, b in pairs])
    with np.errstate(invalid="ignore"):
        per = {
            n: (float(np.nanmean(e[:, k])) if np.isfinite(e[:, k]).any() else float("nan")) for k, n in enumerate(names)
        }
    return {
        "annotators": sorted(orig),
        "pairs": [list(p) for p in pairs],
        "n_images": int(len(rows)),
        "overall": summarise(e, thresholds),
        "per_landmark": per,
        "per_landmark_n": {n: int(np.isfinite(e[:, k]).sum()) for k, n in enumerate(names)},
        "source": "variant annotators",
    }
