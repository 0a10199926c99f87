"""Optimiser, learning-rate schedule and weight EMA.

* AdamW (Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019) with two
  parameter groups: ``backbone`` (initialised from pretrained weights, ``lr``) and ``head``
  (newly initialised, ``head_lr``). Biases and normalisation parameters get no weight decay.
* Schedule: linear warm-up then cosine decay (Loshchilov & Hutter, "SGDR", ICLR 2017;
  Goyal et al., "Accurate, Large Minibatch SGD", 2017), as a multiplicative factor per
  optimizer step.
* :class:`ModelEMA`: exponential moving average of parameters and buffers in float32 with
  the decay warm-up ``min(decay, (1 + n) / (10 + n))`` (timm ``ModelEmaV2``; YOLOv5).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["build_optimizer", "warmup_cosine", "build_scheduler", "ModelEMA", "split_params"]


def split_params(model: nn.Module, new_param_names: Iterable[str]) -> tuple[list, list]:
    """Split ``model.named_parameters()`` into (backbone, head) lists of ``(name, param)``.

    ``new_param_names``: names of parameters that were *not* initialised from pretrained
    weights (the new head). Every other trainable parameter is backbone.
    """
    new = set(new_param_names)
    backbone, head = [], []
    for name, p in model.named_parameters():
        (head if name in new else backbone).append((name, p))
    return backbone, head


def build_optimizer(
    model: nn.Module, new_param_names: Iterable[str], lr: float, head_lr: float, weight_decay: float, betas=(0.9, 0.999)
) -> torch.optim.AdamW:
    """AdamW with param groups named ``backbone``/``head`` x ``decay``/``no_decay``.

    Each group carries ``name`` and ``base_lr``; 1-D tensors (biases, norms) have no decay.
    Empty groups are left out.
    """
    backbone, head = split_params(model, new_param_names)
    groups = []
    for gname, items, glr in (("backbone", backbone, lr), ("head", head, head_lr)):
        decay = [p for n, p in items if p.ndim > 1]
        no_decay = [p for n, p in items if p.ndim <= 1]
        if decay:
            groups.append({"params": decay, "lr": glr, "base_lr": glr, "weight_decay": weight_decay, "name": gname})
        if no_decay:
            groups.append({"params": no_decay, "lr": glr, "base_lr": glr, "weight_decay": 0.0, "name": gname})
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas))


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, start_factor: float, min_ratio: float) -> float:
    """lr factor at optimizer step ``step`` (0-based).

    Linear from ``start_factor`` to 1 over ``warmup_steps``, then cosine from 1 to
    ``min_ratio`` at ``total_steps``.

    >>> warmup_cosine(0, 100, 0, 0.01, 0.0)
    1.0
    """
    if warmup_steps > 0 and step < warmup_steps:
        return start_factor + (1.0 - start_factor) * step / warmup_steps
    span = max(1, total_steps - warmup_steps)
    t = min(1.0, max(0.0, (step - warmup_steps) / span))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))


def build_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int, start_factor: float, min_ratio: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """``LambdaLR`` applying :func:`warmup_cosine` to every group; step it once per optimizer step."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine(s, total_steps, warmup_steps, start_factor, min_ratio)
    )


class ModelEMA:
    """Float32 exponential moving average of a model's state (parameters and buffers).

    ``update(model)`` after each optimizer step: ``ema = d * ema + (1 - d) * w`` with
    ``d = min(decay, (1 + n) / (10 + n))``; integer buffers (e.g. BatchNorm's
    ``num_batches_tracked``) are copied.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999):
        self.decay = float(decay)
        self.updates = 0
        self.state = {
            k: v.detach().clone().float() if v.is_floating_point() else v.detach().clone()
            for k, v in _unwrap(model).state_dict().items()
        }

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        for k, v in _unwrap(model).state_dict().items():
            e = self.state[k]
            if v.is_floating_point():
                e.mul_(d).add_(v.detach().float(), alpha=1.0 - d)
            else:
                e.copy_(v)

    def copy_to(self, model: nn.Module) -> None:
        """Load the averaged weights into ``model`` (cast to its dtypes)."""
        m = _unwrap(model)
        ref = m.state_dict()
        m.load_state_dict({k: v.to(ref[k].dtype) for k, v in self.state.items()})

    def model_copy(self, model: nn.Module) -> nn.Module:
        """A deep copy of ``model`` holding the averaged weights (for validation/saving)."""
        m = copy.deepcopy(_unwrap(model))
        self.copy_to(m)
        return m

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "state": self.state}

    def load_state_dict(self, d: dict) -> None:
        self.decay = float(d["decay"])
        self.updates = int(d["updates"])
        for k, v in d["state"].items():
            self.state[k].copy_(v)


def _unwrap(model: nn.Module) -> nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    return model.module if isinstance(model, DistributedDataParallel) else model
