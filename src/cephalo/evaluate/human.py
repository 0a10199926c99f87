"""The human limit: annotator-vs-annotator error, where a data set has two or more annotators.

ISBI 2015 ships a senior and a junior doctor's landmarks; the hamedan set two named doctors.
Their disagreement, in mm per landmark, is the floor a model's error is shown beside
(Wang et al., Medical Image Analysis 31, 2016, report it for ISBI). Computed from the landmark
index (documented columns: ``image_id``, ``annotator``, ``landmark_name``, ``x``, ``y``,
``spacing_x_mm``, ``spacing_y_mm``) in original pixels with each image's own spacing, through
:func:`cephalo.evaluate.metrics.radial_errors_mm`.
"""

from __future__ import annotations

from itertools import combinations
from typing import Sequence

import numpy as np
import pandas as pd

from .metrics import DEFAULT_THRESHOLDS_MM, radial_errors_mm, summarise

__all__ = ["human_limit"]

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
        per = {n: (float(np.nanmean(e[:, k])) if np.isfinite(e[:, k]).any() else float("nan"))
               for k, n in enumerate(names)}
    return {
        "annotators": sorted(anns),
        "pairs": pairs,
        "n_images": len(present),
        "overall": summarise(e, thresholds),
        "per_landmark": per,
        "per_landmark_n": {n: int(np.isfinite(e[:, k]).sum()) for k, n in enumerate(names)},
    }
