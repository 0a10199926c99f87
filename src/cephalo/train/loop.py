"""The training loop: one object owns optimisation, validation in mm, checkpoints and resume.

:class:`Trainer` takes ready objects (model, variant, codec, loss) and a
:class:`~cephalo.train.config.TrainConfig`; it never reads params or argv.

Outputs in ``out_dir`` (rank 0 only):

* ``last.pt`` - after every epoch (and every ``checkpoint_every_steps`` optimizer steps): weights + the
  training state (:mod:`cephalo.train.state`: optimizer, scheduler, GradScaler, EMA, RNG states of
  every rank, epoch, best score, history, and the config fingerprint). Written atomically, so a kill
  at any moment leaves the previous epoch's file intact; ``Trainer.run`` resumes from it and ends
  with the same weights as an uninterrupted run (bitwise on CPU, ``deterministic: true``).
* ``best.pt`` - the weights that scored the lowest validation MRE (mm) so far (the EMA
  weights when EMA is on).
* ``history.csv`` - one row per epoch (DVC plots), rewritten atomically.

Validation: the validation images are predicted in original pixels by
:func:`cephalo.inference.predict_variant` (the same path as ``cephalo evaluate`` and ``cephalo
predict``: the trainer's codec, label frame and inverse preprocessing affine), and scored by
:func:`validation_figures` with :mod:`cephalo.evaluate.metrics` (MRE/SD/SDR as in
``metrics.json``; SDR in percent in ``history.csv``), using per-image pixel spacing.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import CephaloError, DataError
from ..evaluate import metrics as M
from ..inference import Predictor, predict_variant
from ..io import atomic_path
from ..models import ModelMeta, save_checkpoint
from ..preprocess import normalise
from .config import TrainConfig
from .data import EpochBatchSampler, HeatmapDataset, make_loader
from .distributed import DistInfo, all_min, all_sum, barrier, broadcast_floats, resolve_device
from .memory import check_batch_fits, estimate_training_memory
from .optim import ModelEMA, build_optimizer, build_scheduler
from .state import read_training_state, restore_training_state, training_state

__all__ = ["Trainer", "TrainerOptions", "TrainResult", "NonFiniteLossError", "HISTORY_COLUMNS", "validation_figures"]

log = logging.getLogger("cephalo.train")

HISTORY_COLUMNS = [
    "epoch",
    "train_loss",
    "val_loss",
    "val_mre_mm",
    "val_sd_mm",
    "val_sdr_2mm",
    "val_mre_px",
    "val_spread_ratio",
    "val_degenerate",
    "lr_backbone",
    "lr_head",
    "epoch_time_s",
    "images_per_s",
    "is_best",
]


class NonFiniteLossError(CephaloError):
    """The loss became NaN/inf; the run stopped and the last good checkpoint is intact."""


@dataclass
class TrainResult:
    """Summary of a finished (or resumed-complete) run."""

    out_dir: Path
    epochs_run: int
    best_epoch: int | None
    best_score: float | None
    score_name: str
    stopped_early: bool
    resumed_from_epoch: int | None
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {
            "out_dir": str(self.out_dir),
            "epochs_run": self.epochs_run,
            "best_epoch": self.best_epoch,
            "best_score": self.best_score,
            "score_name": self.score_name,
            "stopped_early": self.stopped_early,
            "resumed_from_epoch": self.resumed_from_epoch,
            "seconds": round(self.seconds, 3),
            "final": self.history[-1] if self.history else None,
        }


def validation_figures(
    pred: np.ndarray | None, gt: np.ndarray | None, spacing: np.ndarray | None, degenerate: np.ndarray | None = None
) -> dict:
    """The validation columns of ``history.csv`` (except ``val_loss``), computed with the same
    code as ``cephalo evaluate``'s ``metrics.json`` (:mod:`cephalo.evaluate.metrics`).

    Args:
        pred, gt: ``(N, K, 2)`` float64, xy, original-image pixels (NaN = missing); None = no
            validation (every figure NaN).
        spacing: ``(N, 2)`` float64 mm/px (x, y); rows without a finite positive spacing are left
            out of the mm figures (they still count in ``val_mre_px``).
        degenerate: ``(N, K)`` bool, heatmaps without a position.

    Returns:
        ``val_mre_mm``, ``val_sd_mm`` (mm, ``metrics.summarise``'s ``mre_mm``/``sd_mm``),
        ``val_sdr_2mm`` (**percent**: 100 x ``metrics.summarise``'s SDR fraction at 2 mm),
        ``val_mre_px`` (original px), ``val_spread_ratio`` (mean of the x and y
        ``metrics.spread_ratio``), ``val_degenerate`` (count), and ``val_loss`` (NaN here).
    """
    nan = float("nan")
    out = {
        "val_loss": nan,
        "val_mre_mm": nan,
        "val_sd_mm": nan,
        "val_sdr_2mm": nan,
        "val_mre_px": nan,
        "val_spread_ratio": nan,
        "val_degenerate": 0,
    }
    if pred is None or gt is None or spacing is None:
        return out
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    spacing = np.asarray(spacing, dtype=np.float64).reshape(-1, 2)
    has_mm = np.isfinite(spacing).all(axis=1) & (spacing > 0).all(axis=1)
    if has_mm.any():
        s = M.summarise(M.radial_errors_mm(pred[has_mm], gt[has_mm], spacing[has_mm]), [2.0])
        out["val_mre_mm"] = s["mre_mm"]
        out["val_sd_mm"] = s["sd_mm"]
        sdr = s["sdr"][M.threshold_key(2.0)]
        out["val_sdr_2mm"] = 100.0 * sdr if np.isfinite(sdr) else nan
    s_px = M.summarise(M.radial_errors_mm(pred, gt, np.ones(2)), [])
    out["val_mre_px"] = s_px["mre_mm"]  # unit spacing: the radial error in original pixels
    with np.errstate(all="ignore"):
        out["val_spread_ratio"] = float(np.mean(list(M.spread_ratio(pred, gt).values())))
    out["val_degenerate"] = int(np.asarray(degenerate, dtype=bool).sum()) if degenerate is not None else 0
    return out


def resolve_splits(splits, image_ids, cfg: TrainConfig, label: str = "variant"):
    """Rows for training and validation (see ``TrainConfig``: ``val_split``/``val_fraction``).

    Returns:
        ``(train_rows int64 ndarray, val_rows int64 ndarray, description str)``.

    Raises:
        DataError: empty training split, a named validation split that is absent, or a
            hold-out that would leave no training image.
    """
    import hashlib

    splits = np.asarray(splits).astype(str)
    present = sorted(set(splits.tolist()))
    train = np.flatnonzero(splits == cfg.train_split)
    if len(train) == 0:
        raise DataError(
            f"no images in training split {cfg.train_split!r} (splits present: {present}); set train.train_split", label
        )
    vs = cfg.val_split
    if vs is None:
        return train, np.zeros(0, np.int64), "none"
    if vs == "auto":
        for cand in ("valid", "val", "validation"):
            if cand in present and cand != cfg.train_split:
                return train, np.flatnonzero(splits == cand), f"split {cand!r}"
        if cfg.val_fraction <= 0:
            return train, np.zeros(0, np.int64), "none"
        n_val = int(math.ceil(cfg.val_fraction * len(train)))
        if n_val >= len(train):
            raise DataError(
                f"val_fraction {cfg.val_fraction} of {len(train)} training images leaves none to train on", label
            )
        split_seed = cfg.seed if cfg.split_seed is None else cfg.split_seed
        key = [hashlib.sha256(f"{split_seed}:{image_ids[int(r)]}".encode()).hexdigest() for r in train]
        order = np.argsort(np.asarray(key), kind="stable")
        val = np.sort(train[order[:n_val]])
        return np.setdiff1d(train, val), val, f"{n_val} held out of split {cfg.train_split!r} (val_fraction)"
    val = np.flatnonzero(splits == vs)
    if len(val) == 0:
        raise DataError(
            f"no images in validation split {vs!r} (splits present: {present}); set "
            "train.val_split (auto holds out train.val_fraction of the training split)",
            label,
        )
    return train, val, f"split {vs!r}"


@dataclass
class TrainerOptions:
    """How a :class:`Trainer` is hosted; none of it changes the weights.

    Attributes:
        dist_info: process layout (:func:`cephalo.train.distributed.setup`); default single process.
        save_fn: ``(path, model, meta, extra) -> None`` atomic checkpoint writer (default
            ``cephalo.models.save_checkpoint``).
        tracker: optional object with ``log_metrics(dict, step)`` (MLflow through
            ``cephalo.tracking``); failures there never stop training.
        progress: show tqdm bars (rank 0).
        data_label: the data's name in messages (default ``"variant"``).
    """

    dist_info: DistInfo | None = None
    save_fn: Callable | None = None
    tracker: Any = None
    progress: bool = True
    data_label: str | None = None


class Trainer:
    """Fine-tune / train a heatmap model on a preprocessing variant.

    Args:
        model: ``nn.Module`` ``(B, 3, H, W) float32 -> (B, K, H/stride, W/stride)``; K must
            equal ``len(variant.landmark_names)``. Built (and initialised) by the caller
            *after* seeding, so that resume and fresh runs start alike.
        variant: a :class:`cephalo.preprocess.Variant` (or any object with its attributes:
            ``images``, ``splits``, ``landmarks``, ``landmarks_original``, ``affines``,
            ``spacing``, ``normalisation``, ``landmark_names``, ``image_ids``).
        codec: ``cephalo.codecs`` codec for ``encode`` (targets) and ``decode`` (validation).
        loss_fn: ``loss(pred (B,K,h,w) float32, target (B,K,h,w), weights (B,K)) -> scalar``
            (``cephalo.losses.create_loss``; weights broadcast as (B,K,1,1) inside).
        cfg: :class:`TrainConfig`.
        out_dir: run directory.
        meta: checkpoint meta dict (``ModelMeta.to_dict()`` layout) written with every checkpoint.
        new_param_names: parameters not initialised from pretrained weights (trained with
            ``head_lr``; never frozen).
        augment_factory: ``seed -> callable(image, keypoints)``, or ``None``.
        options: how the run is hosted (:class:`TrainerOptions`: process layout, checkpoint
            writer, tracker, progress bars, the data's name in messages); none of it changes the weights.

    Raises (from :meth:`run`):
        DataError: empty train/validation split.
        ConfigError: ``last.pt`` exists from a run with different settings (resume: auto/must).
        NonFiniteLossError: NaN/inf loss; ``last.pt`` keeps the last completed epoch.
    """

    def __init__(
        self,
        model: nn.Module,
        variant: Any,
        codec: Any,
        loss_fn: Callable,
        cfg: TrainConfig,
        out_dir: str | Path,
        meta: dict | None = None,
        new_param_names: Sequence[str] = (),
        augment_factory: Callable | None = None,
        options: TrainerOptions | None = None,
    ):
        opts = options or TrainerOptions()
        dist_info, save_fn, tracker = opts.dist_info, opts.save_fn, opts.tracker
        progress, data_label = opts.progress, opts.data_label
        self.cfg = cfg
        self.out_dir = Path(out_dir)
        self.variant = variant
        self.codec = codec
        self.loss_fn = loss_fn
        self.meta = dict(meta or {})
        self.info = dist_info or DistInfo(device=_device_for(cfg))
        self.device = self.info.device
        self.tracker = tracker
        self.progress = progress
        self.save_fn = save_fn
        self.data_label = data_label or "variant"
        self.new_param_names = set(new_param_names)
        names = [n for n, _ in model.named_parameters()]
        unknown = self.new_param_names - set(names)
        if unknown:
            raise ValueError(f"new_param_names not in the model: {sorted(unknown)[:5]}")

        self.train_rows, self.val_rows, self.val_desc = resolve_splits(
            variant.splits, variant.image_ids, cfg, self.data_label
        )
        self.K = len(variant.landmark_names)
        # model selection: validation MRE in mm; in original pixels where the validation images
        # have no pixel spacing; the training loss when there is no validation set
        if len(self.val_rows) == 0:
            self.score_name = "train_loss"
        elif np.isfinite(np.asarray(variant.spacing, dtype=np.float64)[self.val_rows]).all(axis=1).any():
            self.score_name = "val_mre_mm"
        else:
            self.score_name = "val_mre_px"
            log.warning(
                "%s: validation images have no pixel spacing: best.pt is chosen by MRE in pixels", self.data_label
            )

        # ---------------------------------------------------------- precision
        self.on_cuda = self.device.type == "cuda"
        mp = cfg.mixed_precision
        if mp == "auto":
            mp = "bf16" if self.on_cuda and torch.cuda.is_bf16_supported() else "fp16"
        self.precision = mp if self.on_cuda else "fp32"
        self.amp_dtype = None
        if self.on_cuda and mp == "bf16":
            self.amp_dtype = torch.bfloat16
        elif self.on_cuda and mp == "fp16":
            self.amp_dtype = torch.float16
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        if not self.on_cuda and cfg.mixed_precision not in ("none", "fp32") and self.info.is_main:
            log.info("mixed_precision %r: training on %s in float32", cfg.mixed_precision, self.device)

        # ---------------------------------------------------------- model
        model.to(self.device)
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        model.to(memory_format=self.memory_format)
        if self.on_cuda:  # a batch that cannot fit stops here in one line, not in a CUDA OOM traceback
            est = estimate_training_memory(
                model, tuple(int(v) for v in variant.input_size), self.device, self.amp_dtype
            )
            free, _ = torch.cuda.mem_get_info(self.device)
            check_batch_fits(
                est,
                cfg.batch_size,
                free + torch.cuda.memory_allocated(self.device),
                torch.cuda.get_device_name(self.device),
            )
        if cfg.sync_bn and self.info.distributed:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.raw_model = model
        if self.info.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            # find_unused_parameters: HRNet's last stage-4 module computes low-resolution outputs
            # the head never uses (as in the public checkpoint). (static_graph would avoid the
            # per-step search but breaks no_sync() gradient accumulation in torch 2.x.)
            self.model = DDP(
                model, device_ids=[self.device.index] if self.on_cuda else None, find_unused_parameters=True
            )
        else:
            self.model = model

        # ---------------------------------------------------------- data
        eod = cfg.encode_on_device
        self.encode_on_device = (self.on_cuda and hasattr(codec, "encode_torch")) if eod == "auto" else bool(eod)
        self.train_ds = HeatmapDataset(
            variant.images,
            variant.landmarks,
            self.train_rows,
            codec,
            augment_factory,
            seed=cfg.seed,
            encode=not self.encode_on_device,
        )
        self.sampler = EpochBatchSampler(
            len(self.train_rows),
            cfg.batch_size,
            self.info.world_size,
            self.info.rank,
            shuffle=True,
            drop_last=cfg.drop_last,
            seed=cfg.seed,
            max_batches=cfg.max_steps_per_epoch,
        )
        n_micro = len(self.sampler)
        if n_micro == 0:
            raise DataError(
                f"training split {cfg.train_split!r} has {len(self.train_rows)} images, fewer than "
                f"one global batch ({cfg.batch_size} x {self.info.world_size} processes) with "
                "drop_last; lower train.batch_size or set train.drop_last: false",
                self.data_label,
            )
        self.steps_per_epoch = math.ceil(n_micro / cfg.accumulate)

        # ---------------------------------------------------------- optimisation
        self.optimizer = build_optimizer(
            self.raw_model, self.new_param_names, cfg.lr, cfg.effective_head_lr, cfg.weight_decay, cfg.betas
        )
        total = self.steps_per_epoch * cfg.epochs
        warm = int(round(cfg.warmup_epochs * self.steps_per_epoch))
        self.scheduler = build_scheduler(self.optimizer, total, warm, cfg.warmup_start_factor, cfg.min_lr_ratio)
        self.ema = ModelEMA(self.raw_model, cfg.ema.decay) if cfg.ema.enabled else None
        self.backbone_params = [p for n, p in self.raw_model.named_parameters() if n not in self.new_param_names]

        # ---------------------------------------------------------- bookkeeping
        self.epoch = 0  # epochs completed
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self.bad_epochs = 0
        self.history: list[dict] = []
        self.stopped_early = False
        self.resumed_from: int | None = None
        self.global_step = 0
        self._mid_epoch: dict | None = None  # position inside the current epoch after a mid-epoch resume

    # ================================================================ public
    @property
    def last_path(self) -> Path:
        return self.out_dir / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.out_dir / "best.pt"

    def run(self) -> TrainResult:
        """Train until ``cfg.epochs`` (or early stop), resuming from ``last.pt`` when allowed."""
        t0 = time.perf_counter()
        self._maybe_resume()
        cfg = self.cfg
        while self.epoch < cfg.epochs and not self.stopped_early:
            e = self.epoch  # 0-based index of the epoch being run
            train_stats = self._train_epoch(e)
            val = self._validate()
            score = {**train_stats, **val}[self.score_name]
            score = broadcast_floats([score if np.isfinite(score) else math.inf], self.info)[0]
            improved = self.best_score is None or score < self.best_score - cfg.early_stopping_min_delta
            if improved:
                self.best_score, self.best_epoch, self.bad_epochs = float(score), e + 1, 0
            else:
                self.bad_epochs += 1
            self.epoch = e + 1
            row = {"epoch": e + 1, **train_stats, **val, "is_best": bool(improved)}
            self.history.append(row)
            if cfg.early_stopping_patience and self.bad_epochs >= cfg.early_stopping_patience:
                self.stopped_early = True
            if improved:
                self._save_best()
            self._save_last()
            self._write_history()
            self._track(row)
            barrier(self.info)
            if self.info.is_main and self.progress:
                log.info(
                    "epoch %d/%d: train loss %.4g, val MRE %.3f mm, SDR@2mm %.1f %%, %.1f s%s",
                    e + 1,
                    cfg.epochs,
                    row["train_loss"],
                    row["val_mre_mm"],
                    row["val_sdr_2mm"],
                    row["epoch_time_s"],
                    " (best)" if improved else "",
                )
        return TrainResult(
            self.out_dir,
            self.epoch,
            self.best_epoch,
            self.best_score,
            self._score_name(),
            self.stopped_early,
            self.resumed_from,
            list(self.history),
            time.perf_counter() - t0,
        )

    # ================================================================ training
    def _lrs(self) -> tuple[float, float]:
        lb = lh = float("nan")
        for g in self.optimizer.param_groups:
            if g["name"] == "backbone":
                lb = g["lr"]
            else:
                lh = g["lr"]
        return lb, lh

    def _train_epoch(self, epoch: int) -> dict:
        cfg = self.cfg
        self.model.train()
        mid = self._mid_epoch or {}
        self._mid_epoch = None
        start = int(mid.get("micro", 0))
        loader = make_loader(
            self.train_ds,
            self.sampler,
            epoch,
            cfg.num_workers,
            pin_memory=self.on_cuda,
            rank=self.info.rank,
            start=start,
        )
        n_micro = len(self.sampler)
        frozen = epoch < cfg.freeze_backbone_epochs
        bar = _bar(n_micro, f"epoch {epoch + 1}/{cfg.epochs}", self.progress and self.info.is_main)
        if bar is not None and start:
            bar.update(start)
        t0 = time.perf_counter() - float(mid.get("seconds", 0.0))
        loss_sum, n_img = float(mid.get("loss_sum", 0.0)), int(mid.get("n_img", 0))
        self.optimizer.zero_grad(set_to_none=True)
        every = cfg.checkpoint_every_steps
        for i, batch in enumerate(loader, start=start):
            group_start = (i // cfg.accumulate) * cfg.accumulate
            group_len = min(cfg.accumulate, n_micro - group_start)
            last_micro = (i - group_start) == group_len - 1
            sync = contextlib.nullcontext()
            if self.info.distributed and not last_micro:
                sync = self.model.no_sync()
            img = batch["image"].to(self.device, non_blocking=True)
            if self.encode_on_device:
                target, weights = self.codec.encode_torch(batch["keypoints"].to(self.device, non_blocking=True))
            else:
                target = batch["heatmaps"].to(self.device, non_blocking=True)
                weights = batch["weights"].to(self.device, non_blocking=True)  # (B, K)
            with sync:
                x = normalise(img, self.variant.normalisation).contiguous(memory_format=self.memory_format)
                ctx = (
                    torch.autocast(self.device.type, dtype=self.amp_dtype)
                    if self.amp_dtype
                    else contextlib.nullcontext()
                )
                with ctx:
                    out = self.model(x)
                loss = self.loss_fn(out.float(), target, weights)
                lv = float(loss.detach())
                if not math.isfinite(all_min(lv if math.isfinite(lv) else -math.inf, self.info)):
                    raise NonFiniteLossError(
                        f"non-finite training loss ({lv}) at epoch {epoch + 1}, batch {i + 1}; stopped. "
                        f"Last good checkpoint: {self.last_path} (epoch {self.epoch})"
                        + ("" if self.last_path.exists() else " [none written yet]")
                        + "; lower train.lr, use mixed_precision bf16/none, or check the data"
                    )
                scaled = loss / group_len
                if self.scaler is not None:
                    self.scaler.scale(scaled).backward()
                else:
                    scaled.backward()
            loss_sum += lv * img.shape[0]
            n_img += img.shape[0]
            if last_micro:
                self._optimizer_step(frozen)
                step_in_epoch = (i // cfg.accumulate) + 1
                if every and step_in_epoch % every == 0 and i + 1 < n_micro:
                    self._save_last(
                        mid_epoch={
                            "micro": i + 1,
                            "loss_sum": loss_sum,
                            "n_img": n_img,
                            "seconds": time.perf_counter() - t0,
                        }
                    )
            if bar is not None:
                lb, lh = self._lrs()
                bar.set_postfix(loss=f"{lv:.4g}", lr=f"{lb if math.isfinite(lb) else lh:.2e}")
                bar.update(1)
        if bar is not None:
            bar.close()
        dt = time.perf_counter() - t0
        loss_sum, n_img = all_sum([loss_sum, float(n_img)], self.info)  # mean over every rank's images
        lb, lh = self._lrs()
        return {
            "train_loss": loss_sum / max(n_img, 1.0),
            "lr_backbone": lb,
            "lr_head": lh,
            "epoch_time_s": dt,
            "images_per_s": n_img / dt if dt > 0 else float("nan"),
        }

    def _optimizer_step(self, frozen: bool) -> None:
        cfg = self.cfg
        if frozen:
            for p in self.backbone_params:
                p.grad = None
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if cfg.grad_clip:
            params = [p for p in self.raw_model.parameters() if p.grad is not None]
            if params:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.global_step += 1
        if self.ema is not None:
            self.ema.update(self.raw_model)

    # ================================================================ validation
    def eval_model(self) -> nn.Module:
        """The weights that are validated and saved as ``best.pt`` (EMA copy when EMA is on)."""
        return self.ema.model_copy(self.raw_model) if self.ema is not None else self.raw_model

    def _validate(self) -> dict:
        if len(self.val_rows) == 0 or not self.info.is_main:
            return validation_figures(None, None, None)

        v = self.variant
        predictor = Predictor(
            self.eval_model(),
            codec=self.codec,
            normalisation=v.normalisation,
            device=self.device,
            n_landmarks=self.K,
            autocast_dtype=self.amp_dtype,
        )
        targets = v.landmarks
        loss_sum, n = 0.0, 0

        def loss_hook(rows: Sequence[int], out: torch.Tensor) -> None:
            nonlocal loss_sum, n
            hm, w = zip(*(self.codec.encode(np.asarray(targets[i], dtype=np.float64)) for i in rows), strict=True)
            t = torch.as_tensor(np.stack(hm), device=out.device)
            wt = torch.as_tensor(np.stack(w), device=out.device)
            loss_sum += float(self.loss_fn(out, t, wt)) * len(rows)
            n += len(rows)

        pred = predict_variant(
            predictor,
            v,
            self.val_rows,
            on_heatmaps=loss_hook,
            batch_size=self.cfg.val_batch_size or self.cfg.batch_size,
        )
        self.raw_model.train()
        rows = self.val_rows
        out = validation_figures(
            pred.coords,
            np.asarray(v.landmarks_original, dtype=np.float64)[rows],
            np.asarray(v.spacing, dtype=np.float64)[rows],
            pred.degenerate,
        )
        out["val_loss"] = loss_sum / n if n else float("nan")
        return out

    def _score_name(self) -> str:
        return self.score_name

    # ================================================================ checkpoints
    def _save(self, path: Path, model: nn.Module, extra: dict | None) -> None:
        save = self.save_fn
        if save is None:
            save = save_checkpoint
            meta = ModelMeta.from_dict(self.meta)
        else:
            meta = dict(self.meta)
        save(path, model, meta, extra)

    def _training_state(self, mid_epoch: dict | None = None) -> dict:
        return training_state(self, mid_epoch)  # collective in DDP: every rank

    def _save_last(self, mid_epoch: dict | None = None) -> None:
        state = self._training_state(mid_epoch)  # collective in DDP: every rank
        if self.info.is_main:
            self._save(self.last_path, self.raw_model, {"training": state})

    def _save_best(self) -> None:
        if self.info.is_main:
            row = self.history[-1]
            extra = {
                "selection": {
                    "epoch": self.epoch,
                    "score_name": self._score_name(),
                    "score": self.best_score,
                    "metrics": row,
                }
            }
            self._save(self.best_path, self.eval_model(), extra)

    def _maybe_resume(self) -> None:
        loaded = read_training_state(self.last_path, self.cfg, self.info.world_size)
        if loaded is not None:
            restore_training_state(self, *loaded)
            if self.info.is_main:
                where = f", batch {self._mid_epoch['micro']} of epoch {self.epoch + 1}" if self._mid_epoch else ""
                log.info("resumed from %s after epoch %d%s", self.last_path, self.epoch, where)

    # ================================================================ logs
    def _write_history(self) -> None:
        if not self.info.is_main:
            return
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=HISTORY_COLUMNS, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        for r in self.history:
            w.writerow({k: _fmt(r.get(k)) for k in HISTORY_COLUMNS})
        with atomic_path(self.out_dir / "history.csv") as tmp:
            tmp.write_text(buf.getvalue())

    def _track(self, row: dict) -> None:
        if self.tracker is None or not self.info.is_main:
            return
        try:
            self.tracker.log_metrics(
                {
                    k: float(v)
                    for k, v in row.items()
                    if isinstance(v, (int, float)) and k != "epoch" and np.isfinite(v)
                },
                step=int(row["epoch"]),
            )
        except Exception as e:  # noqa: BLE001 - tracking is never required
            log.warning("tracking failed (training continues): %s", e)


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return "" if not np.isfinite(v) else f"{v:.6g}"
    if isinstance(v, bool):
        return int(v)
    return "" if v is None else v


def _bar(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, disable=None)


def _device_for(cfg: TrainConfig) -> torch.device:
    return resolve_device(cfg.device, int(os.environ.get("LOCAL_RANK", "0")), key="train.device")
