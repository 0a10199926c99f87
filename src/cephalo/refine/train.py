"""Train the refiner with the one training loop (``cephalo.train``) on jittered windows.

:func:`train_refiner` is what ``cephalo train-refiner`` calls: it chooses the jitter (from the
global model's validation error), splits the index's images into training/validation exactly as
the global training does (``train.train_split`` / ``val_split`` / ``val_fraction``, by image),
cuts the windows (:func:`cephalo.refine.build_crop_set`) and hands them to
:func:`cephalo.train.train_on_variant`, which builds the model (name-based head transfer from
``--init``), codec and loss, trains, validates in mm and writes the checkpoints and MLflow run.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..config.schema import RefineConfig
from ..errors import ConfigError
from ..io import write_json
from ..models import read_checkpoint
from ..train import TrainRecording, train_on_variant
from ..train.loop import resolve_splits
from .dataset import _read_original_images, build_crop_set, jitter_from_mre

__all__ = ["choose_jitter", "train_refiner"]

log = logging.getLogger("cephalo.refine")


def choose_jitter(cfg: RefineConfig, global_ckpt: str | Path | None) -> tuple[float, str]:
    """Per-axis s.d. (mm) of the training-window offsets, and where it came from.

    ``jitter_mm: auto``: ``jitter_scale * MRE / sqrt(pi/2)`` with the global checkpoint's best
    validation MRE (mm), clipped to ``[min_jitter_mm, max_jitter_mm]``: windows are offset from
    the ground truth as the global model's predictions are (an isotropic Gaussian with that MRE;
    ``jitter_scale > 1`` widens it for the tail). A number is used as it is.

    Raises:
        ConfigError: ``auto`` without a global checkpoint that records a validation MRE.
    """
    if cfg.jitter_mm != "auto":
        return float(cfg.jitter_mm), "refine.jitter_mm"
    if global_ckpt is None:
        raise ConfigError("params refine.jitter_mm: 'auto' needs the global model (--global CKPT); or set a number")

    ck = read_checkpoint(global_ckpt)
    sel = (ck.extra or {}).get("selection") or {}
    mre = (sel.get("metrics") or {}).get("val_mre_mm")
    if mre is None or not np.isfinite(mre):
        raise ConfigError(
            "params refine.jitter_mm: 'auto' but the global checkpoint records no validation MRE "
            f"({global_ckpt}); set a number"
        )
    sd = float(np.clip(cfg.jitter_scale * jitter_from_mre(float(mre)), cfg.min_jitter_mm, cfg.max_jitter_mm))
    return sd, f"auto: {cfg.jitter_scale} x validation MRE {float(mre):.3f} mm / sqrt(pi/2) of {global_ckpt}"


def train_refiner(
    index_path: str | Path,
    out_dir: str | Path,
    tcfg,
    rcfg: RefineConfig,
    *,
    global_ckpt: str | Path | None = None,
    codec_params: Mapping | None = None,
    recording: TrainRecording | None = None,
    progress: bool = True,
    ground_truth: str | None = None,
):
    """Train a refiner on the images of an index; write ``out_dir`` (``cephalo bundle`` pairs it with a global model).

    Args:
        index_path: Parquet landmark index (original images and ground truth).
        out_dir: run directory: ``best.pt``, ``last.pt``, ``history.csv``, ``train.json``,
            ``refine.json`` (windows, jitter: the training settings of ``rcfg``).
        tcfg: ``cephalo.train.TrainConfig`` of the refiner (``train:`` + ``refine.train`` + stage).
        rcfg: :class:`RefineConfig`.
        global_ckpt: the global model the refiner follows (jitter ``auto`` from its validation MRE).
        codec_params: ``codec:`` params (sigma, decoder); input size = the window.
        recording, progress: as ``cephalo.train.train_on_variant``.
        ground_truth: annotator policy (default: the index's).

    Returns:
        ``cephalo.train.TrainResult``.

    Raises:
        DataError, ConfigError, CheckpointError (``CephaloError``).
    """
    index_path, out_dir = Path(index_path), Path(out_dir)
    jitter, jitter_src = choose_jitter(rcfg, global_ckpt)
    idx = _read_original_images(index_path, ground_truth)
    imgs = idx[0]
    train_rows, val_rows, val_desc = resolve_splits(
        imgs["split"].to_numpy(), [str(i) for i in imgs["image_id"]], tcfg, str(index_path)
    )
    log.info(
        "refiner: windows %d px at %.3g mm/px, jitter s.d. %.3g mm (%s); %d train / %d validation images",
        rcfg.window,
        rcfg.spacing_mm,
        jitter,
        jitter_src,
        len(train_rows),
        len(val_rows),
    )
    crops = build_crop_set(
        index_path, rcfg, jitter, train_rows=train_rows, val_rows=val_rows, seed=tcfg.seed, progress=progress, index=idx
    )
    crops.meta["validation"] = val_desc
    crops.meta["jitter_source"] = jitter_src
    # the windows carry their own train/valid labels (split by image above)
    d = tcfg.to_dict()
    d.update(train_split="train", val_split="valid" if len(val_rows) else None)
    cfg = type(tcfg).from_dict(d)
    arch = rcfg.arch
    kwargs = dict(rcfg.kwargs)
    if cfg.init.resolved(bool(kwargs.get("pretrained", False))).source == "checkpoint":
        arch, kwargs = None, {}  # the init checkpoint's own architecture
    out_dir.mkdir(parents=True, exist_ok=True)
    result = train_on_variant(
        crops,
        out_dir,
        cfg,
        arch=arch,
        model_kwargs=kwargs,
        codec_params=codec_params,
        recording=recording,
        progress=progress,
    )
    write_json(
        out_dir / "refine.json",
        {
            "refine": rcfg.training_settings(),
            "jitter_sd_mm": jitter,
            "jitter_source": jitter_src,
            "n_windows": len(crops),
            "n_train_windows": int((crops.splits == "train").sum()),
            "n_val_windows": int((crops.splits == "valid").sum()),
            "validation": val_desc,
            "index": str(index_path),
            "global": None if global_ckpt is None else str(global_ckpt),
        },
    )
    return result
