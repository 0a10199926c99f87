"""Evaluation runs: predict on a preprocessing variant, map back, measure in mm, diagnose, plot.

:func:`evaluate_predictions` needs no model (predictions already in original pixels);
:func:`evaluate_model` predicts with a loaded model on a variant and calls it.

Output folder (written whole, atomically, by :func:`cephalo.evaluate.outputs.write_evaluation`)::

    metrics.json          # the truth (DVC metric): overall/seen/unseen, per split/device/landmark, CIs,
                          # human limit, leakage, diagnosis, provenance (gt policy, index hash, split,
                          # checkpoint hash, command)
    per_landmark.csv      # one row per landmark (+ human limit)
    per_image.csv         # one row per image (MRE, device, split, seen)
    predictions.parquet   # one row per image x landmark: pred/gt original px, error mm, confidence
    diagnosis.md          # plain-words diagnosis
    measurements.csv      # per cephalometric measurement: MAE [CI], bias, two-annotator limit, class accuracy
    measurements_per_image.csv  # image x measurement from prediction and ground truth
    plots/sdr_curve.csv   # DVC plot data (threshold_mm, sdr)
    plots/*.png           # measurement errors, SDR curve, per-landmark bars with human limit,
                          # error vs device, diagnosis
    overlays/worst_*.png  # worst images with ground truth and prediction
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config.schema import EvaluateConfig
from ..errors import DataError
from ..inference import Predictor, predict_variant
from ..preprocess import load_variant
from ..uncertainty import coverage
from . import metrics as M
from .diagnosis import diagnose
from .human import like_with_like, variant_annotators, variant_human_limit
from .leakage import find_leakage, image_content_hash
from .measurement_errors import measurement_errors
from .outputs import ImageGetter, Scored, write_evaluation
from .results import run_figures, shared_landmarks

__all__ = [
    "evaluate_predictions",
    "evaluate_model",
    "shared_landmarks",
    "EvalData",
    "EvalSettings",
    "EvalContext",
    "PredictOptions",
]


def _nanlist(x) -> Any:
    if isinstance(x, float) and not np.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _nanlist(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_nanlist(v) for v in x]
    return x


@dataclass
class EvalData:
    """Predictions and ground truth of N images x K landmarks, in original-image pixels.

    Attributes:
        pred: (N, K, 2) float, xy, original-image pixels (NaN = not predicted).
        gt: (N, K, 2) float, xy, original-image pixels (NaN = not annotated).
        spacing: (N, 2) float mm/px (x, y) per image.
        image_ids: N ids; names: K canonical landmark names.
        splits, devices: N labels each (per-split / per-device summaries); default ``"all"``/``"unknown"``.
        confidence: (N, K) decoder confidence, for the diagnosis (and the coverage of radii).
        image_sizes: (N, 2) original (w, h) px, for the diagnosis.
    """

    pred: np.ndarray
    gt: np.ndarray
    spacing: np.ndarray
    image_ids: Sequence[str]
    names: Sequence[str]
    splits: Sequence[str] | None = None
    devices: Sequence[str] | None = None
    confidence: np.ndarray | None = None
    image_sizes: np.ndarray | None = None


@dataclass(frozen=True)
class EvalSettings:
    """How an evaluation measures and what it draws (params ``evaluate:``, :meth:`from_config`).

    Attributes:
        thresholds: SDR thresholds (mm); n_boot, seed: bootstrap over images.
        confidence_level: bootstrap interval coverage.
        n_worst: how many overlays of the worst images.
        make_plots: write the plots (PNG) and overlays.
        diagnosis_thresholds: :class:`cephalo.config.schema.DiagnosisConfig` values.
    """

    thresholds: Sequence[float] = M.DEFAULT_THRESHOLDS_MM
    n_boot: int = 1000
    seed: int = 0
    confidence_level: float = 0.95
    n_worst: int = 4
    make_plots: bool = True
    diagnosis_thresholds: Mapping | None = None

    @classmethod
    def from_config(cls, ep: EvaluateConfig) -> EvalSettings:
        """The settings of the typed ``evaluate:`` section."""
        return cls(
            thresholds=list(ep.thresholds_mm),
            n_boot=ep.n_boot,
            seed=ep.seed,
            n_worst=ep.n_worst,
            diagnosis_thresholds=ep.diagnosis.model_dump(),
        )


@dataclass
class EvalContext:
    """What a run is named, set beside and recorded with (each optional).

    Attributes:
        label: the run/variant name in titles.
        info: provenance recorded at the top of metrics.json (``gt_policy``, ``data_index_hash``,
            ``split``, ``checkpoint_sha256``, ``command``, ``variant``, ...).
        human: :func:`cephalo.evaluate.human.human_limit` result, shown beside the model.
        leakage: :func:`cephalo.evaluate.leakage.find_leakage` result; seen images are
            summarised separately (``seen`` / ``unseen``).
        annotators: name -> (N, K, 2) original px per annotator: with two or more, the model and
            the annotators are compared like with like (:func:`cephalo.evaluate.human.like_with_like`,
            key ``human_comparison``), and the two-annotator limit of the cephalometric measurements
            is computed (:mod:`cephalo.evaluate.measurement_errors`).
        calibration: the model's conformal calibration (:mod:`cephalo.uncertainty`): empirical
            coverage of its radii on these images goes into ``uncertainty`` (needs ``confidence``).
        preprocessing: what the run fed the model vs what it was trained with (see
            :func:`cephalo.evaluate.diagnosis.diagnose`), to name a collapse's cause.
        images: ``i -> (image, affine original -> image)`` for overlays of the worst images.
    """

    label: str = ""
    info: Mapping | None = None
    human: Mapping | None = None
    leakage: Mapping | None = None
    annotators: Mapping[str, np.ndarray] | None = None
    calibration: Mapping | None = None
    preprocessing: Mapping | None = None
    images: ImageGetter | None = None


def evaluate_predictions(
    data: EvalData, out_dir: str | Path, settings: EvalSettings | None = None, context: EvalContext | None = None
) -> dict:
    """Measure predictions against ground truth in mm and write the evaluation folder.

    Args:
        data: predictions, ground truth, spacing and the per-image labels (:class:`EvalData`).
        out_dir: output folder (replaced whole, atomically).
        settings: thresholds, bootstrap, plots (:class:`EvalSettings`; default: its defaults).
        context: the run's name, provenance and what it is set beside (:class:`EvalContext`).

    Returns:
        the metrics.json content (dict). Its ``figures`` entry holds the run-level figures under
        the names every view uses (:func:`cephalo.evaluate.results.figure_names`): ``mre_mm/all``,
        ``sdr_2.0mm/all`` (percent), their CI bounds, ``n_landmarks/all``, ``n_images``; ``/all``
        = every landmark this run scores (listed in ``landmarks``). SDR in the detail blocks
        (``overall``, ``per_*``) is a fraction (``units``).

    Raises:
        ValueError: inconsistent shapes or invalid spacing (from :mod:`metrics`).
    """
    st, cx = settings or EvalSettings(), context or EvalContext()
    thresholds, n_boot, seed, confidence_level = st.thresholds, st.n_boot, st.seed, st.confidence_level
    n_worst, make_plots, diagnosis_thresholds = st.n_worst, st.make_plots, st.diagnosis_thresholds
    label, info, human, leakage, annotators = cx.label, cx.info, cx.human, cx.leakage, cx.annotators
    calibration, preprocessing, images = cx.calibration, cx.preprocessing, cx.images
    splits, devices, confidence, image_sizes = data.splits, data.devices, data.confidence, data.image_sizes
    spacing = data.spacing
    pred = np.asarray(data.pred, dtype=np.float64)
    gt = np.asarray(data.gt, dtype=np.float64)
    n, k = gt.shape[:2]
    ids = [str(i) for i in data.image_ids]
    names = [str(x) for x in data.names]
    if len(ids) != n or len(names) != k:
        raise ValueError(f"{len(ids)} ids / {len(names)} names for arrays of shape {gt.shape}")
    splits = [str(s) for s in (splits if splits is not None else ["all"] * n)]
    devices = [str(d) for d in (devices if devices is not None else ["unknown"] * n)]
    thresholds = [float(t) for t in thresholds]
    err = M.radial_errors_mm(pred, gt, spacing)
    n_gt_missing = int(np.isnan(gt).any(axis=-1).sum())
    n_pred_missing = int((np.isnan(pred).any(axis=-1) & ~np.isnan(gt).any(axis=-1)).sum())

    def block(e: np.ndarray) -> dict:
        return {
            "n_images": int(e.shape[0]),
            **M.summarise(e, thresholds),
            "ci95": M.bootstrap_ci(e, thresholds, n_boot=n_boot, seed=seed, confidence=confidence_level),
        }

    seen_ids = set((leakage or {}).get("seen", []))
    seen_mask = np.array([i in seen_ids for i in ids], dtype=bool)
    per_lm = M.summarise_per_landmark(err, names, thresholds)
    human_pl = dict((human or {}).get("per_landmark", {}))
    for r in per_lm:
        r["human_mre_mm"] = human_pl.get(r["landmark"], float("nan"))
    img_mre = M.per_image_mre(err)

    diag = None
    try:
        diag = diagnose(
            pred,
            gt,
            spacing,
            names,
            confidence=confidence,
            image_sizes=image_sizes,
            thresholds=dict(diagnosis_thresholds or {}),
            label=label,
            preprocessing=dict(preprocessing) if preprocessing else None,
        )
    except ValueError as e:
        diag_error = str(e)
    else:
        diag_error = ""

    overall = block(err)
    hcmp = like_with_like(pred, dict(annotators), spacing, names, thresholds) if annotators else None
    result: dict = {
        "name": label,
        **dict(info or {}),
        "settings": {
            "n_boot": int(n_boot),
            "confidence_level": float(confidence_level),
            "bootstrap_seed": int(seed),
            "thresholds_mm": thresholds,
        },
        "units": {"mre": "mm", "sdr_in_figures": "percent", "sdr_in_detail_blocks": "fraction"},
        "landmark_set": {"all": {"n_landmarks": k, "landmarks": names}},
        "figures": run_figures(overall, names, human=human, human_comparison=hcmp),
        "thresholds_mm": thresholds,
        "landmarks": names,
        "missing": {"ground_truth": n_gt_missing, "prediction": n_pred_missing},
        "overall": overall,
        "unseen": block(err[~seen_mask]) if seen_mask.any() else None,
        "seen": block(err[seen_mask]) if seen_mask.any() else None,
        "per_split": M.summarise_groups(err, splits, thresholds),
        "per_device": M.summarise_groups(err, devices, thresholds),
        "per_landmark": {r["landmark"]: {kk: v for kk, v in r.items() if kk != "landmark"} for r in per_lm},
        "human_limit": dict(human) if human else None,
        "human_comparison": hcmp,
        "leakage": dict(leakage) if leakage else None,
        "diagnosis": (
            {
                "summary": diag.summary,
                "findings": [f.__dict__ for f in diag.findings],
                "constellation_ratio": diag.constellation_ratio,
                "spread_ratio": diag.spread_ratio,
                "offset_px": diag.offset_px,
                "offset_mm": diag.offset_mm,
                "confidence": diag.confidence,
            }
            if diag
            else {"summary": diag_error, "findings": []}
        ),
    }
    mblock = measurement_errors(
        pred, gt, spacing, names, image_ids=ids, annotators=annotators, n_boot=n_boot, seed=seed
    )
    result["measurements"] = {k: v for k, v in mblock.items() if k != "per_image"}  # per image: the CSV
    if calibration and confidence is not None:
        result["uncertainty"] = {
            "method": calibration.get("method"),
            "scale": calibration.get("scale"),
            "pooling": calibration.get("pooling", "landmark"),  # format 1 was per landmark
            "difficulty_split": calibration.get("difficulty_split"),
            "calibration_split": calibration.get("split"),
            "calibration_images": calibration.get("n_images"),
            "calibration_loo_coverage": calibration.get("loo_coverage"),
            "coverage": coverage(calibration, err, confidence, names),
        }
    result = _nanlist(result)

    scored = Scored(
        ids=ids,
        splits=splits,
        devices=devices,
        names=names,
        pred=pred,
        gt=gt,
        err=err,
        img_mre=img_mre,
        seen=seen_mask,
        confidence=confidence,
        per_landmark=per_lm,
        diagnosis=diag,
        diagnosis_error=diag_error,
        measurements=mblock,
    )
    write_evaluation(
        out_dir, result, scored, label=label, human=human, images=images, n_worst=n_worst, make_plots=make_plots
    )
    return result


#: run-time input normalisations beyond cephalo.preprocess.NORMALISATIONS: ``raw`` = grey values
#: 0-255 fed unscaled (a user's preprocessing mistake, reproduced by the naive evaluation)
EXTRA_NORMALISATIONS = {"raw": {"name": "unit", "max_value": 1.0}}


@dataclass
class PredictOptions:
    """How :func:`evaluate_model` predicts.

    Attributes:
        batch_size: images per forward pass.
        device: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` (:func:`cephalo.inference.resolve_device`).
        progress: show a progress bar.
        normalisation, decoder: overrides of the model's own (see :func:`predict_variant`), to
            reproduce a user's preprocessing mistake; recorded in metrics.json (``preprocessing``)
            and named in the diagnosis.
        refine: ``(coords (R, K, 2) original px, rows) -> (R, K, 2)`` applied to the model's
            predictions (``cephalo.refine.variant_refiner`` for a global + refiner bundle).
    """

    batch_size: int = 4
    device: str = "cpu"
    progress: bool = True
    normalisation: str | None = None
    decoder: str | None = None
    refine: Callable[[np.ndarray, Sequence[int]], np.ndarray] | None = None


def evaluate_model(
    model,
    meta,
    variant,
    split: str,
    out_dir: str | Path,
    *,
    settings: EvalSettings | None = None,
    context: EvalContext | None = None,
    predict: PredictOptions | None = None,
) -> dict:
    """Predict with ``model`` on the ``split`` images of a variant and evaluate in mm.

    Predictions in original pixels come from :func:`cephalo.inference.predict_variant` (codec
    from ``meta.codec``, label frame and inverse preprocessing affine per image; the same path as
    training validation and ``cephalo predict``) and are compared over the landmarks the model
    and the data share (by name). Leakage (seen images, duplicates across
    splits) is checked against ``meta.provenance``.

    Args:
        model, meta: from ``cephalo.models.load_model``.
        variant: a loaded ``Variant`` or its directory.
        split: split name, or ``"all"``.
        out_dir: output folder (see the module doc).
        settings: as for :func:`evaluate_predictions`.
        context: ``label`` (default: the variant's name), ``info`` (added to what the variant and the
            model say), ``calibration``; ``human``: a precomputed human limit, else computed from the
            variant's annotators when it holds two or more. Leakage, annotators, preprocessing and
            overlay images are the variant's.
        predict: batch size, device, progress, normalisation/decoder overrides, refiner
            (:class:`PredictOptions`).

    Returns:
        the metrics.json content.

    Raises:
        cephalo.errors.DataError: no image in ``split``; ValueError: no shared landmark;
        cephalo.errors.ConfigError: unusable ``device``, or a model/codec mismatch.
    """

    st, cx, po = settings or EvalSettings(), context or EvalContext(), predict or PredictOptions()
    normalisation, decoder, refine = po.normalisation, po.decoder, po.refine
    if not hasattr(variant, "images"):
        variant = load_variant(variant)
    rows = np.arange(len(variant)) if split == "all" else np.flatnonzero(np.asarray(variant.splits) == split)
    if rows.size == 0:
        raise DataError(
            f"no image in split {split!r} (splits: {sorted(set(map(str, variant.splits)))})",
            getattr(variant, "path", None),
        )
    names, mi, di = shared_landmarks(list(meta.landmark_names), list(variant.landmark_names))
    predictor = Predictor.from_meta(
        model, meta, normalisation=variant.normalisation, device=po.device, device_key="evaluate.device"
    )
    if normalisation is not None:  # reproduce a user's preprocessing mistake
        predictor.normalisation = EXTRA_NORMALISATIONS.get(normalisation, normalisation)
    if decoder is not None:
        predictor.codec_spec.update(decoder=decoder, temperature=1.0)
    p = predict_variant(predictor, variant, rows, batch_size=po.batch_size, progress=po.progress, desc="evaluate")
    coords = p.coords if refine is None else refine(p.coords, rows)  # coarse-to-fine (cephalo.refine)
    pred, conf = coords[:, mi], p.confidence[:, mi]
    gt = np.asarray(variant.landmarks_original, dtype=np.float64)[rows][:, di]
    spacing = np.asarray(variant.spacing, dtype=np.float64)[rows]
    if not np.isfinite(spacing).all():
        raise DataError("some images have no pixel spacing: cannot report mm", getattr(variant, "path", None))

    all_hashes = [image_content_hash(variant.images[r]) for r in range(len(variant))]
    ids_all = list(variant.image_ids)
    leak = find_leakage(
        [ids_all[r] for r in rows],
        [str(variant.datasets[r]) for r in rows],
        [str(variant.splits[r]) for r in rows],
        getattr(meta, "provenance", {}),
        content_hashes=[[all_hashes[r]] for r in rows],
        all_ids=ids_all,
        all_splits=[str(s) for s in variant.splits],
        all_hashes=all_hashes,
    )
    human = cx.human if cx.human is not None else variant_human_limit(variant, rows, names, st.thresholds)
    annotators = variant_annotators(variant, rows, names)

    def getter(i: int):
        r = int(rows[i])
        return np.asarray(variant.images[r]), np.asarray(variant.affines[r])

    vmeta = getattr(variant, "meta", {}) or {}
    base_info = {
        "split": split,
        "variant": vmeta.get("name", Path(str(getattr(variant, "path", ""))).name),
        "gt_policy": vmeta.get("ground_truth"),
        "data_index_hash": (vmeta.get("source_index") or {}).get("sha256"),
        "variant_fingerprint": vmeta.get("fingerprint"),
        "model": {
            "arch": getattr(meta, "arch", None),
            "landmarks": list(meta.landmark_names),
            "input_size": list(getattr(meta, "input_size", []) or []),
            "codec": dict(getattr(meta, "codec", {}) or {}),
        },
        "landmark_mapping": {
            "shared": names,
            "model_only": [n for n in meta.landmark_names if n not in names],
            "data_only": [n for n in variant.landmark_names if n not in names],
        },
    }
    exp_norm = meta.normalisation or variant.normalisation
    preprocessing = {
        "used": {
            "normalisation": normalisation or _norm_name(exp_norm),
            "decoder": decoder or base_info["model"]["codec"].get("decoder", "dark"),
        },
        "expected": {
            "normalisation": _norm_name(exp_norm),
            "decoder": base_info["model"]["codec"].get("decoder", "dark"),
        },
        "variant": base_info["variant"],
    }
    base_info["preprocessing"] = preprocessing
    base_info.update(dict(cx.info or {}))
    data = EvalData(
        pred,
        gt,
        spacing,
        image_ids=[ids_all[r] for r in rows],
        names=names,
        splits=[str(variant.splits[r]) for r in rows],
        devices=[str(variant.devices[r]) for r in rows],
        confidence=conf,
        image_sizes=np.asarray(variant.orig_sizes)[rows],
    )
    context = EvalContext(
        label=cx.label or base_info["variant"],
        info=base_info,
        human=human,
        leakage=leak,
        annotators=annotators,
        calibration=cx.calibration,
        preprocessing=preprocessing,
        images=getter,
    )
    return evaluate_predictions(data, out_dir, st, context)


def _norm_name(spec) -> str:
    """The name of a normalisation spec (a name or ``{"name": ...}``)."""
    return str(spec.get("name")) if isinstance(spec, Mapping) else str(spec)
