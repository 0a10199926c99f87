"""Heatmap losses by name: ``create_loss("adaptive_wing" | "mse", **kw)``.

Every loss is an ``nn.Module`` called as ``loss(pred, target, weights=None)``:

* ``pred``: ``(B, K, h, w)`` predicted heatmaps/logits, any float dtype (float16/bfloat16 from AMP
  included); ``target``: ``(B, K, h, w)`` Gaussian targets in [0, 1] (``codec.encode``);
* ``weights``: per-landmark weights, ``(B, K)`` or ``(K,)`` (broadcast to ``(B, K, 1, 1)``), e.g. the
  codec's 0/1 weights that switch off missing or out-of-frame landmarks; ``None`` = all ones.

The loss is computed in float32 whatever the input dtype (autocast disabled inside) and reduced to a
float32 scalar by the mean over the weighted elements::

    loss = sum(weights * elementwise) / (sum(weights) * h * w)

(for 0/1 weights: the mean over the pixels of the landmarks that count). A channel with weight 0
contributes neither value nor gradient; all-zero weights give a loss of 0 (still differentiable).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LOSSES", "AdaptiveWingLoss", "MSEHeatmapLoss", "create_loss", "adaptive_wing_elementwise"]


def _weighted_mean(elementwise: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    b, k, h, w = elementwise.shape
    if weights is None:
        return elementwise.mean()
    wt = torch.as_tensor(weights, device=elementwise.device).to(torch.float32)
    if wt.shape == (k,):
        wt = wt.expand(b, k)
    if wt.shape != (b, k):
        raise ValueError(f"loss weights must be (B, K) = {(b, k)} or (K,), got {tuple(wt.shape)}")
    if not torch.isfinite(wt).all() or (wt < 0).any():
        raise ValueError("loss weights must be finite and >= 0")
    # where() (not a product) so a NaN/inf elementwise value in a weight-0 channel cannot leak in
    masked = torch.where(wt[:, :, None, None] > 0, elementwise * wt[:, :, None, None], torch.zeros_like(elementwise))
    denom = wt.sum() * (h * w)
    return masked.sum() / torch.clamp(denom, min=1.0)


def _check_pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.ndim != 4:
        raise ValueError(f"loss: pred must be (B, K, h, w), got shape {tuple(pred.shape)}")
    if pred.shape != target.shape:
        raise ValueError(f"loss: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")


def adaptive_wing_elementwise(
    pred: torch.Tensor,
    target: torch.Tensor,
    alpha: float = 2.1,
    omega: float = 14.0,
    epsilon: float = 1.0,
    theta: float = 0.5,
) -> torch.Tensor:
    """Adaptive Wing loss per element (Wang, Bo & Fuxin, ICCV 2019, eq. 6), no weight map.

    With ``d = |y - y_hat|`` and ``p = alpha - y`` (``y`` the target):

    * ``d < theta``:  ``omega * ln(1 + (d / epsilon) ** p)``
    * ``d >= theta``: ``A * d - C`` with
      ``A = omega * p * (theta/epsilon) ** (p - 1) / (epsilon * (1 + (theta/epsilon) ** p))`` and
      ``C = theta * A - omega * ln(1 + (theta/epsilon) ** p)``, which makes the loss and its slope
      continuous at ``d = theta``.

    Args:
        pred, target: same-shape float tensors (computed in float32).

    Returns:
        float32 tensor of that shape.
    """
    y = target.float()
    d = (y - pred.float()).abs()
    p = alpha - y
    r = theta / epsilon
    a = omega * p * r ** (p - 1.0) / (epsilon * (1.0 + r**p))
    c = theta * a - omega * torch.log1p(r**p)
    small = d < theta
    # clamp d inside pow so the unused branch never produces inf/NaN gradients
    d_small = torch.where(small, d, torch.zeros_like(d))
    nonlinear = omega * torch.log1p((d_small / epsilon) ** p)
    linear = a * d - c
    return torch.where(small, nonlinear, linear)


class AdaptiveWingLoss(nn.Module):
    """Adaptive Wing loss with its weighted loss map (Wang, Bo & Fuxin, ICCV 2019,
    "Adaptive Wing Loss for Robust Face Alignment via Heatmap Regression", sec. 4.2/4.3).

    ``loss_map = AWing(y, y_hat) * (W * M + 1)`` with ``M = dilate(y > threshold, 3x3)`` (grey
    dilation by a ``dilation x dilation`` square) and ``W = map_weight``; then the weighted mean over
    landmarks (module docstring).

    Args:
        alpha, omega, epsilon, theta: the paper's 2.1, 14, 1, 0.5.
        map_weight: ``W`` = 10.
        threshold: foreground threshold on the target, 0.2.
        dilation: odd square size of the dilation, 3.

    Raises:
        ValueError: non-positive omega/epsilon/theta, ``alpha <= 1`` (the loss needs
            ``alpha - y > 1`` for a zero gradient at ``y == y_hat``), an even dilation.
    """

    def __init__(
        self,
        alpha: float = 2.1,
        omega: float = 14.0,
        epsilon: float = 1.0,
        theta: float = 0.5,
        map_weight: float = 10.0,
        threshold: float = 0.2,
        dilation: int = 3,
    ):
        super().__init__()
        if omega <= 0 or epsilon <= 0 or theta <= 0:
            raise ValueError(f"adaptive_wing: omega, epsilon, theta must be > 0, got {omega}, {epsilon}, {theta}")
        if alpha <= 1:
            raise ValueError(f"adaptive_wing: alpha must be > 1, got {alpha}")
        if dilation < 1 or dilation % 2 == 0:
            raise ValueError(f"adaptive_wing: dilation must be a positive odd size, got {dilation}")
        self.alpha, self.omega, self.epsilon, self.theta = float(alpha), float(omega), float(epsilon), float(theta)
        self.map_weight, self.threshold, self.dilation = float(map_weight), float(threshold), int(dilation)

    def weight_map(self, target: torch.Tensor) -> torch.Tensor:
        """``(B, K, h, w)`` float32 ``W * dilate(target > threshold) + 1``."""
        fg = (target.float() > self.threshold).float()
        if self.dilation > 1:
            fg = F.max_pool2d(fg, kernel_size=self.dilation, stride=1, padding=self.dilation // 2)
        return self.map_weight * fg + 1.0

    def forward(self, pred: torch.Tensor, target: torch.Tensor, weights: Any = None) -> torch.Tensor:
        """Scalar float32 loss (see the module docstring for shapes and the reduction).

        Raises:
            ValueError: shapes differ / not 4-D; weights not (B, K) or (K,), negative or non-finite.
        """
        _check_pair(pred, target)
        with torch.autocast(device_type=pred.device.type, enabled=False):
            elem = adaptive_wing_elementwise(pred, target, self.alpha, self.omega, self.epsilon, self.theta)
            return _weighted_mean(elem * self.weight_map(target), weights)

    def extra_repr(self) -> str:
        return (
            f"alpha={self.alpha}, omega={self.omega}, epsilon={self.epsilon}, theta={self.theta}, "
            f"map_weight={self.map_weight}, threshold={self.threshold}, dilation={self.dilation}"
        )


class MSEHeatmapLoss(nn.Module):
    """Mean squared error between heatmaps (Tompson et al., NeurIPS 2014), per-landmark weighted.

    Args:
        scale: multiply the loss (some recipes scale MSE targets, e.g. by 1000); default 1.
    """

    def __init__(self, scale: float = 1.0):
        super().__init__()
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"mse: scale must be > 0, got {scale}")
        self.scale = float(scale)

    def forward(self, pred: torch.Tensor, target: torch.Tensor, weights: Any = None) -> torch.Tensor:
        """Scalar float32 loss (see the module docstring for shapes and the reduction).

        Raises:
            ValueError: shapes differ / not 4-D; weights not (B, K) or (K,), negative or non-finite.
        """
        _check_pair(pred, target)
        with torch.autocast(device_type=pred.device.type, enabled=False):
            elem = (pred.float() - target.float()) ** 2
            return self.scale * _weighted_mean(elem, weights)


#: loss name -> class
LOSSES: dict[str, type[nn.Module]] = {"adaptive_wing": AdaptiveWingLoss, "mse": MSEHeatmapLoss}


def create_loss(name: str, **kwargs: Any) -> nn.Module:
    """Build a heatmap loss by name.

    Args:
        name: ``"adaptive_wing"`` | ``"mse"``.
        **kwargs: the loss's constructor arguments.

    Raises:
        ValueError: unknown name (the message lists the valid names) or bad arguments.
    """
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; valid: {', '.join(sorted(LOSSES))}")
    try:
        return LOSSES[name](**kwargs)
    except TypeError as e:
        raise ValueError(f"loss {name!r}: bad arguments {sorted(kwargs)}: {e}") from None
