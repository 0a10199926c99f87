"""cephalo.models.hrnet: key-compatibility with the public ISBI HRNet-W32 and its numerical reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cephalo.models import HRNet, create_model
from cephalo.public_hrnet.reference import read_keys_json, reference_input, reference_state_dict

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def keys(hrnet_spec):
    return read_keys_json(hrnet_spec / "keys.json")


@pytest.fixture(scope="module")
def reference_model(keys):
    """HRNet-W32/19 filled with the spec's deterministic recipe, eval mode."""
    model = HRNet(19, width=32)
    model.load_state_dict(reference_state_dict(keys), strict=True)
    return model.eval()


def test_state_dict_matches_public_keys_order_and_shapes(keys):
    sd = create_model("hrnet_w32", 19).state_dict()
    assert len(sd) == len(keys) == 1832
    assert list(sd) == [k for k, _, _ in keys]  # same order, too
    for k, shape, dtype in keys:
        assert tuple(sd[k].shape) == shape, k
        assert sd[k].dtype == dtype, k
    n_params = sum(
        v.numel() for k, v in sd.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    )
    assert n_params == 29_306_163


def test_numerical_reference_within_1e4(hrnet_spec, reference_model):
    with torch.no_grad():
        out = reference_model(reference_input(256)).numpy()
    expected = np.load(hrnet_spec / "reference_output_256.npz")["output"]
    assert out.shape == expected.shape == (1, 19, 64, 64)
    assert np.abs(out - expected).max() < 1e-4


def test_nearest_fuse_upsampling_would_not_match(hrnet_spec, reference_model, monkeypatch):
    """The reference discriminates: nearest-neighbour fusion (the usual pose-HRNet) is far off."""
    import cephalo.models.hrnet as h

    orig = torch.nn.functional.interpolate

    def nearest(x, size=None, mode="nearest", align_corners=None, **kw):
        return orig(x, size=size, mode="nearest")

    monkeypatch.setattr(h.F, "interpolate", nearest)
    with torch.no_grad():
        out = reference_model(reference_input(256)).numpy()
    expected = np.load(hrnet_spec / "reference_output_256.npz")["output"]
    assert np.abs(out - expected).max() > 0.05


def test_forward_backward_w32_small_input():
    torch.manual_seed(0)
    model = create_model("hrnet_w32", 19).train()
    x = torch.randn(2, 3, 64, 64)
    y = model(x)
    assert y.shape == (2, 19, 16, 16) and model.stride == 4
    assert torch.isfinite(y).all()
    y.square().mean().backward()
    params = dict(model.named_parameters())
    no_grad = {n for n, p in params.items() if p.grad is None}
    # only the public model's dead weight: fusion into the low-res branches of the last
    # stage-4 module, whose outputs the head never reads
    dead = {
        n
        for n in params
        if n.startswith(("stage4.2.fuse_layers.1.", "stage4.2.fuse_layers.2.", "stage4.2.fuse_layers.3."))
    }
    assert no_grad == dead and len(dead) > 0
    params = {n: p for n, p in params.items() if n not in dead}
    zero = [n for n, p in params.items() if float(p.grad.abs().sum()) == 0.0]
    # every stage, the stem and the deepest branch receive gradient
    assert len(zero) < 0.02 * len(params), zero[:5]
    for name in ("conv1.weight", "stage4.2.branches.3.0.conv1.weight", "transition3.3.0.0.weight", "final_layer.bias"):
        assert float(params[name].grad.abs().sum()) > 0, name


@pytest.mark.parametrize("name,width,k", [("hrnet_w18", 18, 29), ("hrnet_w48", 48, 3)])
def test_other_widths(name, width, k):
    model = create_model(name, k, num_modules=(1, 1, 1), num_blocks=1).eval()
    assert model.final_layer.weight.shape == (k, width, 1, 1)
    assert model.stage4[0].branches[3][0].conv1.weight.shape[0] == 8 * width
    with torch.no_grad():
        y = model(torch.randn(1, 3, 96, 64))
    assert y.shape == (1, k, 24, 16) and torch.isfinite(y).all()


def test_registry_errors():
    with pytest.raises(ValueError, match="valid: .*hrnet_w32"):
        create_model("hrnet_w64", 19)
    with pytest.raises(ValueError, match="pretrained"):
        create_model("hrnet_w32", 19, pretrained=True)
    with pytest.raises(ValueError, match="expects input"):
        create_model("hrnet_w18", 2, num_modules=(1, 1, 1), num_blocks=1)(torch.zeros(1, 1, 32, 32))
