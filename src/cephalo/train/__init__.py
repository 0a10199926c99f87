"""The fine-tuning engine: training loop, checkpoints and resume, AMP, DDP, AdaBN.

Public API:

* :class:`TrainConfig` - the ``train:`` params section, validated.
* :func:`train_on_variant` - what ``cephalo train`` runs: build model/codec/loss from a
  preprocessing variant and train (``best.pt``, ``last.pt``, ``history.csv``, ``train.json``);
  :class:`TrainRecording` - what it records about itself (params, command, MLflow run).
* :class:`Trainer` - the loop itself, on ready objects (model, variant, codec, loss).
* :func:`adapt_batchnorm` - AdaBN (Li et al., 2016) on unlabelled target images.
* :func:`make_synthetic_variant` - a learnable synthetic variant directory (tests, benchmarks).
* :class:`NonFiniteLossError` - raised when the loss becomes NaN/inf (a ``CephaloError``).

Heavy pieces are imported lazily.
"""

from __future__ import annotations

from typing import Any

from .config import EMAConfig, InitConfig, TrainConfig

__all__ = [
    "TrainConfig",
    "InitConfig",
    "EMAConfig",
    "Trainer",
    "TrainerOptions",
    "TrainResult",
    "NonFiniteLossError",
    "train_on_variant",
    "TrainRecording",
    "adapt_batchnorm",
    "make_synthetic_variant",
]

# lazy: `from cephalo.train import TrainConfig` (the schema's class) must not import torch; the loop,
# the runner and AdaBN do (seconds), so they are imported on first use
_LAZY = {
    "Trainer": "loop",
    "TrainerOptions": "loop",
    "TrainResult": "loop",
    "NonFiniteLossError": "loop",
    "train_on_variant": "runner",
    "TrainRecording": "runner",
    "adapt_batchnorm": "adabn",
    "make_synthetic_variant": "synthetic",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(name)
