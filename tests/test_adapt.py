"""AdaBN (Li et al. 2016): BatchNorm statistics re-estimated on target images, nothing else changes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cephalo.train.adabn import adapt_batchnorm, batchnorm_layers
from helpers import NAMES, TinyHeatmapNet


def _images(n=10, size=32, seed=0, offset=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 120, size=(n, size, size)) + offset).astype(np.uint8)


def test_adabn_changes_bn_statistics_only_and_matches_target_moments():
    from cephalo.preprocess import normalise

    torch.manual_seed(0)
    model = TinyHeatmapNet()
    model.eval()
    params_before = {k: v.clone() for k, v in model.named_parameters()}
    buffers_before = {k: v.clone() for k, v in model.named_buffers()}
    imgs = _images(n=8, offset=100)  # a brighter "target domain"
    report = adapt_batchnorm(model, imgs, range(8), "imagenet", batch_size=8, progress=False)
    assert report["n_images"] == 8 and report["n_bn_layers"] == 3 and report["n_batches"] == 1

    for k, v in model.named_parameters():
        assert torch.equal(v, params_before[k]), f"weight {k} changed"
        assert v.requires_grad  # restored
    changed = [k for k, v in model.named_buffers() if not torch.equal(v, buffers_before[k])]
    assert changed and all(
        k.rsplit(".", 1)[1] in ("running_mean", "running_var", "num_batches_tracked") for k in changed
    )
    assert not model.training
    assert all(m.momentum == 0.1 for _, m in batchnorm_layers(model))  # restored

    # one batch of all images: running stats == that batch's moments of the first conv output
    x = normalise(imgs, "imagenet")
    feat = model.backbone[0](x)
    bn = model.backbone[1]
    torch.testing.assert_close(bn.running_mean, feat.mean(dim=(0, 2, 3)), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bn.running_var, feat.var(dim=(0, 2, 3), unbiased=True), rtol=1e-4, atol=1e-6)


def test_adabn_cumulative_average_over_batches():
    """momentum=None: the running mean is the plain average of the per-batch means."""
    from cephalo.preprocess import normalise

    torch.manual_seed(1)
    model = TinyHeatmapNet()
    imgs = _images(n=8, seed=3)
    adapt_batchnorm(model, imgs, range(8), "imagenet", batch_size=4, progress=False)
    conv = model.backbone[0]
    means = [conv(normalise(imgs[i : i + 4], "imagenet")).mean(dim=(0, 2, 3)) for i in (0, 4)]
    torch.testing.assert_close(model.backbone[1].running_mean, (means[0] + means[1]) / 2, rtol=1e-5, atol=1e-6)
    assert int(model.backbone[1].num_batches_tracked) == 2


def test_adabn_without_batchnorm_is_an_error():
    model = TinyHeatmapNet(norm="gn")
    with pytest.raises(ValueError, match="no BatchNorm"):
        adapt_batchnorm(model, _images(2), [0, 1], "imagenet", progress=False)


def test_cli_adapt_writes_checkpoint_with_provenance(tmp_path):
    from click.testing import CliRunner

    from cephalo.cli import main
    from cephalo.models import ModelMeta, create_model, load_checkpoint, save_checkpoint
    from cephalo.train import make_synthetic_variant

    vdir = make_synthetic_variant(tmp_path / "v", n_images=6, size=32, landmark_names=NAMES, seed=4)
    torch.manual_seed(0)
    model = create_model("hrnet_w18", len(NAMES), num_modules=[1, 1, 1], num_blocks=1)
    meta = ModelMeta(
        arch="hrnet_w18",
        landmark_names=list(NAMES),
        input_size=(32, 32),
        heatmap_size=(8, 8),
        normalisation={"name": "imagenet"},
        codec={"name": "gaussian"},
        provenance={"train_image_hashes": {"a": "b"}},
    )
    src = save_checkpoint(tmp_path / "src.pt", model, meta)
    params = tmp_path / "params.yaml"
    params.write_text("adapt: {batch_size: 3, device: cpu}\n")
    out = tmp_path / "adapted.pt"
    r = CliRunner().invoke(
        main,
        [
            "adapt",
            "--model",
            str(src),
            "--data",
            str(vdir),
            "--out",
            str(out),
            "--params",
            str(params),
            "--no-progress",
        ],
    )
    assert r.exit_code == 0, r.output
    m0, _, _ = load_checkpoint(src)
    m1, meta1, _ = load_checkpoint(out)
    sd0, sd1 = m0.state_dict(), m1.state_dict()
    for k in sd0:
        if k.endswith(("running_mean", "running_var", "num_batches_tracked")):
            continue
        assert torch.equal(sd0[k], sd1[k]), k
    assert not torch.equal(sd0["bn1.running_mean"], sd1["bn1.running_mean"])
    ada = meta1.provenance["adabn"]
    assert ada["n_images"] == 6 and len(ada["image_ids"]) == 6 and ada["model_sha256"]
    assert meta1.provenance["train_image_hashes"] == {"a": "b"}  # training provenance kept

    # a variant of another input size: one-line error, exit 1
    vbig = make_synthetic_variant(tmp_path / "v64", n_images=2, size=64, landmark_names=NAMES)
    r = CliRunner().invoke(
        main,
        ["adapt", "--model", str(src), "--data", str(vbig), "--out", str(tmp_path / "x.pt"), "--params", str(params)],
    )
    assert r.exit_code == 1 and "64x64" in str(r.exception)
    assert not (tmp_path / "x.pt").exists()
