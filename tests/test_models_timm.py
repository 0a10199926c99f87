"""cephalo.models timm backbones: stride-4 heatmaps, explicit pretrained weights."""

from __future__ import annotations

import pytest
import torch

from cephalo.errors import CheckpointError
from cephalo.models import create_model

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_hrnet_w18_small_forward_backward():
    torch.manual_seed(0)
    model = create_model("timm:hrnet_w18_small", 29, pretrained=False).train()
    assert model.stride == 4 and model.feature_reduction == 4
    x = torch.randn(2, 3, 64, 96)
    y = model(x)
    assert y.shape == (2, 29, 16, 24)
    assert torch.isfinite(y).all()
    (y - 1).square().mean().backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert grads["head.final.weight"].abs().sum() > 0
    assert grads["head.conv.weight"].abs().sum() > 0
    first = next(n for n in grads if n.startswith("backbone."))
    assert grads[first] is not None and grads[first].abs().sum() > 0, first


def test_coarse_backbone_is_upsampled_to_stride_4():
    model = create_model("timm:vit_tiny_patch16_224", 5, pretrained=False, timm_kwargs={"img_size": 64}).eval()
    assert model.feature_reduction == 16
    with torch.no_grad():
        y = model(torch.randn(1, 3, 64, 64))
    assert y.shape == (1, 5, 16, 16) and torch.isfinite(y).all()


def test_pretrained_must_be_explicit():
    with pytest.raises(ValueError, match="pretrained"):
        create_model("timm:hrnet_w18_small", 19)


def test_pretrained_offline_without_cache_is_a_checkpoint_error(tmp_path, monkeypatch):
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    with pytest.raises(CheckpointError, match="hrnet_w18_small.*pretrained: false"):
        create_model("timm:hrnet_w18_small", 19, pretrained=True)


def test_unknown_names():
    with pytest.raises(ValueError, match="unknown timm model"):
        create_model("timm:no_such_net_xyz", 19, pretrained=False)
    with pytest.raises(ValueError, match="valid"):
        create_model("unet", 19)
