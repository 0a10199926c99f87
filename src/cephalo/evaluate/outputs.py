"""The files of an evaluation folder, from what :func:`cephalo.evaluate.runner.evaluate_predictions` measured.

``metrics.json``, the tables (``per_landmark.csv``, ``per_image.csv``, ``predictions.parquet``, the
measurement tables), ``diagnosis.md``, the figures under ``plots/`` and the worst images' overlays
under ``overlays/``, written whole and atomically (the folder's layout: :mod:`cephalo.evaluate.runner`).
Nothing is measured here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..geometry import apply_affine
from ..io import atomic_dir, write_json
from . import plots
from .diagnosis_report import Diagnosis
from .measurement_errors import write_outputs

__all__ = ["ImageGetter", "Scored", "write_evaluation"]

#: (image, affine original -> image frame) for overlays, given the row number of an image
ImageGetter = Callable[[int], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Scored:
    """What one evaluation measured that its files show.

    Attributes:
        ids, splits, devices: N labels each; names: K canonical landmark names.
        pred, gt: (N, K, 2) float64, xy, original-image pixels.
        err: (N, K) radial errors, mm; img_mre: (N,) per-image MRE, mm.
        seen: (N,) bool, the image was seen in training (:func:`cephalo.evaluate.leakage.find_leakage`).
        confidence: (N, K) decoder confidence, or None.
        per_landmark: :func:`cephalo.evaluate.metrics.summarise_per_landmark` rows with ``human_mre_mm``.
        diagnosis: the :class:`~cephalo.evaluate.diagnosis_report.Diagnosis`, or None when it failed;
            diagnosis_error: why it failed (``""`` otherwise).
        measurements: the :func:`cephalo.evaluate.measurement_errors.measurement_errors` block.
    """

    ids: list[str]
    splits: list[str]
    devices: list[str]
    names: list[str]
    pred: np.ndarray
    gt: np.ndarray
    err: np.ndarray
    img_mre: np.ndarray
    seen: np.ndarray
    confidence: Any
    per_landmark: list[dict]
    diagnosis: Diagnosis | None
    diagnosis_error: str
    measurements: Mapping


def write_evaluation(
    out_dir: str | Path,
    result: Mapping,
    scored: Scored,
    *,
    label: str,
    human: Mapping | None,
    images: ImageGetter | None,
    n_worst: int,
    make_plots: bool,
) -> None:
    """Write the evaluation folder ``out_dir`` (replaced whole, atomically).

    Args:
        out_dir: the folder.
        result: the metrics.json content (NaN already None).
        scored: what the evaluation measured (:class:`Scored`).
        label: the run's name in titles; human: the human limit drawn beside the model's bars.
        images: ``i -> (image, affine original -> image)`` for the overlays (None: no overlays).
        n_worst: how many overlays of the worst images; make_plots: write the PNG figures.
    """
    ids, splits, devices, names = scored.ids, scored.splits, scored.devices, scored.names
    pred, gt, err, img_mre, seen_mask = scored.pred, scored.gt, scored.err, scored.img_mre, scored.seen
    confidence, per_lm, mblock = scored.confidence, scored.per_landmark, scored.measurements
    diag, diag_error = scored.diagnosis, scored.diagnosis_error
    n, k = gt.shape[:2]
    with atomic_dir(Path(out_dir)) as tmp:
        write_json(tmp / "metrics.json", result)
        rows = []
        for r in per_lm:
            row = {
                "landmark": r["landmark"],
                "n": r["n"],
                "n_missing": r["n_missing"],
                "mre_mm": r["mre_mm"],
                "sd_mm": r["sd_mm"],
                "median_mm": r["median_mm"],
                "p90_mm": r["p90_mm"],
            }
            row.update({f"sdr_{t}": v for t, v in r["sdr"].items()})
            row["human_mre_mm"] = r["human_mre_mm"]
            for lv, c in ((result.get("uncertainty") or {}).get("coverage") or {}).items():
                row[f"coverage_{lv}"] = c["per_landmark"].get(r["landmark"])  # fraction within the radius
            rows.append(row)
        pd.DataFrame(rows).to_csv(tmp / "per_landmark.csv", index=False, float_format="%.6g")
        pd.DataFrame(
            {
                "image_id": ids,
                "split": splits,
                "device": devices,
                "n": np.isfinite(err).sum(axis=1),
                "mre_mm": img_mre,
                "max_mm": [float(np.nanmax(r)) if np.isfinite(r).any() else np.nan for r in err],
                "seen": seen_mask,
            }
        ).to_csv(tmp / "per_image.csv", index=False, float_format="%.6g")
        conf = np.asarray(confidence, dtype=np.float64) if confidence is not None else np.full((n, k), np.nan)
        pd.DataFrame(
            {
                "image_id": np.repeat(ids, k),
                "landmark_name": np.tile(names, n),
                "x_pred": pred[..., 0].ravel(),
                "y_pred": pred[..., 1].ravel(),
                "x_gt": gt[..., 0].ravel(),
                "y_gt": gt[..., 1].ravel(),
                "error_mm": err.ravel(),
                "confidence": conf.ravel(),
                "split": np.repeat(splits, k),
                "device": np.repeat(devices, k),
            }
        ).to_parquet(tmp / "predictions.parquet", index=False)
        (tmp / "diagnosis.md").write_text(diag.to_markdown() if diag else f"# Diagnosis\n\n{diag_error}\n")
        pdir = tmp / "plots"
        pdir.mkdir()
        write_outputs(mblock, tmp, make_plot=make_plots, title=label)
        pd.DataFrame(plots.sdr_curve_table(err)).to_csv(pdir / "sdr_curve.csv", index=False)
        if make_plots:
            _write_plots(tmp, scored, human, images, n_worst, label)


def _write_plots(
    tmp: Path, scored: Scored, human: Mapping | None, images: ImageGetter | None, n_worst: int, label: str
) -> None:
    """The figures under ``tmp/plots`` and the ``n_worst`` images' overlays under ``tmp/overlays``."""
    pdir = tmp / "plots"
    ids, devices, pred, gt = scored.ids, scored.devices, scored.pred, scored.gt
    err, img_mre, names, per_lm, diag = scored.err, scored.img_mre, scored.names, scored.per_landmark, scored.diagnosis
    plots.sdr_curve({"model": err}, pdir / "sdr_curve.png", title=f"{label}: SDR curve")
    plots.per_landmark_bars(
        names,
        [r["mre_mm"] for r in per_lm],
        [r["sd_mm"] for r in per_lm],
        pdir / "per_landmark.png",
        human_mm=(human or {}).get("per_landmark"),
        title=label,
    )
    plots.error_vs_device(devices, img_mre, pdir / "error_vs_device.png", title=f"{label}: per-image MRE by device")
    if diag is not None:
        head = diag.findings[0].observation if diag.findings else diag.summary
        plots.diagnosis_figure(
            pred, gt, diag.per_landmark, pdir / "diagnosis.png", title=f"{label}: MRE {diag.mre_mm:.2f} mm. {head}"
        )
    if images is not None and n_worst > 0:
        odir = tmp / "overlays"
        odir.mkdir()
        order = [int(i) for i in np.argsort(-np.nan_to_num(img_mre, nan=-1.0))[:n_worst] if np.isfinite(img_mre[i])]
        for rank, i in enumerate(order):
            img, aff = images(i)
            plots.overlay(
                img,
                apply_affine(aff, gt[i]),
                apply_affine(aff, pred[i]),
                odir / f"worst_{rank + 1:02d}_{ids[i]}.png",
                title=f"{label}: {ids[i]}, MRE {img_mre[i]:.2f} mm",
                names=names,
            )
