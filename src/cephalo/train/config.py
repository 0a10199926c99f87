"""Training configuration: the ``train:`` params section as a typed, validated dataclass.

The library never reads ``params.yaml``; ``cephalo train`` reads the section and
calls :meth:`TrainConfig.from_dict`. Unknown keys and bad values raise
:class:`cephalo.errors.ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..errors import ConfigError

__all__ = ["TrainConfig", "InitConfig", "EMAConfig", "PRECISIONS", "INIT_SOURCES"]

#: ``train.mixed_precision`` values. ``none``/``fp32``: float32 everywhere; ``bf16``:
#: bfloat16 autocast (CUDA); ``fp16``: float16 autocast + GradScaler (CUDA). On CPU every
#: value trains in float32 (autocast is a CUDA feature here).
PRECISIONS = ("none", "fp32", "auto", "bf16", "fp16")
#: ``train.init.source`` values (``auto``: ``checkpoint`` when a path is given, else
#: ``imagenet`` when ``model.pretrained`` is true, else ``scratch``).
INIT_SOURCES = ("auto", "checkpoint", "imagenet", "scratch")


@dataclass
class InitConfig:
    """Where the starting weights come from.

    Attributes:
        source: ``auto`` (see :data:`INIT_SOURCES`), ``checkpoint`` (a cephalo checkpoint or the public HF ``best_model.pth``;
            the head is transferred by landmark name), ``imagenet`` (timm pretrained
            backbone, new head) or ``scratch`` (default init).
        path: checkpoint file for ``source == "checkpoint"``.
        min_backbone_fraction: passed to ``cephalo.models.init_from_checkpoint``; fewer
            loaded backbone tensors than this fraction is a ``CheckpointError``.
        new_channel_init: ``mean`` | ``default``: landmark channels the checkpoint lacks
            (``cephalo.models.transfer_head``).
    """

    source: str = "auto"
    path: str | None = None
    min_backbone_fraction: float = 0.95
    new_channel_init: str = "mean"

    def resolved(self, model_pretrained: bool = False) -> "InitConfig":
        """``auto`` replaced by the concrete source."""
        if self.source != "auto":
            return self
        src = "checkpoint" if self.path else ("imagenet" if model_pretrained else "scratch")
        return dataclasses.replace(self, source=src)


@dataclass
class EMAConfig:
    """Exponential moving average of the weights (Polyak averaging; warm-up of the
    decay ``min(decay, (1 + n) / (10 + n))`` as in timm's ``ModelEmaV2``/YOLOv5)."""

    enabled: bool = False
    decay: float = 0.999


@dataclass
class TrainConfig:
    """All knobs of one training run (``train:`` params section).

    Other keys: ``freeze_backbone_epochs`` (the first N epochs update only the new weights;
    BatchNorm running statistics still adapt), ``grad_clip`` (max global L2 norm),
    ``accumulate`` (micro-steps per optimizer step), ``ema`` (:class:`EMAConfig`; validated
    and ``best.pt`` weights are the EMA's), ``mixed_precision`` (:data:`PRECISIONS`; loss and
    decoding always float32), ``early_stopping_patience`` (epochs without a better validation
    MRE), ``resume`` (``auto``: continue from ``OUT/last.pt`` if present; ``never``; ``must``),
    ``encode_on_device`` (heatmap targets on the GPU), ``augment`` (``cephalo.augment``
    params; ``None`` = no augmentation), ``max_steps_per_epoch`` (smoke runs),
    ``checkpoint_every_steps`` (also write ``last.pt`` every N optimizer steps inside an epoch,
    so a kill loses at most N steps; the resumed run is still bitwise the uninterrupted one).

    Validation split: ``val_split: auto`` takes the split named ``valid`` or ``val`` when the
    variant has one, else holds out ``val_fraction`` of ``train_split`` (a fixed, seeded choice by
    image id; e.g. ISBI 2015 has only train/test1/test2 - its test sets are never used to pick
    checkpoints). A split name uses that split; ``null`` disables validation.

    Batch semantics: ``batch_size`` is the micro-batch **per process/device**; one
    optimizer step sees ``batch_size * world_size * accumulate`` images.
    Learning rates: ``lr`` for parameters initialised from pretrained weights
    ("backbone"), ``head_lr`` (default ``lr``) for newly initialised parameters (the
    heatmap head channels that no checkpoint provided). Schedule: linear warm-up over
    ``warmup_epochs`` from ``warmup_start_factor * lr`` then cosine decay to
    ``min_lr_ratio * lr``, stepped per optimizer step (Loshchilov & Hutter, SGDR, 2017;
    Goyal et al., 2017 warm-up).
    """

    seed: int = 0
    device: str = "auto"
    epochs: int = 10
    batch_size: int = 4
    accumulate: int = 1
    lr: float = 1e-4
    head_lr: float | None = None
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_epochs: float = 0.0
    warmup_start_factor: float = 0.01
    min_lr_ratio: float = 0.01
    freeze_backbone_epochs: int = 0
    grad_clip: float | None = 1.0
    mixed_precision: str = "none"
    loss: str = "adaptive_wing"
    loss_kwargs: dict = field(default_factory=dict)
    init: InitConfig = field(default_factory=InitConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    train_split: str = "train"
    val_split: str | None = "auto"
    val_fraction: float = 0.1
    early_stopping_patience: int | None = None
    early_stopping_min_delta: float = 0.0
    num_workers: int = 2
    drop_last: bool = True
    deterministic: bool = True
    resume: str = "auto"
    sync_bn: bool = False
    val_batch_size: int | None = None
    max_steps_per_epoch: int | None = None
    checkpoint_every_steps: int | None = None
    encode_on_device: str | bool = "auto"
    tracking: bool = False
    augment: dict | None = None

    # ------------------------------------------------------------------ build
    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "TrainConfig":
        """Build from the ``train:`` params section (nested ``init``/``ema`` dicts).

        Raises:
            ConfigError: unknown key, wrong type or out-of-range value (names the key).
        """
        d = dict(d or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"params train: unknown key(s) {unknown}; valid keys: {sorted(names)}")
        kw: dict[str, Any] = {}
        for k, v in d.items():
            if k == "init":
                if isinstance(v, str):
                    v = {"source": v}
                kw[k] = _sub(InitConfig, v, "train.init")
            elif k == "ema":
                if isinstance(v, bool):
                    v = {"enabled": v}
                kw[k] = _sub(EMAConfig, v, "train.ema")
            elif k == "betas":
                kw[k] = tuple(float(b) for b in v)
            elif k == "loss_kwargs":
                kw[k] = dict(v or {})
            else:
                kw[k] = v
        cfg = cls(**kw)
        cfg.validate()
        return cfg

    def with_overrides(self, **over: Any) -> "TrainConfig":
        """A copy with the non-``None`` entries of ``over`` replaced, re-validated."""
        d = self.to_dict()
        for k, v in over.items():
            if v is None:
                continue
            if k in ("init", "ema") and isinstance(v, Mapping):
                d[k] = {**d[k], **v}
            else:
                d[k] = v
        return TrainConfig.from_dict(d)

    def validate(self) -> None:
        """Raise :class:`ConfigError` on a value out of range."""

        def bad(key: str, msg: str) -> None:
            raise ConfigError(f"params train.{key}: {msg}")

        for key in ("epochs", "batch_size", "accumulate"):
            v = getattr(self, key)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                bad(key, f"must be an integer >= 1, got {v!r}")
        for key in ("lr", "weight_decay", "min_lr_ratio", "warmup_epochs", "warmup_start_factor"):
            v = getattr(self, key)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
                bad(key, f"must be a number >= 0, got {v!r}")
        if self.lr <= 0:
            bad("lr", f"must be > 0, got {self.lr!r}")
        if self.head_lr is not None and (not isinstance(self.head_lr, (int, float)) or self.head_lr <= 0):
            bad("head_lr", f"must be > 0 or null, got {self.head_lr!r}")
        if self.mixed_precision not in PRECISIONS:
            bad("mixed_precision", f"must be one of {list(PRECISIONS)}, got {self.mixed_precision!r}")
        if self.init.source not in INIT_SOURCES:
            bad("init.source", f"must be one of {list(INIT_SOURCES)}, got {self.init.source!r}")
        if self.init.source == "checkpoint" and not self.init.path:
            bad("init.path", "init.source is 'checkpoint' but no path is given (set it or pass --init)")
        if not (0.0 <= self.ema.decay < 1.0):
            bad("ema.decay", f"must be in [0, 1), got {self.ema.decay!r}")
        if not (0.0 <= float(self.val_fraction) < 1.0):
            bad("val_fraction", f"must be in [0, 1), got {self.val_fraction!r}")
        if self.encode_on_device not in ("auto", True, False):
            bad("encode_on_device", f"must be auto, true or false, got {self.encode_on_device!r}")
        if self.resume not in ("auto", "never", "must"):
            bad("resume", f"must be 'auto', 'never' or 'must', got {self.resume!r}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            bad("grad_clip", f"must be > 0 or null, got {self.grad_clip!r}")
        if not isinstance(self.num_workers, int) or self.num_workers < 0:
            bad("num_workers", f"must be an integer >= 0, got {self.num_workers!r}")
        if self.checkpoint_every_steps is not None and (
                not isinstance(self.checkpoint_every_steps, int) or self.checkpoint_every_steps < 1):
            bad("checkpoint_every_steps", f"must be an integer >= 1 or null, got {self.checkpoint_every_steps!r}")
        if self.freeze_backbone_epochs < 0:
            bad("freeze_backbone_epochs", "must be >= 0")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            bad("early_stopping_patience", "must be >= 1 or null")
        if not isinstance(self.device, str) or not (
            self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")
        ):
            bad("device", f"must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")

    # ------------------------------------------------------------------ views
    @property
    def effective_head_lr(self) -> float:
        return float(self.head_lr if self.head_lr is not None else self.lr)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    def fingerprint(self) -> str:
        """SHA-256 of the settings that change the optimisation trajectory.

        Excludes settings that do not change the weights (workers, device string,
        tracking, early stopping, resume policy), so a resumed run may change them.
        """
        d = self.to_dict()
        for k in ("num_workers", "tracking", "resume", "early_stopping_patience",
                  "early_stopping_min_delta", "device", "val_batch_size", "checkpoint_every_steps"):
            d.pop(k, None)
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()


def _sub(cls: type, v: Any, key: str) -> Any:
    if not isinstance(v, Mapping):
        raise ConfigError(f"params {key}: must be a mapping, got {v!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(v) - names)
    if unknown:
        raise ConfigError(f"params {key}: unknown key(s) {unknown}; valid keys: {sorted(names)}")
    return cls(**dict(v))
