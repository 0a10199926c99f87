"""Name-based head transfer: ISBI-19 head -> Aariz-29 head, load report, loud failures."""

from __future__ import annotations

import json

import pytest
import torch

from cephalo.errors import CheckpointError
from cephalo.landmarks import AARIZ29, ISBI19
from cephalo.models import create_model, init_from_checkpoint, transfer_head
from cephalo.public_hrnet.reference import public_training_dict

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_isbi19_to_aariz29_copies_by_name(public_state):
    torch.manual_seed(0)
    model = create_model("hrnet_w32", 29)
    report = transfer_head(model, public_state, ISBI19.names, AARIZ29.names)
    sd = model.state_dict()
    w_src, b_src = public_state["final_layer.weight"], public_state["final_layer.bias"]
    w, b = sd["final_layer.weight"], sd["final_layer.bias"]
    assert w.shape == (29, 32, 1, 1)
    # hand-checked positions: ISBI 1 (sella) is Aariz 11, ISBI 18 (ANS) is Aariz 2, ISBI 19 (Ar) is Aariz 12
    assert torch.equal(w[10], w_src[0]) and torch.equal(b[10], b_src[0])
    assert torch.equal(w[1], w_src[17]) and torch.equal(w[11], w_src[18])
    shared = [n for n in AARIZ29.names if n in ISBI19.names]
    assert len(shared) == 19
    for name in shared:
        j, i = AARIZ29.index(name), ISBI19.index(name)
        assert torch.equal(w[j], w_src[i]), name
        assert torch.equal(b[j], b_src[i]), name
    new = [n for n in AARIZ29.names if n not in ISBI19.names]
    assert sorted(x["name"] for x in report["head"]["new"]) == sorted(new)
    for name in new:  # "mean" init
        j = AARIZ29.index(name)
        assert torch.allclose(w[j], w_src.mean(0)) and torch.allclose(b[j], b_src.mean())
    # backbone fully loaded, bit for bit
    backbone = [k for k in public_state if not k.startswith("final_layer.")]
    assert report["backbone_fraction"] == 1.0
    assert report["counts"]["loaded"] == len(backbone) == 1830
    for k in backbone:
        assert torch.equal(sd[k], public_state[k]), k
    assert {"key": "final_layer.weight", "reason": "partial by name: 19 channels copied, 10 new (mean)"} in report[
        "reinitialised"
    ]
    assert report["skipped"] == [] and report["head"]["dropped"] == []
    json.dumps(report)  # callers save it as JSON
    with torch.no_grad():
        y = model.eval()(torch.randn(1, 3, 64, 64))
    assert y.shape == (1, 29, 16, 16) and torch.isfinite(y).all()


def test_default_init_keeps_fresh_channels_and_reverse_direction_drops(public_state):
    small = lambda k: create_model("hrnet_w32", k)  # noqa: E731
    model = small(29)
    fresh = model.final_layer.weight.detach().clone()
    report = transfer_head(model, public_state, ISBI19.names, AARIZ29.names, new_channel_init="default")
    j = AARIZ29.index("pronasale")
    assert torch.equal(model.final_layer.weight[j], fresh[j])
    assert report["head"]["new"][0]["init"] == "default"
    # 29 -> 19: every ISBI channel has a source; the 10 Aariz-only channels are dropped
    src29 = model.state_dict()
    back = small(19)
    report = transfer_head(back, src29, AARIZ29.names, ISBI19.names)
    assert len(report["head"]["dropped"]) == 10 and report["head"]["new"] == []
    for i, name in enumerate(ISBI19.names):
        assert torch.equal(back.final_layer.weight[i], public_state["final_layer.weight"][i]), name


def test_wrong_prefix_fails_loudly(public_state):
    model = create_model("hrnet_w32", 29)
    before = model.state_dict()["conv1.weight"].clone()
    wrong = {f"backbone.{k}": v for k, v in public_state.items()}
    with pytest.raises(CheckpointError, match=r"0/1830 backbone tensors .*backbone\.conv1\.weight"):
        transfer_head(model, wrong, ISBI19.names, AARIZ29.names)
    assert torch.equal(model.state_dict()["conv1.weight"], before)  # nothing half-loaded
    # module. / model. prefixes are wrappers and are stripped
    ok = {f"module.{k}": v for k, v in public_state.items()}
    assert transfer_head(model, ok, ISBI19.names, AARIZ29.names)["backbone_fraction"] == 1.0


def test_partial_backbone_below_threshold(public_state):
    model = create_model("hrnet_w32", 29)
    partial = {k: v for k, v in public_state.items() if not k.startswith("stage4.")}
    with pytest.raises(CheckpointError, match="need 95%"):
        transfer_head(model, partial, ISBI19.names, AARIZ29.names)
    report = transfer_head(model, partial, ISBI19.names, AARIZ29.names, min_backbone_fraction=0.1)
    assert 0.1 < report["backbone_fraction"] < 0.95
    assert any(r["reason"] == "not in source" for r in report["reinitialised"])


def test_init_from_checkpoint_file_reads_names_from_meta(public_state, tmp_path):
    path = tmp_path / "best_model.pth"
    torch.save(public_training_dict(public_state), path)
    model = create_model("hrnet_w32", 29)
    report = init_from_checkpoint(model, path, None, AARIZ29)
    assert report["source"] == str(path)
    assert report["counts"]["head_channels_copied"] == 19
    assert torch.equal(model.final_layer.bias[AARIZ29.index("menton")], public_state["final_layer.bias"][7])


def test_name_count_mismatch_is_an_error(public_state):
    model = create_model("hrnet_w32", 29)
    with pytest.raises(ValueError, match="18 source names"):
        transfer_head(model, public_state, ISBI19.names[:18], AARIZ29.names)
    with pytest.raises(ValueError, match="destination names"):
        transfer_head(model, public_state, ISBI19.names, ISBI19.names)


_POOL = [f"lm{i}" for i in range(12)]


def _tiny_head_model(k):
    return create_model("hrnet_w18", k, width=4, num_modules=(1, 1, 1), num_blocks=1)


@pytest.mark.parametrize("seed", range(6))
def test_transfer_by_name_property(seed):
    """Random source/destination name lists: every shared name's channel is copied, whatever the order."""
    import random

    rng = random.Random(seed)
    src_names = rng.sample(_POOL, rng.randint(1, 8))
    dst_names = rng.sample(_POOL, rng.randint(1, 8))
    torch.manual_seed(seed)
    src_state = _tiny_head_model(len(src_names)).state_dict()
    model = _tiny_head_model(len(dst_names))
    fresh = model.final_layer.weight.detach().clone()
    report = transfer_head(model, src_state, src_names, dst_names, new_channel_init="default")
    w = model.final_layer.weight
    for j, name in enumerate(dst_names):
        if name in src_names:
            assert torch.equal(w[j], src_state["final_layer.weight"][src_names.index(name)]), name
        else:
            assert torch.equal(w[j], fresh[j]), name
    assert report["counts"]["head_channels_copied"] == len(set(src_names) & set(dst_names))
    assert sorted(report["head"]["dropped"]) == sorted(set(src_names) - set(dst_names))
    assert report["backbone_fraction"] == 1.0
