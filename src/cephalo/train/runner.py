"""Assemble a training run from a variant directory: model, codec, loss, augmentation, meta.

:func:`train_on_variant` is what ``cephalo train`` calls (after reading params). It

1. sets up the process layout (single process or ``torchrun`` DDP),
2. seeds python/numpy/torch and (``deterministic``) deterministic kernels,
3. opens the variant (``cephalo.preprocess.load_variant``: memmap images, no decodes),
4. builds the codec (``cephalo.codecs.create_codec``, stride 4, input = variant size),
5. builds and initialises the model (``cephalo.models``): from a checkpoint with the head
   transferred by landmark name (public ISBI HRNet or a cephalo checkpoint), from timm
   ImageNet weights, or from scratch,
6. runs :class:`cephalo.train.loop.Trainer` and writes ``train.json`` (+ ``init_report.json``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import provenance as _prov
from ..augment import build_augmentation
from ..codecs import create_codec
from ..errors import ConfigError
from ..io import file_sha256, sweep_tree, write_json
from ..losses import create_loss
from ..models import create_model, init_from_checkpoint, read_checkpoint
from ..preprocess import load_variant
from ..tracking import RunRecord, experiment_name, log_run
from .config import TrainConfig
from .distributed import DistInfo, setup, teardown
from .loop import Trainer, TrainerOptions, TrainResult, resolve_splits

__all__ = ["train_on_variant", "seed_everything", "build_model", "image_hashes", "set_deterministic"]

log = logging.getLogger("cephalo.train")


def seed_everything(seed: int) -> None:
    """Seed python ``random``, numpy's global RNG and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def set_deterministic(on: bool, cuda: bool) -> None:
    """Deterministic kernels (cuDNN, cuBLAS workspace) when ``on``; cuDNN autotuning otherwise.

    On CPU, PyTorch's kernels are already deterministic for a fixed thread count, so nothing
    is switched (``use_deterministic_algorithms`` would only cost an import of the compiler stack).
    """
    if not cuda:
        return
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch.backends.cudnn.deterministic = False
        torch.backends.cudnn.benchmark = True


def build_model(arch: str | None, names: list[str], cfg: TrainConfig, model_kwargs: Mapping | None = None):
    """Create and initialise the model of a run.

    Args:
        arch: ``create_model`` name; ``None`` with a checkpoint init = the checkpoint's own
            architecture and keywords (``ModelMeta.arch``/``arch_kwargs``).
        names: the variant's landmark names (output channels, in order).
        cfg: the run's config (``init``).
        model_kwargs: ``create_model`` keywords (``pretrained`` read for ``init.source: auto``).

    Returns:
        ``(model, new_param_names, init_report dict)``. ``new_param_names`` are the parameters
        that no pretrained weights initialised (trained with ``head_lr``, never frozen).

    Raises:
        CheckpointError: unreadable init checkpoint, too few backbone tensors transferred.
        ConfigError: ``init.source: imagenet`` with a model that has no ImageNet weights.
    """
    kw = dict(model_kwargs or {})
    src = cfg.init.resolved(bool(kw.pop("pretrained", False))).source
    if arch is None:
        if src != "checkpoint":
            raise ConfigError("no model architecture: set model.arch (or --model), or initialise from a checkpoint")

        meta = read_checkpoint(cfg.init.path).meta
        arch, kw = meta.arch, dict(meta.arch_kwargs)
    if arch.startswith("timm:"):
        kw["pretrained"] = src == "imagenet"
    elif src == "imagenet":
        raise ConfigError(f"params train.init.source: 'imagenet' needs a timm model (timm:<name>), not {arch!r}")
    model = create_model(arch, len(names), **kw)
    all_params = [n for n, _ in model.named_parameters()]
    head_keys = set(getattr(model, "landmark_head_keys", ()))
    if src == "checkpoint":
        report = init_from_checkpoint(
            model,
            cfg.init.path,
            None,
            list(names),
            min_backbone_fraction=cfg.init.min_backbone_fraction,
            new_channel_init=cfg.init.new_channel_init,
        )
        loaded = set(report.get("loaded", []))
        new = [n for n in all_params if n not in loaded]
        report = {"init_source": "checkpoint", "path": str(cfg.init.path), **report}
    elif src == "imagenet":
        new = [n for n in all_params if n.startswith("head.") or n in head_keys]
        report = {"init_source": "imagenet", "arch": arch}
    else:
        new = list(all_params)
        report = {"init_source": "scratch", "arch": arch}
    report["arch"] = arch
    report["arch_kwargs"] = {k: v for k, v in kw.items() if k != "pretrained"}
    report["new_param_names"] = new
    return model, new, report


def image_hashes(images: np.ndarray, rows) -> list[str]:
    """SHA-256 of each ``images[row]`` array's bytes (the preprocessed pixels), in ``rows`` order."""
    return [hashlib.sha256(np.ascontiguousarray(images[int(r)]).tobytes()).hexdigest() for r in rows]


def _original_hashes(variant, rows) -> dict[str, str] | None:
    """SHA-256 of the original image files, when the variant's paths resolve; else None."""
    table = getattr(variant, "table", None)
    if table is None or "image_path" not in table:
        return None
    src = Path(str((getattr(variant, "meta", {}) or {}).get("source_index", {}).get("path", "")))
    out = {}
    for r in rows:
        p = Path(str(table["image_path"].iloc[int(r)]))
        if not p.is_absolute() and src.name:
            p = src.parent / p
        if not str(p) or not p.is_file():
            return None
        out[variant.image_ids[int(r)]] = file_sha256(p)
    return out


def _ids_by_dataset(variant, rows) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    ds = getattr(variant, "datasets", None)
    for r in rows:
        key = str(ds[int(r)]) if ds is not None else "unknown"
        out.setdefault(key, []).append(variant.image_ids[int(r)])
    return out


@dataclass(frozen=True)
class TrainRecording:
    """What a training records about itself, and the MLflow run it is logged as.

    Attributes:
        params: the full params dict, recorded in checkpoint provenance.
        tracking: a ``cephalo.tracking.TrackingConfig`` (or None): one MLflow run at the end.
        command: the command line, recorded in provenance and tracking.
        experiment: the MLflow experiment (default: ``cephalo.tracking.experiment_name``
            of the data set).
        stage: the ``--stage`` name (``source``, ``finetune``), in the run name and params.
    """

    params: Mapping | None = None
    tracking: Any = None
    command: str | None = None
    experiment: str | None = None
    stage: str | None = None


def train_on_variant(
    data_dir: str | Path,
    out_dir: str | Path,
    cfg: TrainConfig,
    *,
    arch: str | None,
    model_kwargs: Mapping | None = None,
    codec_params: Mapping | None = None,
    recording: TrainRecording | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train ``arch`` on the variant at ``data_dir``; outputs in ``out_dir`` (see module doc).

    Args:
        data_dir: variant directory (``cephalo preprocess`` output), or an in-memory object with a
            ``Variant``'s attributes (``cephalo.refine.CropSet``); its ``path`` labels it.
        out_dir: run directory: ``best.pt``, ``last.pt``, ``history.csv``, ``train.json``,
            ``init_report.json``.
        cfg: :class:`TrainConfig` (``train:`` params with CLI overrides applied).
        arch: ``cephalo.models.create_model`` name (``hrnet_w32``, ``timm:<name>``); ``None``
            with a checkpoint init: the checkpoint's architecture.
        model_kwargs: extra ``create_model`` keywords (``model:`` params).
        codec_params: ``codec:`` params (``name``, ``sigma``, ``decoder``, ``convention``...);
            ``input_size``/``heatmap_size`` come from the variant and the model stride.
        recording: params, command line and MLflow run recorded (:class:`TrainRecording`;
            None: its defaults: no params, this process's command line, no MLflow run).
        progress: tqdm bars.

    Raises:
        DataError, ConfigError, CheckpointError, NonFiniteLossError (all ``CephaloError``).
    """
    rec = recording or TrainRecording()
    params, tracking, command = rec.params, rec.tracking, rec.command
    info: DistInfo = setup(cfg.device)
    try:
        set_deterministic(cfg.deterministic, info.device.type == "cuda")
        seed_everything(cfg.seed + info.rank * 0)  # same init on every rank; DDP broadcasts anyway
        # a variant directory, or an object with a Variant's attributes (e.g. the refiner's windows,
        # cephalo.refine.CropSet) trained by the same loop
        variant = data_dir if hasattr(data_dir, "landmarks_original") else load_variant(data_dir)
        data_dir = getattr(variant, "path", data_dir)
        names = list(variant.landmark_names)
        W, H = (int(v) for v in variant.input_size)
        model, new, report = build_model(arch, names, cfg, model_kwargs)
        arch = report["arch"]
        model_kwargs = report["arch_kwargs"]
        stride = int(getattr(model, "stride", 4))
        if W % stride or H % stride:
            raise ConfigError(f"variant input size {W}x{H} is not a multiple of the model stride {stride}")
        ckw = {k: v for k, v in dict(codec_params or {}).items() if k not in ("input_size", "heatmap_size")}
        try:
            codec = create_codec(input_size=(W, H), heatmap_size=(W // stride, H // stride), **ckw)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"params codec: {e}") from None
        try:
            loss_fn = create_loss(cfg.loss, **cfg.loss_kwargs)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"params train.loss: {e}") from None
        augment_factory = None
        if cfg.augment and cfg.augment.get("enabled", True):
            build_augmentation(cfg.augment, cfg.seed)  # validate the config now (ConfigError early)
            augment_factory = partial(build_augmentation, cfg.augment)

        train_rows, val_rows, val_desc = resolve_splits(variant.splits, variant.image_ids, cfg, str(data_dir))
        train_ids = [variant.image_ids[int(r)] for r in train_rows]
        vmeta = getattr(variant, "meta", {}) or {}
        provenance = {
            "stage": "train",
            "command": command or " ".join(sys.argv),
            # cephalo version, git commit + dirty flag, Python/package versions, CPU/GPU, threads,
            # seed, SHA-256 of the effective params (cephalo.provenance.collect)
            **_prov.collect(params, seed=cfg.seed, device=str(info.device)),
            "params": dict(params or {}),
            "train_config": cfg.to_dict(),
            "data_dir": str(data_dir),
            "data_index_hash": (vmeta.get("source_index") or {}).get("sha256"),
            "variant_fingerprint": vmeta.get("fingerprint"),
            "train_split": cfg.train_split,
            "val_split": cfg.val_split,
            "validation": val_desc,
            "val_image_ids": [variant.image_ids[int(r)] for r in val_rows],
            # {dataset: [image ids]} (ids alone collide between data sets)
            "train_image_ids": _ids_by_dataset(variant, train_rows),
            # content hashes for leakage checks: original files where reachable, else preprocessed pixels
            "train_image_hashes": None,
            "train_image_hash_kind": None,
            "train_image_array_hashes": dict(zip(train_ids, image_hashes(variant.images, train_rows), strict=True)),
            "init": {k: v for k, v in report.items() if k not in ("new_param_names", "loaded")},
            "world_size": info.world_size,
        }
        orig = _original_hashes(variant, train_rows) if info.is_main else None
        if orig is not None:
            provenance["train_image_hashes"], provenance["train_image_hash_kind"] = orig, "original_file_sha256"
        else:
            provenance["train_image_hashes"] = provenance["train_image_array_hashes"]
            provenance["train_image_hash_kind"] = "preprocessed_array_sha256"
        meta = {
            "arch": arch,
            "landmark_names": names,
            "input_size": [W, H],
            "heatmap_size": [W // stride, H // stride],
            "variant": variant.spec,
            "normalisation": variant.normalisation,
            "codec": codec.to_dict(),
            "provenance": provenance,
            "arch_kwargs": {k: v for k, v in dict(model_kwargs or {}).items() if k != "pretrained"},
        }
        out_dir = Path(out_dir)
        if info.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
            sweep_tree(out_dir)  # temporaries of a killed earlier run (checkpoints, history)
            write_json(out_dir / "init_report.json", _jsonable(report))
        trainer = Trainer(
            model,
            variant,
            codec,
            loss_fn,
            cfg,
            out_dir,
            meta=meta,
            new_param_names=new,
            augment_factory=augment_factory,
            options=TrainerOptions(dist_info=info, progress=progress, data_label=str(data_dir)),
        )
        result = trainer.run()
        if info.is_main:
            summary = {
                **result.to_dict(),
                "device": str(info.device),
                "world_size": info.world_size,
                "precision": trainer.precision,
                "encode_on_device": trainer.encode_on_device,
                "arch": arch,
                "data_dir": str(data_dir),
                "n_train": int(len(trainer.train_rows)),
                "n_val": int(len(trainer.val_rows)),
                "validation": trainer.val_desc,
                "steps_per_epoch": trainer.steps_per_epoch,
                "best_checkpoint": str(trainer.best_path),
                "last_checkpoint": str(trainer.last_path),
            }
            write_json(out_dir / "train.json", _jsonable(summary))
            if tracking is not None and getattr(tracking, "enabled", False):
                try:  # tracking is a view: it never fails a finished training
                    _track_training(rec, variant, cfg, meta, codec, trainer, result, summary, out_dir)
                except Exception as e:  # noqa: BLE001
                    import warnings

                    warnings.warn(
                        f"MLflow tracking failed (results are unaffected): {type(e).__name__}: {e}", stacklevel=2
                    )
        return result
    finally:
        teardown()


def _track_training(rec: TrainRecording, variant, cfg, meta, codec, trainer, result, summary, out_dir: Path) -> None:
    """One MLflow run per training: effective hyperparameters as params, per-epoch histories,
    the best checkpoint linked by path and SHA-256 (tags ``checkpoint``, ``checkpoint_sha256``).

    ``meta`` is the checkpoint's meta (``arch``, ``input_size``, ``heatmap_size``, ``provenance``).
    """
    tracking, experiment, stage = rec.tracking, rec.experiment, rec.stage
    vmeta = getattr(variant, "meta", {}) or {}
    arch, input_wh, heatmap_wh, provenance = meta["arch"], meta["input_size"], meta["heatmap_size"], meta["provenance"]
    c = cfg.to_dict()
    init = provenance.get("init") or {}
    init_path = init.get("path")
    init_hash = file_sha256(init_path) if init_path and Path(init_path).is_file() else None
    cdict = codec.to_dict() if hasattr(codec, "to_dict") else {}
    own = {
        "train_stage": stage or "",
        "arch": arch,
        "variant": str(vmeta.get("name", "")),
        "input_size": f"{input_wh[0]}x{input_wh[1]}",
        "heatmap_size": f"{heatmap_wh[0]}x{heatmap_wh[1]}",
        "init_source": init.get("init_source"),
        "init_checkpoint": init_path,
        "init_checkpoint_sha256": init_hash,
        "epochs": c.get("epochs"),
        "batch_size": c.get("batch_size"),
        "accumulate": c.get("accumulate"),
        "lr": c.get("lr"),
        "head_lr": cfg.effective_head_lr,
        "weight_decay": c.get("weight_decay"),
        "warmup_epochs": c.get("warmup_epochs"),
        "min_lr_ratio": c.get("min_lr_ratio"),
        "freeze_backbone_epochs": c.get("freeze_backbone_epochs"),
        "grad_clip": c.get("grad_clip"),
        "loss": c.get("loss"),
        "loss_kwargs": c.get("loss_kwargs") or {},
        "ema": (c.get("ema") or {}).get("enabled"),
        "precision": trainer.precision,
        "augment": bool((c.get("augment") or {}).get("enabled", False)),
        "codec_sigma": cdict.get("sigma"),
        "decoder": cdict.get("decoder"),
        "seed": c.get("seed"),
        "n_train": summary.get("n_train"),
        "n_val": summary.get("n_val"),
        "validation": summary.get("validation"),
    }
    best = Path(trainer.best_path)
    dataset = str(variant.datasets[0]) if len(variant.datasets) else "unknown"
    run = RunRecord(
        dataset=dataset,
        stage="train",
        variant=own["variant"],
        run_name=f"train-{stage}/{own['variant']}" if stage else None,
        experiment=experiment or experiment_name(tracking, None, dataset),
        command=provenance["command"],
        data_index_hash=provenance["data_index_hash"],
        checkpoint=best,
        checkpoint_hash=file_sha256(best) if best.is_file() else None,
        provenance={
            k: provenance.get(k)
            for k in (
                "cephalo_version",
                "git_commit",
                "git_dirty",
                "python",
                "packages",
                "cpu_model",
                "gpu_name",
                "threads",
                "device",
                "seed",
                "params_sha256",
            )
        },
    )
    log_run(
        tracking,
        run,
        params=own,
        metrics={
            "best_val_mre_mm": result.best_score,
            "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run,
        },
        artifacts=[out_dir / "history.csv", out_dir / "train.json", out_dir / "init_report.json"],
        series=_history_series(out_dir / "history.csv"),
    )


def _history_series(path: Path) -> dict[str, list[float]]:
    """Per-epoch curves of ``history.csv`` (numeric columns except the epoch number) for MLflow."""
    import pandas as pd

    h = pd.read_csv(path)
    # val_sdr_2mm is already in percent; named as everywhere else (sdr_<t>mm)
    rename = {"val_sdr_2mm": "val_sdr_2.0mm"}
    return {
        rename.get(c, c): h[c].astype(float).tolist()
        for c in h.columns
        if c not in ("epoch", "is_best") and pd.api.types.is_numeric_dtype(h[c])
    }


def _jsonable(o: Any) -> Any:
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, float) and not np.isfinite(o):
        return None
    if isinstance(o, (np.floating, np.integer)):
        return _jsonable(o.item())
    if isinstance(o, (bool, int, float, str)) or o is None:
        return o
    return str(o)
