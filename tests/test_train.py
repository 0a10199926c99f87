"""The fine-tuning engine: config, schedule, sampler, EMA, learning, NaN stop, freeze, CLI."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from cephalo.errors import ConfigError
from cephalo.train import TrainConfig
from cephalo.train.data import EpochBatchSampler, sample_seed
from cephalo.train.optim import ModelEMA, warmup_cosine
from helpers import NAMES, make_trainer, normalised_image, tiny_setup, train_params


# ---------------------------------------------------------------------- config
def test_config_validation_and_overrides():
    with pytest.raises(ConfigError, match="unknown key"):
        TrainConfig.from_dict({"epochz": 3})
    with pytest.raises(ConfigError, match="train.lr"):
        TrainConfig.from_dict({"lr": -1})
    with pytest.raises(ConfigError, match="mixed_precision"):
        TrainConfig.from_dict({"mixed_precision": "fp8"})
    with pytest.raises(ConfigError, match="init.path"):
        TrainConfig.from_dict({"init": {"source": "checkpoint"}})
    c = TrainConfig.from_dict({"epochs": 5, "ema": True, "init": "scratch"})
    assert c.ema.enabled and c.init.source == "scratch"
    c2 = c.with_overrides(lr=1e-5, epochs=None, init={"source": "checkpoint", "path": "x.pth"})
    assert c2.lr == 1e-5 and c2.epochs == 5 and c2.init.path == "x.pth"
    # fingerprint: workers do not change the trajectory, lr does
    assert c.with_overrides(num_workers=7).fingerprint() == c.fingerprint()
    assert c2.fingerprint() != c.fingerprint()
    assert TrainConfig().init.resolved(model_pretrained=True).source == "imagenet"
    assert TrainConfig.from_dict({"init": {"path": "a.pt"}}).init.resolved().source == "checkpoint"


def test_warmup_cosine_hand_values():
    # 10 steps, 2 warm-up from 0.1: 0.1, 0.55, then cosine 1 -> 0 over 8 steps
    assert warmup_cosine(0, 10, 2, 0.1, 0.0) == pytest.approx(0.1)
    assert warmup_cosine(1, 10, 2, 0.1, 0.0) == pytest.approx(0.55)
    assert warmup_cosine(2, 10, 2, 0.1, 0.0) == pytest.approx(1.0)
    assert warmup_cosine(6, 10, 2, 0.1, 0.0) == pytest.approx(0.5)  # half way: (1 + cos(pi/2)) / 2
    assert warmup_cosine(10, 10, 2, 0.1, 0.2) == pytest.approx(0.2)
    assert warmup_cosine(4, 10, 2, 0.1, 0.0) == pytest.approx(0.5 * (1 + math.cos(math.pi * 2 / 8)))


def test_sampler_is_pure_function_of_seed_epoch_and_ddp_slices_match():
    one = EpochBatchSampler(22, 4, world_size=1, rank=0, seed=3)
    one.set_epoch(5)
    a = list(one)
    again = EpochBatchSampler(22, 4, seed=3)
    again.set_epoch(5)
    assert a == list(again)  # no hidden state: a resumed run sees the same batches
    again.set_epoch(6)
    assert a != list(again)
    assert len(a) == 5 and all(len(b) == 4 for b in a)  # drop_last: 22 // 4
    r0, r1 = (EpochBatchSampler(22, 2, world_size=2, rank=r, seed=3) for r in (0, 1))
    r0.set_epoch(5), r1.set_epoch(5)
    assert [x + y for x, y in zip(r0, r1, strict=True)] == a  # two ranks of 2 == one process of 4
    assert sample_seed(0, 1, 2) == sample_seed(0, 1, 2) != sample_seed(0, 2, 2)


def test_ema_update_hand_computed():
    m = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        m.weight.fill_(1.0)
    ema = ModelEMA(m, decay=0.5)
    with torch.no_grad():
        m.weight.fill_(3.0)
    ema.update(m)  # n=1: d = min(0.5, 2/11) = 2/11
    d = 2 / 11
    assert float(ema.state["weight"]) == pytest.approx(d * 1 + (1 - d) * 3)
    ema.update(m)  # n=2: d = min(0.5, 3/12) = 0.25
    prev = d * 1 + (1 - d) * 3
    assert float(ema.state["weight"]) == pytest.approx(0.25 * prev + 0.75 * 3)


# ---------------------------------------------------------------------- learning
def test_few_epochs_lower_loss_and_mre_without_collapse(tmp_path):
    variant, codec, loss, cfg = tiny_setup(tmp_path, n=32, size=32, epochs=6)
    tr = make_trainer(tmp_path, variant, codec, loss, cfg)
    res = tr.run()
    h = res.history
    assert len(h) == 6 and res.best_epoch is not None
    assert h[-1]["train_loss"] < 0.5 * h[0]["train_loss"]
    first_mre = h[0]["val_mre_mm"]
    assert np.isfinite(first_mre)
    assert min(r["val_mre_mm"] for r in h[1:]) < first_mre
    assert h[-1]["val_spread_ratio"] > 0.3  # predictions follow the images, not one point
    for f in ("best.pt", "last.pt", "history.csv"):
        assert (tmp_path / "run" / f).is_file()
    lines = (tmp_path / "run" / "history.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,train_loss") and len(lines) == 7


def test_validation_mre_uses_inverse_affine_and_spacing(tmp_path):
    """A model that outputs the ground-truth heatmaps scores ~0 mm (decode -> invert affine -> mm)."""
    from cephalo.inference import Predictor, predict_variant

    variant, codec, loss, cfg = tiny_setup(tmp_path, n=6, size=32)

    class Oracle(nn.Module):
        def forward(self, x):  # look up the sample by its pixels
            out = []
            for img in x:
                i = int(
                    np.argmin([float((img[0] - normalised_image(variant, j)).abs().sum()) for j in range(len(variant))])
                )
                out.append(torch.as_tensor(codec.encode(variant.landmarks[i])[0]))
            return torch.stack(out)

    rows = list(range(6))
    p = predict_variant(
        Predictor(Oracle(), codec=codec, normalisation=variant.normalisation, device="cpu"), variant, rows, batch_size=4
    )
    pred, degen = p.coords, p.degenerate
    from cephalo.evaluate.metrics import radial_errors_mm

    err = radial_errors_mm(pred, variant.landmarks_original, variant.spacing)
    # 0.05 heatmap px decode tolerance x stride 4 x ~4.4 orig px per preprocessed px x 0.11 mm
    assert np.nanmax(err) < 0.2
    assert not degen.any()
    # and the original frame really is different from the preprocessed one
    assert np.abs(variant.landmarks_original - variant.landmarks).max() > 50


# ---------------------------------------------------------------------- NaN stop
def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    from cephalo.train import NonFiniteLossError

    variant, codec, loss, cfg = tiny_setup(tmp_path, n=16, size=32, epochs=4)
    calls = {"n": 0}
    steps_per_epoch = 3  # 12 train images // 4

    def bad_loss(pred, target, weights):
        calls["n"] += pred.requires_grad  # training steps only (validation also computes a loss)
        out = loss(pred, target, weights)
        if calls["n"] == steps_per_epoch * 2 + 2 and pred.requires_grad:  # inside epoch 3
            return out * float("nan")
        return out

    tr = make_trainer(tmp_path, variant, codec, bad_loss, cfg)
    with pytest.raises(NonFiniteLossError, match=r"non-finite.*epoch 3.*last\.pt \(epoch 2\)"):
        tr.run()
    ck = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert ck["training"]["epoch"] == 2
    assert all(torch.isfinite(v).all() for v in ck["model_state_dict"].values() if v.is_floating_point())
    assert (tmp_path / "run" / "best.pt").is_file()


# ---------------------------------------------------------------------- freeze / head lr
def test_freeze_backbone_updates_only_new_weights(tmp_path):
    variant, codec, loss, cfg = tiny_setup(
        tmp_path, n=16, size=32, epochs=1, freeze_backbone_epochs=1, head_lr=1e-2, lr=1e-3
    )
    tr = make_trainer(tmp_path, variant, codec, loss, cfg)
    before = {k: v.clone() for k, v in tr.raw_model.named_parameters()}
    lrs = {g["name"]: g["lr"] for g in tr.optimizer.param_groups}
    assert lrs == {"backbone": pytest.approx(1e-3), "head": pytest.approx(1e-2)}
    tr.run()
    after = dict(tr.raw_model.named_parameters())
    for k, v in before.items():
        if k.startswith("final."):
            assert not torch.equal(v, after[k]), k
        else:
            assert torch.equal(v, after[k]), k


# ---------------------------------------------------------------------- CLI
def test_cli_help_lists_familiar_options():
    from click.testing import CliRunner

    from cephalo.cli import main

    r = CliRunner().invoke(main, ["train", "--help"])
    assert r.exit_code == 0
    for opt in (
        "--model",
        "--resume",
        "--image_size",
        "--batch_size",
        "--lr",
        "--epochs",
        "--mixed_precision",
        "--loss",
        "--init",
        "--data",
        "--out",
        "--params",
    ):
        assert opt in r.output


def test_cli_train_end_to_end_and_checkpoint_contract(tmp_path):
    from click.testing import CliRunner

    from cephalo.cli import main
    from cephalo.models import load_model
    from cephalo.train import make_synthetic_variant

    vdir = make_synthetic_variant(tmp_path / "v", n_images=12, size=32, landmark_names=NAMES)
    params = train_params(tmp_path)
    out = tmp_path / "run"
    r = CliRunner().invoke(
        main,
        [
            "train",
            "--data",
            str(vdir),
            "--out",
            str(out),
            "--params",
            str(params),
            "--image_size",
            "32",
            "32",
            "--no-progress",
            "--workers",
            "1",
        ],
    )
    assert r.exit_code == 0, r.output
    for f in ("best.pt", "last.pt", "history.csv", "train.json", "init_report.json"):
        assert (out / f).is_file(), f
    model, meta = load_model(out / "best.pt")
    assert meta.arch == "hrnet_w18" and meta.landmark_names == list(NAMES)
    assert tuple(meta.input_size) == (32, 32) and tuple(meta.heatmap_size) == (8, 8)
    prov = meta.provenance
    assert len(prov["train_image_hashes"]) == 9 and prov["train_image_hash_kind"] == "preprocessed_array_sha256"
    assert prov["data_index_hash"] and prov["params"]["train"]["epochs"] == 1
    assert list(prov["train_image_ids"]) == ["synthetic"] and len(prov["train_image_ids"]["synthetic"]) == 9
    # the evaluation's leakage check recognises the training images by content
    from cephalo.evaluate.leakage import image_content_hash
    from cephalo.preprocess import load_variant

    v = load_variant(vdir)
    seen = {image_content_hash(v.images[i]) for i in range(len(v))} & set(prov["train_image_hashes"].values())
    assert len(seen) == 9
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, len(NAMES), 8, 8)

    # --image_size that does not match the variant: one-line error, exit 1
    r = CliRunner().invoke(
        main,
        [
            "train",
            "--data",
            str(vdir),
            "--out",
            str(tmp_path / "r2"),
            "--params",
            str(params),
            "--image_size",
            "768",
            "768",
        ],
    )
    assert r.exit_code == 1 and "768" in str(r.exception)


def test_cli_familiar_recipe_from_public_format_checkpoint_transfers_head_by_name(tmp_path):
    """`--model --resume public.pth --image_size --batch_size --lr --epochs --mixed_precision --loss`."""
    import json

    from click.testing import CliRunner

    from cephalo.cli import main
    from cephalo.landmarks import ISBI19
    from cephalo.models import create_model, load_model
    from cephalo.train import make_synthetic_variant

    # a public-format training dict (HF best_model.pth layout) of a tiny 19-landmark HRNet
    torch.manual_seed(3)
    src = create_model("hrnet_w18", 19, num_modules=[1, 1, 1], num_blocks=1)
    pub = tmp_path / "hrnet_cephalometric.pth"
    torch.save(
        {
            "epoch": 7,
            "model_state_dict": {f"module.{k}": v for k, v in src.state_dict().items()},
            "config": {"MODEL": {"NUM_JOINTS": 19}, "INPUT": {"IMAGE_SIZE": [32, 32], "HEATMAP_SIZE": [8, 8]}},
        },
        pub,
    )
    names = ("pronasale", "sella", "menton", "nasion")  # 3 shared with ISBI-19, 1 new (Aariz)
    vdir = make_synthetic_variant(tmp_path / "v", n_images=10, size=32, landmark_names=names)
    params = train_params(tmp_path, epochs=5, lr=0.5)  # the CLI options below must win over these
    out = tmp_path / "run"
    r = CliRunner().invoke(
        main,
        [
            "train",
            "--data",
            str(vdir),
            "--out",
            str(out),
            "--params",
            str(params),
            "--no-progress",
            "--model",
            "hrnet_w18",
            "--resume",
            str(pub),
            "--image_size",
            "32",
            "32",
            "--batch_size",
            "4",
            "--lr",
            "1e-5",
            "--epochs",
            "1",
            "--mixed_precision",
            "--loss",
            "adaptive_wing",
        ],
    )
    assert r.exit_code == 0, r.output + repr(r.exception)
    report = json.loads((out / "init_report.json").read_text())
    assert report["init_source"] == "checkpoint" and report["backbone_fraction"] == 1.0
    assert {c["name"] for c in report["head"]["copied"]} == {"sella", "menton", "nasion"}
    assert [n["name"] for n in report["head"]["new"]] == ["pronasale"]
    assert set(report["new_param_names"]) == {"final_layer.weight", "final_layer.bias"}
    last = torch.load(out / "last.pt", weights_only=True)
    cfg = last["training"]["config"]
    assert cfg["lr"] == 1e-5 and cfg["epochs"] == 1 and cfg["batch_size"] == 4 and cfg["mixed_precision"] == "auto"
    # backbone trained at lr 1e-5 for 1 step: still (almost) the public weights
    _, meta = load_model(out / "last.pt")
    sd = last["model_state_dict"]
    diff = (sd["conv1.weight"] - src.state_dict()["conv1.weight"]).abs().max()
    assert 0 < diff < 1e-3
    assert meta.landmark_names == list(names)
    assert meta.provenance["init"]["path"] == str(pub)
    assert ISBI19.names[0] == "sella"


def test_validation_split_resolution():
    from cephalo.errors import DataError
    from cephalo.train.loop import resolve_splits

    ids = [f"{i:03d}" for i in range(20)]
    isbi = ["train"] * 10 + ["test1"] * 5 + ["test2"] * 5
    cfg = TrainConfig.from_dict({"val_fraction": 0.2})
    tr, va, desc = resolve_splits(isbi, ids, cfg)
    assert len(va) == 2 and set(va) <= set(range(10)) and not set(tr) & set(va) and len(tr) == 8
    assert "held out" in desc
    assert np.array_equal(resolve_splits(isbi, ids, cfg)[1], va)  # fixed choice
    aariz = ["train"] * 10 + ["valid"] * 5 + ["test"] * 5
    tr, va, desc = resolve_splits(aariz, ids, cfg)
    assert list(va) == list(range(10, 15)) and len(tr) == 10
    with pytest.raises(DataError, match="validation split 'test3'"):
        resolve_splits(isbi, ids, TrainConfig.from_dict({"val_split": "test3"}))
    assert len(resolve_splits(isbi, ids, TrainConfig.from_dict({"val_split": None}))[1]) == 0
    with pytest.raises(DataError, match="training split"):
        resolve_splits(["test"] * 3, ids[:3], cfg)


def test_early_stopping_when_validation_mre_stops_improving(tmp_path):
    variant, codec, loss, cfg = tiny_setup(
        tmp_path, n=12, size=32, epochs=5, lr=1e-12, head_lr=1e-12, early_stopping_patience=1
    )
    res = make_trainer(tmp_path, variant, codec, loss, cfg).run()
    # (weights frozen by the tiny lr; only BatchNorm statistics move the MRE a little)
    assert res.stopped_early and res.epochs_run < 5
    assert res.epochs_run == res.best_epoch + 1  # patience 1: the first epoch without improvement
    assert not res.history[-1]["is_best"]
    assert res.history[-1]["val_mre_mm"] >= res.best_score


def test_cli_init_from_cephalo_checkpoint_uses_its_architecture(tmp_path):
    import json

    import yaml
    from click.testing import CliRunner

    from cephalo.cli import main
    from cephalo.models import load_model
    from cephalo.train import make_synthetic_variant

    vdir = make_synthetic_variant(tmp_path / "v", n_images=10, size=32, landmark_names=NAMES)
    params = train_params(tmp_path)
    r = CliRunner().invoke(
        main, ["train", "--data", str(vdir), "--out", str(tmp_path / "a"), "--params", str(params), "--no-progress"]
    )
    assert r.exit_code == 0, r.output
    p = yaml.safe_load(params.read_text())
    p["model"] = {"arch": "timm:no_such_model", "pretrained": False, "kwargs": {}}  # must not be used
    params.write_text(yaml.safe_dump(p))
    r = CliRunner().invoke(
        main,
        [
            "train",
            "--data",
            str(vdir),
            "--out",
            str(tmp_path / "b"),
            "--params",
            str(params),
            "--no-progress",
            "--init",
            str(tmp_path / "a" / "best.pt"),
        ],
    )
    assert r.exit_code == 0, r.output + repr(r.exception)
    _, meta = load_model(tmp_path / "b" / "best.pt")
    assert meta.arch == "hrnet_w18" and meta.arch_kwargs["num_modules"] == [1, 1, 1]
    report = json.loads((tmp_path / "b" / "init_report.json").read_text())
    assert report["new_param_names"] == [] and len(report["head"]["copied"]) == len(NAMES)


@pytest.mark.slow
def test_cli_train_logs_one_mlflow_run_when_switched_on(tmp_path):
    import sqlite3

    import yaml
    from click.testing import CliRunner

    from cephalo.cli import main
    from cephalo.train import make_synthetic_variant

    vdir = make_synthetic_variant(tmp_path / "v", n_images=10, size=32, landmark_names=NAMES)
    params = train_params(tmp_path, tracking=True)
    p = yaml.safe_load(params.read_text())
    p["tracking"] = {
        "enabled": True,
        "store": str(tmp_path / "ml" / "mlflow.db"),
        "artifacts": str(tmp_path / "ml" / "artifacts"),
    }
    params.write_text(yaml.safe_dump(p))
    r = CliRunner().invoke(
        main, ["train", "--data", str(vdir), "--out", str(tmp_path / "run"), "--params", str(params), "--no-progress"]
    )
    assert r.exit_code == 0, r.output
    con = sqlite3.connect(tmp_path / "ml" / "mlflow.db")
    metrics = dict(con.execute("select key, value from metrics").fetchall())
    tags = dict(con.execute("select key, value from tags").fetchall())
    assert metrics["best_val_mre_mm"] > 0 and "val_mre_mm" in metrics, sorted(metrics)  # best + per-epoch history
    assert tags["stage"] == "train" and tags["data_index_hash"]
    assert list((tmp_path / "ml" / "artifacts").rglob("history.csv"))
    # the per-epoch curve is a metric series (one step per epoch), as the MLflow UI plots it
    epochs = len((tmp_path / "run" / "history.csv").read_text().strip().splitlines()) - 1
    steps = con.execute("select step, value from metrics where key = 'val_mre_mm' order by step").fetchall()
    assert [s for s, _ in steps] == list(range(epochs)) and epochs >= 1


def test_targets_encoded_on_device_train_like_targets_from_workers(tmp_path):
    """encode_on_device (GPU path, here on CPU) gives the same training as loader-side encoding."""
    variant, codec, loss, cfg = tiny_setup(tmp_path, n=12, size=32, epochs=2)
    a = make_trainer(tmp_path, variant, codec, loss, cfg, out="a")
    a.run()
    cfg_b = cfg.with_overrides(encode_on_device=True)
    b = make_trainer(tmp_path, variant, codec, loss, cfg_b, out="b")
    assert b.encode_on_device and not b.train_ds.encode and a.train_ds.encode
    b.run()
    for (k, va), vb in zip(a.raw_model.state_dict().items(), b.raw_model.state_dict().values(), strict=True):
        torch.testing.assert_close(va, vb, rtol=1e-4, atol=1e-5, msg=k)


def test_build_model_init_sources():
    from cephalo.train.runner import build_model

    kw = {"num_modules": [1, 1, 1], "num_blocks": 1}
    model, new, report = build_model("hrnet_w18", list(NAMES), TrainConfig.from_dict({"init": "scratch"}), kw)
    assert report["init_source"] == "scratch" and set(new) == {n for n, _ in model.named_parameters()}
    with pytest.raises(ConfigError, match="imagenet"):
        build_model("hrnet_w18", list(NAMES), TrainConfig.from_dict({"init": "imagenet"}), kw)
    with pytest.raises(ConfigError, match="architecture"):
        build_model(None, list(NAMES), TrainConfig.from_dict({"init": "scratch"}), kw)
