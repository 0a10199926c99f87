"""cephalo.train.memory: saved-activation counts by hand, the peak model, and the one-line refusal."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cephalo.errors import ConfigError
from cephalo.train.memory import MARGIN, MemoryEstimate, check_batch_fits, estimate_training_memory


def test_saved_activations_counted_by_hand():
    """Conv (no bias) saves its input, ReLU its output; the float32 heatmaps and their gradient count too.

    Per image at 8x8: input 3x64x4 B = 768, ReLU output 4x64x4 = 1024, heatmaps + gradient 2x4x64x4 = 2048.
    State: 108 weights x 4 B x 4 (weights, gradients, two AdamW moments) = 1728.
    """
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.ReLU())
    est = estimate_training_memory(model, (8, 8))
    assert est.per_image_bytes == 768 + 1024 + 2048
    assert est.fixed_bytes == 0
    assert est.state_bytes == 108 * 4 * 4
    assert est.dtype == "float32" and est.input_size == (8, 8)
    assert est.peak_bytes(3) == int(MARGIN * (1728 + 3 * 3840))


def test_batchnorm_statistics_are_left_as_they_were():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    estimate_training_memory(model, (16, 8))
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not model.training


def test_autocast_bf16_halves_the_saved_activations_on_cpu():
    """The GPU path's dtype, exercised on CPU: bfloat16 activations are half the float32 bytes (the
    float32 heatmaps and gradient, 2x4x64x4 B per image, excepted)."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.ReLU(), nn.Conv2d(4, 4, 1, bias=False))
    f32 = estimate_training_memory(model, (8, 8))
    b16 = estimate_training_memory(model, (8, 8), amp_dtype=torch.bfloat16)
    heat = 2 * 4 * 64 * 4
    assert b16.dtype == "bfloat16"
    assert b16.per_image_bytes - heat == pytest.approx((f32.per_image_bytes - heat) / 2, rel=0.01)
    assert b16.fixed_bytes > 0  # the weights cast to bfloat16 once per step, whatever the batch


def test_a_batch_that_cannot_fit_is_refused_in_one_line_naming_the_key():
    est = MemoryEstimate(
        state_bytes=4 * 2**30,
        fixed_bytes=2**30,
        per_image_bytes=3 * 2**30,
        input_size=(768, 768),
        dtype="bfloat16",
        margin=1.25,
    )
    available = 40 * 2**30  # 40 / 1.25 = 32 GiB: (32 - 5) / 3 -> 9 images
    assert est.largest_batch(available) == 9
    check_batch_fits(est, 9, available, "GPU X")
    with pytest.raises(ConfigError) as ei:
        check_batch_fits(est, 16, available, "GPU X")
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith("train.batch_size=16 needs about 66.2 GiB on GPU X (40.0 GiB free)")
    assert "lower train.batch_size (9 fits)" in msg and "768x768" in msg and "bfloat16" in msg
    with pytest.raises(ConfigError, match="not even 1 fits"):
        check_batch_fits(est, 1, 6 * 2**30, "GPU X")
