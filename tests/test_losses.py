"""Heatmap losses: hand-computed values, continuity, weighting, gradients, dtypes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cephalo.losses import (
    LOSSES,
    AdaptiveWingLoss,
    MSEHeatmapLoss,
    adaptive_wing_elementwise,
    create_loss,
)

# Adaptive Wing (alpha 2.1, omega 14, epsilon 1, theta 0.5), values worked out by hand:
#   non-linear regime, d = |y - y_hat| < 0.5:  14 * ln(1 + d ** (2.1 - y))
#     y=0,   y_hat=0.3: 0.3**2.1 = 0.079787 -> 14 * ln(1.079787) = 1.074747
#     y=0.5, y_hat=0.2: 0.3**1.6 = 0.145586 -> 14 * ln(1.145586) = 1.903953
#     y=1,   y_hat=0.8: 0.2**1.1 = 0.170134 -> 14 * ln(1.170134) = 2.201259
#   linear regime, d >= 0.5: A*d - C, p = 2.1 - y,
#     A = 14 * p * 0.5**(p-1) / (1 + 0.5**p),  C = 0.5*A - 14 * ln(1 + 0.5**p)
#     y=1 (p=1.1): 0.5**0.1 = 0.933033, 0.5**1.1 = 0.466516 -> A = 9.797850, C = -0.461533
#                  y_hat=0.2 (d=0.8): 0.8*A - C = 8.299813
#     y=0 (p=2.1): 0.5**1.1 = 0.466516, 0.5**2.1 = 0.233258 -> A = 11.121422, C = 2.625476
#                  y_hat=0.9 (d=0.9): 0.9*A - C = 7.383804
HAND = [
    (0.0, 0.3, 1.074747),
    (0.5, 0.2, 1.903953),
    (1.0, 0.8, 2.201259),
    (1.0, 0.2, 8.299813),
    (0.0, 0.9, 7.383804),
    (0.0, 0.0, 0.0),
    (1.0, 1.0, 0.0),
]


@pytest.mark.parametrize("y, y_hat, expected", HAND)
def test_adaptive_wing_hand_values(y, y_hat, expected):
    out = adaptive_wing_elementwise(torch.tensor([y_hat]), torch.tensor([y]))
    assert out.dtype == torch.float32
    assert out.item() == pytest.approx(expected, abs=2e-5)


@pytest.mark.parametrize("y", [0.0, 0.1, 0.37, 0.5, 0.9, 1.0])
def test_adaptive_wing_continuous_value_and_slope_at_theta(y):
    theta, h = 0.5, 1e-4
    y_hat = torch.tensor([y - theta + h, y - theta - h, y - theta], dtype=torch.float64, requires_grad=True)
    # the loss computes in float32 whatever the input dtype; h is large enough for float32
    loss = adaptive_wing_elementwise(y_hat, torch.full((3,), y, dtype=torch.float64))
    below, above, at = loss.tolist()  # d = theta - h (non-linear), theta + h (linear), theta (linear)
    assert abs(below - above) < 5e-3  # |slope| ~ 11 -> jump over 2h is ~2e-3; no step at theta
    assert at == pytest.approx(0.5 * (below + above), abs=5e-3)
    # the slopes of the two branches match at theta (C1 continuity, the reason for A and C)
    loss.sum().backward()
    g_below, g_above, _ = y_hat.grad.tolist()
    assert g_below == pytest.approx(g_above, rel=2e-3)


def test_adaptive_wing_zero_gradient_at_perfect_prediction():
    target = torch.tensor([0.0, 0.3, 1.0])
    pred = target.clone().requires_grad_(True)
    adaptive_wing_elementwise(pred, target).sum().backward()
    assert torch.all(pred.grad == 0)


def test_adaptive_wing_weight_map_hand_computed():
    # 1x1x1x5 target [0, 0, 1, 0, 0]; 3x3 dilation of (target > 0.2) covers columns 1..3:
    # weight map [1, 11, 11, 11, 1]. pred = 0 everywhere: only the peak pixel has a loss,
    # linear regime y=1, d=1: A - C = 9.797850 + 0.461533 = 10.259383; loss = 11 * 10.259383 / 5
    target = torch.tensor([[[[0.0, 0.0, 1.0, 0.0, 0.0]]]])
    loss_fn = AdaptiveWingLoss()
    assert loss_fn.weight_map(target).flatten().tolist() == [1.0, 11.0, 11.0, 11.0, 1.0]
    loss = loss_fn(torch.zeros_like(target), target)
    assert loss.item() == pytest.approx(11 * 10.259383 / 5, abs=1e-4)


def test_mse_hand_computed_and_landmark_weights():
    pred = torch.tensor([[[[1.0, 0.0]], [[0.5, 0.5]]]])  # (1, 2, 1, 2)
    target = torch.tensor([[[[0.0, 0.0]], [[0.0, 1.0]]]])
    # squared errors: channel 0: [1, 0]; channel 1: [0.25, 0.25]
    mse = MSEHeatmapLoss()
    assert mse(pred, target).item() == pytest.approx((1 + 0 + 0.25 + 0.25) / 4)
    # weight 0 on channel 0: mean over channel 1's pixels only
    assert mse(pred, target, torch.tensor([[0.0, 1.0]])).item() == pytest.approx(0.25)
    # (K,) weights broadcast over the batch; fractional weights: sum(w*l) / (sum(w) * h * w)
    assert mse(pred, target, torch.tensor([1.0, 3.0])).item() == pytest.approx((1.0 + 3 * 0.5) / (4 * 2))
    # all-zero weights: 0, not NaN
    assert mse(pred, target, torch.zeros(1, 2)).item() == 0.0


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_weight_zero_gives_zero_gradient_on_that_channel(name):
    g = torch.Generator().manual_seed(0)
    target = torch.rand(2, 3, 8, 8, generator=g)
    pred = torch.rand(2, 3, 8, 8, generator=g).requires_grad_(True)
    weights = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    loss = create_loss(name)(pred, target, weights)
    loss.backward()
    assert torch.all(pred.grad[0, 1] == 0) and torch.all(pred.grad[1, 2] == 0)
    assert pred.grad[0, 0].abs().sum() > 0 and pred.grad[1, 1].abs().sum() > 0


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_weight_zero_channel_with_nan_prediction_does_not_poison_the_loss(name):
    target = torch.zeros(1, 2, 4, 4)
    pred = torch.zeros(1, 2, 4, 4)
    pred[0, 1] = float("nan")
    loss = create_loss(name)(pred, target, torch.tensor([[1.0, 0.0]]))
    assert torch.isfinite(loss)


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs_give_float32_loss(name, dtype):
    g = torch.Generator().manual_seed(1)
    target = torch.rand(2, 2, 6, 6, generator=g).to(dtype)
    pred = torch.rand(2, 2, 6, 6, generator=g).to(dtype)
    fn = create_loss(name)
    loss = fn(pred, target)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(fn(pred.float(), target.float()).item(), rel=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert fn(pred, target).dtype == torch.float32


def test_adaptive_wing_matches_elementwise_reference_on_random_maps():
    rng = np.random.default_rng(3)
    y = rng.random((1, 2, 5, 5))
    y_hat = rng.random((1, 2, 5, 5))
    ref = np.zeros_like(y)
    for idx in np.ndindex(y.shape):
        d, p = abs(y[idx] - y_hat[idx]), 2.1 - y[idx]
        if d < 0.5:
            ref[idx] = 14 * math.log(1 + d**p)
        else:
            a = 14 * p * 0.5 ** (p - 1) / (1 + 0.5**p)
            ref[idx] = a * d - (0.5 * a - 14 * math.log(1 + 0.5**p))
    fg = y > 0.2
    dil = np.zeros_like(fg)
    for b, k, i, j in np.ndindex(fg.shape):
        dil[b, k, i, j] = fg[b, k, max(0, i - 1) : i + 2, max(0, j - 1) : j + 2].any()
    expected = (ref * (10 * dil + 1)).mean()
    got = AdaptiveWingLoss()(torch.tensor(y_hat, dtype=torch.float32), torch.tensor(y, dtype=torch.float32))
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_create_loss_errors():
    with pytest.raises(ValueError, match="adaptive_wing.*mse"):
        create_loss("l1")
    with pytest.raises(ValueError, match="bad arguments"):
        create_loss("mse", sigma=3)
    with pytest.raises(ValueError, match="dilation"):
        create_loss("adaptive_wing", dilation=2)
    with pytest.raises(ValueError, match="shape"):
        create_loss("mse")(torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 3, 4))
    with pytest.raises(ValueError, match="weights"):
        create_loss("mse")(torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 3, 3), torch.ones(3))
    with pytest.raises(ValueError, match=">= 0"):
        create_loss("mse")(torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 3, 3), torch.tensor([1.0, -1.0]))
