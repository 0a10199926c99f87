"""cephalo.models.checkpoint: the public best_model.pth format, cephalo checkpoints, errors."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from cephalo.errors import CheckpointError
from cephalo.landmarks import AARIZ29, ISBI19
from cephalo.models import (
    ModelMeta,
    create_model,
    load_checkpoint,
    load_model,
    read_checkpoint,
    save_checkpoint,
)
from cephalo.public_hrnet.checkpoint import load_public_hrnet
from cephalo.public_hrnet.reference import (
    public_training_dict,
    reference_input,
)

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def public_file(public_state, tmp_path_factory):
    """A best_model.pth-style training dict (epoch, model_state_dict, optimizer..., config)."""
    path = tmp_path_factory.mktemp("hf") / "best_model.pth"
    obj = public_training_dict(public_state)
    obj["best_val_mre"] = np.float64(1.83)  # numpy scalars appear in real training dicts
    torch.save(obj, path)
    return path


def _tiny(k=3):
    return create_model("hrnet_w18", k, num_modules=(1, 1, 1), num_blocks=1)


def _tiny_meta(names):
    return ModelMeta(
        arch="hrnet_w18",
        landmark_names=names,
        input_size=(64, 48),
        heatmap_size=(16, 12),
        variant="letterbox64",
        normalisation={"name": "imagenet"},
        codec={
            "name": "gaussian",
            "input_size": [64, 48],
            "heatmap_size": [16, 12],
            "sigma": 2.0,
            "decoder": "dark",
            "convention": "pixel_centre",
        },
        provenance={"git_commit": "abc", "train_image_hashes": ["00ff"]},
    )


def test_public_training_dict_loads_strictly_and_reproduces_reference(public_file, hrnet_spec):
    model, meta = load_model(public_file)
    assert not model.training
    assert meta.arch == "hrnet_w32" and meta.arch_kwargs == {}
    assert meta.landmark_names == ISBI19.names
    assert meta.input_size == (768, 768) and meta.heatmap_size == (192, 192)
    assert meta.codec["decoder"] == "soft_argmax" and meta.codec["convention"] == "hf_corner"
    assert meta.normalisation["name"] == "imagenet"
    assert meta.provenance["epoch"] == 87 and meta.provenance["best_val_mre"] == pytest.approx(1.83)
    assert len(meta.provenance["train_image_ids"]["training"]) == 278
    assert 151 not in meta.provenance["train_image_ids"]["training"]
    json.dumps(meta.to_dict())  # JSON-serialisable
    with torch.no_grad():
        out = model(reference_input(256)).numpy()
    expected = np.load(hrnet_spec / "reference_output_256.npz")["output"]
    assert np.abs(out - expected).max() < 1e-4


def test_public_plain_state_dict_with_module_prefix(tmp_path):
    torch.manual_seed(0)
    state = _tiny(19).state_dict()  # public layout, smaller network (arch kwargs are inferred)
    path = tmp_path / "plain.pth"
    torch.save({f"module.{k}": v for k, v in state.items()}, path)
    ckpt = read_checkpoint(path)
    assert ckpt.kind == "public_state_dict"
    assert list(ckpt.state_dict) == list(state)
    assert ckpt.meta.arch == "hrnet_w18"
    assert ckpt.meta.arch_kwargs == {"num_modules": [1, 1, 1], "num_blocks": 1}
    model, meta = load_public_hrnet(path)
    assert meta.landmark_names == ISBI19.names
    assert torch.equal(model.final_layer.bias, state["final_layer.bias"])
    with pytest.raises(CheckpointError, match="not the public"):
        load_public_hrnet(save_checkpoint(tmp_path / "c.pt", _tiny(3), _tiny_meta(["a", "b", "c"])))


def test_cephalo_round_trip(tmp_path):
    torch.manual_seed(0)
    model = _tiny(3)
    meta = _tiny_meta(["sella", "nasion", "menton"])
    path = save_checkpoint(tmp_path / "run" / "best.pt", model, meta, extra={"epoch": 4, "optimizer_state_dict": {}})
    assert [p.name for p in path.parent.iterdir()] == ["best.pt"]  # no temp file left behind
    loaded, meta2, extra = load_checkpoint(path)
    assert meta2.to_dict() == {**meta.to_dict(), "arch_kwargs": meta2.arch_kwargs}
    assert meta2.arch_kwargs["num_modules"] == [1, 1, 1] and meta2.arch_kwargs["num_blocks"] == 1
    assert meta2.arch_kwargs["width"] == 18
    assert extra["epoch"] == 4
    x = torch.randn(1, 3, 48, 64)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), loaded.eval()(x))
    m3, meta3 = load_model(
        path, expect={"arch": "hrnet_w18", "input_size": [64, 48], "landmark_names": ["sella", "nasion", "menton"]}
    )
    assert not m3.training and meta3.heatmap_size == (16, 12)


def test_width_override_round_trip(tmp_path):
    model = create_model("hrnet_w18", 2, width=8, num_modules=(1, 1, 1), num_blocks=1)
    path = save_checkpoint(tmp_path / "w8.pt", model, ModelMeta("hrnet_w18", ["a", "b"], (32, 32), (8, 8)))
    loaded, _ = load_model(path)
    assert loaded.final_layer.weight.shape == (2, 8, 1, 1)


def test_timm_round_trip(tmp_path):
    model = create_model("timm:hrnet_w18_small", 2, pretrained=False, head_channels=16)
    meta = ModelMeta("timm:hrnet_w18_small", ["sella", "nasion"], (64, 64), (16, 16))
    path = save_checkpoint(tmp_path / "t.pt", model, meta)
    loaded, meta2 = load_model(path)
    assert meta2.arch_kwargs["head_channels"] == 16
    assert model.init_info == {"pretrained": False, "weights": None}
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), loaded(x))


def test_expect_mismatch_names_every_difference(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", _tiny(3), _tiny_meta(["sella", "nasion", "menton"]))
    with pytest.raises(CheckpointError) as e:
        load_model(path, expect={"input_size": (768, 768), "arch": "hrnet_w32", "landmark_names": AARIZ29.names})
    msg = str(e.value)
    assert str(path) in msg
    assert "input_size" in msg and "(64, 48)" in msg and "(768, 768)" in msg
    assert "arch" in msg and "hrnet_w32" in msg
    assert "landmark_names differ" in msg and "3 in checkpoint vs 29 expected" in msg
    with pytest.raises(CheckpointError, match="different order"):
        load_model(path, expect={"landmark_names": ["nasion", "sella", "menton"]})


def test_truncated_file_names_the_file(tmp_path, public_file):
    data = public_file.read_bytes()
    bad = tmp_path / "best_model.pth"
    bad.write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="truncated") as e:
        load_model(bad)
    assert str(bad) in str(e.value)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04garbage"])
def test_garbage_files(tmp_path, content):
    bad = tmp_path / "x.pt"
    bad.write_bytes(content)
    with pytest.raises(CheckpointError, match=str(bad).replace(".", r"\.")):
        load_model(bad)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "nope.pt")


def test_state_dict_that_does_not_fit(tmp_path):
    sd = dict(_tiny(19).state_dict())
    del sd["stage3.0.branches.1.0.conv1.weight"]
    sd["extra.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save({"model_state_dict": sd, "config": {"MODEL": {"NUM_JOINTS": 19}}}, path)
    with pytest.raises(CheckpointError, match=r"1 missing keys .*stage3\.0\.branches.*1 unexpected keys"):
        load_model(path)
    torch.save({"model_state_dict": _tiny(19).state_dict(), "config": {"MODEL": {"NUM_JOINTS": 38}}}, path)
    with pytest.raises(CheckpointError, match="NUM_JOINTS=38"):
        load_model(path)
    torch.save({"model_state_dict": _tiny(7).state_dict()}, path)
    with pytest.raises(CheckpointError, match="7 output channels: give landmark_names"):
        load_model(path)
    torch.save({"encoder.conv1.weight": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match="no 'final_layer.weight'"):
        load_model(path)


def test_untrusted_pickle_refused(tmp_path):
    import argparse

    path = tmp_path / "evil.pt"  # an arbitrary (importable) Python object inside the file
    torch.save({"model_state_dict": {"final_layer.weight": torch.zeros(1)}, "obj": argparse.Namespace(a=1)}, path)
    with pytest.raises(CheckpointError, match="trusted=True"):
        load_model(path)


def test_save_is_atomic_on_failure(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "c.pt", _tiny(3), _tiny_meta(["sella", "nasion", "menton"]))
    before = path.read_bytes()

    def boom(obj, f, *a, **k):  # save_checkpoint writes through a file object
        f.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    # one CheckpointError line naming the checkpoint (the file's OSError names no path)
    with pytest.raises(CheckpointError, match=r"c\.pt: cannot write the checkpoint: disk full"):
        save_checkpoint(path, _tiny(3), _tiny_meta(["a", "b", "c"]))
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["c.pt"]


def test_save_rejects_wrong_meta(tmp_path):
    with pytest.raises(ValueError, match="2 landmark names"):
        save_checkpoint(tmp_path / "c.pt", _tiny(3), _tiny_meta(["sella", "nasion"]))
    with pytest.raises(ValueError, match="does not describe this model"):
        save_checkpoint(tmp_path / "c.pt", _tiny(2), ModelMeta("timm:resnet18", ["a", "b"], (32, 32), (8, 8)))
    with pytest.raises(ValueError, match="reserved"):
        save_checkpoint(tmp_path / "c.pt", _tiny(3), _tiny_meta(["a", "b", "c"]), extra={"meta": 1})


def test_public_meta_is_consumable_by_codec_and_preprocess():
    """The public model's meta drives the colleagues' factories as DESIGN.md says."""
    codecs = pytest.importorskip("cephalo.codecs")
    steps = pytest.importorskip("cephalo.preprocess.steps")
    norm = pytest.importorskip("cephalo.preprocess.normalise")
    from cephalo.public_hrnet.checkpoint import public_hrnet_meta

    meta = public_hrnet_meta()
    codec = codecs.create_codec(**meta.codec)
    assert codec.stride == 4 and tuple(codec.heatmap_size) == (192, 192)
    assert steps.Pipeline.from_spec(meta.variant).output_wh() == (768, 768)
    assert norm.normalisation_spec(meta.normalisation)["std"] == [0.229, 0.224, 0.225]
