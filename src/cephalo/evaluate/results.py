"""The results format of an evaluation run, read by every view of it.

An evaluation folder's ``metrics.json`` (written by :mod:`cephalo.evaluate.runner`) carries a
``figures`` block whose names every view uses (:func:`figure_names`): the comparison
(:mod:`cephalo.evaluate.compare`), the DVC summaries, MLflow. This module holds that naming, the
reading of ``metrics.json`` (:func:`read_metrics`) and how a model's landmarks are matched to a data
set's (:func:`shared_landmarks`), so that runs, comparisons and calibration read one format
without importing one another.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..errors import DataError
from . import metrics as M
from .human import pooled_mre

__all__ = ["SUMMARY_KEYS", "figure_names", "run_figures", "set_figures", "read_metrics", "shared_landmarks"]


#: the few figures of a run the DVC summary shows: four, so that a `dvc metrics show` row fits 120 columns
#: (docs/team.md); the counts and the other human-limit figures are in comparison.md/.csv
SUMMARY_KEYS = ("mre_mm/shared", "mre_mm/all", "sdr_2.0mm/shared", "human_mre_mm/shared")


def figure_names(thresholds: Sequence[float] = M.DEFAULT_THRESHOLDS_MM, landmark_set: str = "shared") -> list[str]:
    """The names of a run's figures over ``landmark_set`` (``shared`` | ``all``), in table order."""
    s = landmark_set
    out = [f"n_landmarks/{s}", f"mre_mm/{s}", f"mre_mm/{s}/ci95_lo", f"mre_mm/{s}/ci95_hi"]
    for t in thresholds:
        k = M.threshold_key(t)
        out += [f"sdr_{k}mm/{s}", f"sdr_{k}mm/{s}/ci95_lo", f"sdr_{k}mm/{s}/ci95_hi"]
    return out + [f"human_mre_mm/{s}", f"vs_each_mre_mm/{s}", f"human_vs_mean_mre_mm/{s}"]


def _pct(v):
    return None if v is None or not np.isfinite(v) else 100.0 * float(v)


def set_figures(
    summary: Mapping, ci: Mapping, names: Sequence[str], s: str, human: Mapping | None, hcmp: Mapping | None
) -> dict:
    out: dict = {f"n_landmarks/{s}": len(names), f"mre_mm/{s}": summary.get("mre_mm")}
    lo_hi = (ci or {}).get("mre_mm") or [None, None]
    out[f"mre_mm/{s}/ci95_lo"], out[f"mre_mm/{s}/ci95_hi"] = lo_hi[0], lo_hi[1]
    for t, v in (summary.get("sdr") or {}).items():
        b = ((ci or {}).get("sdr") or {}).get(t) or [None, None]
        out[f"sdr_{t}mm/{s}"] = _pct(v)
        out[f"sdr_{t}mm/{s}/ci95_lo"], out[f"sdr_{t}mm/{s}/ci95_hi"] = _pct(b[0]), _pct(b[1])
    hcmp = hcmp or {}
    out[f"human_mre_mm/{s}"] = pooled_mre(hcmp.get("annotator_vs_annotator") or human, names)
    out[f"vs_each_mre_mm/{s}"] = pooled_mre(hcmp.get("model_vs_each"), names)
    out[f"human_vs_mean_mre_mm/{s}"] = pooled_mre(hcmp.get("annotator_vs_mean"), names)
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in out.items()}


def run_figures(
    overall: Mapping, names: Sequence[str], human: Mapping | None = None, human_comparison: Mapping | None = None
) -> dict:
    """A run's figures over all its landmarks (``/all`` names, SDR in percent).

    Args:
        overall: the ``overall`` block of an evaluation (``summarise`` + ``ci95`` + ``n_images``).
        names: the landmarks it is over.
        human: the ``human_limit`` block (``per_landmark``, ``per_landmark_n``), if any.
        human_comparison: the ``human_comparison`` block (:func:`cephalo.evaluate.human.like_with_like`).
    """
    return {
        "n_images": overall.get("n_images"),
        **set_figures(overall, overall.get("ci95") or {}, list(names), "all", human, human_comparison),
    }


def shared_landmarks(model_names: Sequence[str], data_names: Sequence[str]) -> tuple[list[str], list[int], list[int]]:
    """Landmarks a model and a data set share, by canonical name, in data order.

    Returns:
        (names, model_indices, data_indices).

    Raises:
        ValueError: no shared landmark.
    """
    pos = {n: i for i, n in enumerate(model_names)}
    names = [n for n in data_names if n in pos]
    if not names:
        raise ValueError(
            f"the model's landmarks {list(model_names)[:5]}... share no name with the data's {list(data_names)[:5]}..."
        )
    return names, [pos[n] for n in names], [list(data_names).index(n) for n in names]


def read_metrics(run_dir: str | Path) -> dict:
    """Read ``RUN_DIR/metrics.json`` (DataError if absent/invalid)."""
    p = Path(run_dir) / "metrics.json"
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise DataError("no metrics.json (not an evaluation folder)", p) from None
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON: {e}", p) from None
