"""The training state of ``last.pt``: what it holds, how it is checked and restored (bitwise resume).

:func:`training_state` collects it from a :class:`~cephalo.train.loop.Trainer` (optimizer, scheduler,
GradScaler, EMA, the RNG states of every rank, epoch and step, best score, history, the config and
its fingerprint); :func:`read_training_state` reads it back from ``last.pt`` and refuses a file
written with settings that change the trajectory (``cephalo.config.schema.NON_TRAJECTORY_KEYS`` may
change); :func:`restore_training_state` puts it back into the trainer.

RNG states captured at every checkpoint: python ``random``, numpy's global RNG, torch's CPU RNG and
every CUDA device's RNG. Data order and augmentation are pure functions of (seed, epoch,
sample) (see :mod:`cephalo.train.data`), so they need no saved state; the per-epoch
loader generator's state is recorded anyway for inspection.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as tdist

from ..config.schema import NON_TRAJECTORY_KEYS, TrainConfig
from ..errors import CheckpointError, ConfigError
from ..models.checkpoint import torch_load_checked
from .data import loader_generator

__all__ = [
    "TRAINING_STATE_VERSION",
    "capture_rng",
    "restore_rng",
    "training_state",
    "read_training_state",
    "restore_training_state",
]

log = logging.getLogger("cephalo.train")

TRAINING_STATE_VERSION = 1


def capture_rng() -> dict:
    """A picklable dict of the global RNG states (python, numpy, torch CPU, torch CUDA)."""
    ver, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    # only tensors / builtins, so that torch.load(weights_only=True) reads it back
    st = {
        "python": [ver, list(internal), gauss],
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def restore_rng(st: dict) -> None:
    """Restore what :func:`capture_rng` returned (CUDA states only where devices match)."""
    ver, internal, gauss = st["python"]
    random.setstate((ver, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = st["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.int64).astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.as_tensor(st["torch"], dtype=torch.uint8).cpu())
    if "cuda" in st and torch.cuda.is_available():
        states = st["cuda"]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([torch.as_tensor(s, dtype=torch.uint8).cpu() for s in states])


def training_state(trainer: Any, mid_epoch: dict | None = None) -> dict:
    """The training state of ``trainer`` (a ``Trainer``) for ``last.pt``; ``mid_epoch``: the position
    inside an epoch (None at an epoch boundary). Collective in DDP: every rank must call it."""
    rng = capture_rng()
    if trainer.info.distributed:
        gathered: list = [None] * trainer.info.world_size
        tdist.all_gather_object(gathered, rng)
        rng_all = gathered
    else:
        rng_all = [rng]
    return {
        "version": TRAINING_STATE_VERSION,
        "fingerprint": trainer.cfg.fingerprint(),
        "config": trainer.cfg.to_dict(),
        "epoch": trainer.epoch,
        "global_step": trainer.global_step,
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict(),
        "scaler": trainer.scaler.state_dict() if trainer.scaler is not None else None,
        "ema": trainer.ema.state_dict() if trainer.ema is not None else None,
        "rng": rng_all,
        "mid_epoch": mid_epoch,  # None at an epoch boundary
        "sampler_generator": trainer.sampler.generator().get_state(),
        "loader_generator": loader_generator(trainer.cfg.seed, trainer.epoch, trainer.info.rank).get_state(),
        "best_score": trainer.best_score,
        "best_epoch": trainer.best_epoch,
        "bad_epochs": trainer.bad_epochs,
        "stopped_early": trainer.stopped_early,
        "history": trainer.history,
        "world_size": trainer.info.world_size,
    }


def read_training_state(last_path: Path, cfg: TrainConfig, world_size: int = 1) -> tuple[dict, dict] | None:
    """``(checkpoint, training state)`` of ``last_path`` to resume from, or None (start afresh).

    ``cfg.resume``: ``never`` starts afresh; ``must`` requires the file; otherwise it is used when present.

    Raises:
        CheckpointError: ``resume: must`` without the file; an unreadable file; no training state in it.
        ConfigError: the file was written with settings that change the trajectory (they are named).
    """
    if cfg.resume == "never" or not last_path.exists():
        if cfg.resume == "must":
            raise CheckpointError("resume: must, but there is no checkpoint to resume from", last_path)
        return None
    try:
        ck = torch_load_checked(last_path, "cpu", trusted=False)
    except CheckpointError as e:
        raise CheckpointError(
            f"cannot resume: {str(e).removeprefix(f'{last_path}: ')}; delete it or set train.resume: never", last_path
        ) from None
    st = (ck.get("training") if isinstance(ck, dict) else None) or (ck.get("extra", {}) or {}).get("training")
    if not isinstance(st, dict):
        raise CheckpointError(
            "not a training checkpoint (no training state); delete it or set train.resume: never", last_path
        )
    if st.get("fingerprint") != cfg.fingerprint():
        old = st.get("config", {})
        diff = sorted(
            k
            for k in set(old) | set(cfg.to_dict())
            if old.get(k) != cfg.to_dict().get(k) and k not in NON_TRAJECTORY_KEYS
        )
        raise ConfigError(
            f"{last_path}: written by a run with different settings ({diff}); use a new "
            "output directory, or set train.resume: never to start over"
        )
    if st.get("world_size", 1) != world_size:
        log.warning(
            "resuming a %s-process run with %s processes: same global batch only if batch_size is scaled",
            st.get("world_size"),
            world_size,
        )
    return ck, st


def restore_training_state(trainer: Any, ck: dict, st: dict) -> None:
    """Put a checkpoint's weights and training state (:func:`read_training_state`) back into ``trainer``."""
    trainer.raw_model.load_state_dict(ck["model_state_dict"])
    trainer.optimizer.load_state_dict(st["optimizer"])
    trainer.scheduler.load_state_dict(st["scheduler"])
    if trainer.scaler is not None and st.get("scaler"):
        trainer.scaler.load_state_dict(st["scaler"])
    if trainer.ema is not None and st.get("ema"):
        trainer.ema.load_state_dict(st["ema"])
    trainer.epoch = int(st["epoch"])
    trainer.global_step = int(st.get("global_step", 0))
    trainer.best_score = st.get("best_score")
    trainer.best_epoch = st.get("best_epoch")
    trainer.bad_epochs = int(st.get("bad_epochs", 0))
    trainer.stopped_early = bool(st.get("stopped_early", False))
    trainer.history = list(st.get("history", []))
    rngs = st["rng"]
    restore_rng(rngs[trainer.info.rank] if trainer.info.rank < len(rngs) else rngs[0])
    trainer._mid_epoch = st.get("mid_epoch")
    trainer.resumed_from = trainer.epoch
