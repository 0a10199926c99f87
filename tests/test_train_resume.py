"""Kill-and-resume reproduces the uninterrupted run bitwise on CPU."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch

from cephalo.errors import ConfigError
from helpers import make_trainer, tiny_setup

# EMA, accumulation, warm-up, dropout and augmentation all carry state or randomness across epochs
RESUME_CFG = dict(
    epochs=3, batch_size=2, accumulate=2, warmup_epochs=1.0, ema={"enabled": True, "decay": 0.9}, lr=3e-3, head_lr=6e-3
)
AUG = {
    "enabled": True,
    "affine": {"p": 0.8, "rotate_deg": 5, "scale": [0.95, 1.05], "translate_frac": 0.03},
    "brightness_contrast": {"p": 0.5},
    "noise": {"p": 0.3},
}


class SimulatedKill(RuntimeError):
    pass


def _factory():
    try:
        from cephalo.augment import build_augmentation
    except ImportError:  # pragma: no cover - augmentation lands with the preprocessing module
        return None
    return partial(build_augmentation, AUG)


def _run(tmp_path, out, loss_wrapper=None, **over):
    variant, codec, loss, cfg = tiny_setup(tmp_path / out, n=14, size=32, **{**RESUME_CFG, **over})
    fn = loss_wrapper(loss) if loss_wrapper else loss
    tr = make_trainer(tmp_path, variant, codec, fn, cfg, out=out, augment_factory=_factory())
    return tr


def _state(tr):
    return {k: v.clone() for k, v in tr.raw_model.state_dict().items()}


def _assert_bitwise(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resume"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ref")
    tr = _run(tmp, "full")
    res = tr.run()
    return _state(tr), res.history, tr.ema.state_dict()["state"]


def _kill_at_step(step: int):
    """A loss wrapper that raises SimulatedKill at the ``step``-th training forward (a power cut)."""
    n = {"steps": 0}

    def killer(loss):
        def f(pred, target, weights):
            n["steps"] += pred.requires_grad
            if n["steps"] == step:
                raise SimulatedKill("power cut")
            return loss(pred, target, weights)

        return f

    return killer


def test_kill_inside_a_step_then_resume_is_bitwise_identical(tmp_path, reference):
    ref_state, ref_hist, ref_ema = reference
    killer = _kill_at_step(7)  # epoch 2 (10 train images // 2 = 5 micro-steps per epoch)

    tr = _run(tmp_path, "run", killer)
    with pytest.raises(SimulatedKill):
        tr.run()
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["training"]["epoch"] == 1

    tr2 = _run(tmp_path, "run")  # a fresh process: new model, same settings, same out dir
    res = tr2.run()
    assert res.resumed_from_epoch == 1 and res.epochs_run == 3
    _assert_bitwise(_state(tr2), ref_state)
    _assert_bitwise(tr2.ema.state_dict()["state"], ref_ema)
    assert [r["train_loss"] for r in res.history] == [r["train_loss"] for r in ref_hist]
    ck = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    _assert_bitwise({k: v for k, v in ck["model_state_dict"].items()}, ref_state)


def test_kill_during_checkpoint_write_leaves_previous_checkpoint_and_resumes(tmp_path, reference, monkeypatch):
    ref_state, _, _ = reference
    real_save = torch.save
    calls = {"last": 0}

    def dying_save(obj, f, *a, **kw):
        if isinstance(obj, dict) and "training" in obj:
            calls["last"] += 1
            if calls["last"] == 2:  # end of epoch 2: die half way through writing
                if hasattr(f, "write"):  # cephalo saves through an open file
                    f.write(b"PK\x03\x04 half a checkpoint")
                else:
                    with open(f, "wb") as fh:
                        fh.write(b"PK\x03\x04 half a checkpoint")
                raise SimulatedKill("killed while writing")
        return real_save(obj, f, *a, **kw)

    monkeypatch.setattr(torch, "save", dying_save)
    tr = _run(tmp_path, "run")
    with pytest.raises(SimulatedKill):
        tr.run()
    monkeypatch.setattr(torch, "save", real_save)
    ck = torch.load(tmp_path / "run" / "last.pt", weights_only=True)  # still the intact epoch-1 file
    assert ck["training"]["epoch"] == 1
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")]

    tr2 = _run(tmp_path, "run")
    tr2.run()
    _assert_bitwise(_state(tr2), ref_state)


def test_stop_after_epoch_then_extend_is_not_silently_mixed(tmp_path):
    tr = _run(tmp_path, "run", epochs=1)
    tr.run()
    # more epochs change the cosine schedule: resuming would not reproduce any run -> clear error
    with pytest.raises(ConfigError, match="different settings.*epochs"):
        _run(tmp_path, "run", epochs=2).run()
    # a setting that does not change the weights may differ (workers)
    res = _run(tmp_path, "run", epochs=1, num_workers=0).run()
    assert res.resumed_from_epoch == 1 and res.epochs_run == 1
    # and resume: never starts over
    res = _run(tmp_path, "run", epochs=1, resume="never").run()
    assert res.resumed_from_epoch is None


def test_augmentation_is_seeded_per_sample_not_per_worker(tmp_path):
    from cephalo.train.data import HeatmapDataset

    f = _factory()
    if f is None:
        pytest.skip("cephalo.augment not available")
    variant, codec, _, _ = tiny_setup(tmp_path, n=6, size=32)
    ds = HeatmapDataset(variant.images, variant.landmarks, range(6), codec, f, seed=1)
    ds.set_epoch(2)
    a = [ds[i] for i in (0, 1, 2)]
    b = [HeatmapDataset(variant.images, variant.landmarks, range(6), codec, f, seed=1) for _ in range(1)][0]
    b.set_epoch(2)
    rev = {i: b[i] for i in (2, 1, 0)}  # other order, other object (as another worker would)
    for i in (0, 1, 2):
        assert torch.equal(a[i]["image"], rev[i]["image"])
        assert torch.equal(a[i]["keypoints"], rev[i]["keypoints"])
    ds.set_epoch(3)
    assert not torch.equal(ds[0]["image"], a[0]["image"])  # a new epoch draws new augmentations
    assert np.isfinite(a[0]["keypoints"].numpy()).all()


def test_kill_mid_epoch_with_step_checkpoints_resumes_inside_the_epoch_bitwise(tmp_path, reference):
    """checkpoint_every_steps: resume continues at the saved batch of epoch 2, same final weights."""
    ref_state, ref_hist, _ = reference
    killer = _kill_at_step(9)  # epoch 2, 4th micro-batch (2 optimizer steps of 2 micro-batches done)

    tr = _run(tmp_path, "run", killer, checkpoint_every_steps=1)
    with pytest.raises(SimulatedKill):
        tr.run()
    st = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["training"]
    assert st["epoch"] == 1 and st["mid_epoch"]["micro"] == 2  # saved after epoch 2's first optimizer step

    seen = {"steps": 0}

    def counter(loss):
        def f(pred, target, weights):
            seen["steps"] += pred.requires_grad
            return loss(pred, target, weights)

        return f

    tr2 = _run(tmp_path, "run", counter, checkpoint_every_steps=1)
    res = tr2.run()
    assert seen["steps"] == 3 + 5  # the rest of epoch 2 (3 of 5 micro-batches) + epoch 3, nothing replayed
    _assert_bitwise(_state(tr2), ref_state)
    assert [r["train_loss"] for r in res.history] == pytest.approx([r["train_loss"] for r in ref_hist], rel=1e-12)
