"""The one inference path (cephalo.inference): device names, the way back to original pixels, and
training validation scoring exactly what ``cephalo evaluate`` scores."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cephalo import geometry as G
from cephalo.errors import ConfigError
from cephalo.inference import Predictor, predict_variant, resolve_device


# ---------------------------------------------------------------------- devices
def test_resolve_device_names_and_one_error_message(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")
    for bad in ("gpu", "cuda:x", "tpu:0"):
        with pytest.raises(ConfigError, match=r"evaluate\.device: unknown device .*valid: auto, cpu, cuda, cuda:N"):
            resolve_device(bad, key="evaluate.device")
    with pytest.raises(ConfigError, match=r"train\.device: 'cuda:1' asked for but CUDA is not available"):
        resolve_device("cuda:1", key="train.device")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto", local_rank=1) == torch.device("cuda", 1)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(ConfigError, match="only 2 CUDA device"):
        resolve_device("cuda:2")


def test_evaluate_device_auto_no_longer_reaches_torch(tmp_path):
    """``evaluate.device: auto`` used to end in ``model.to("auto")`` (a raw torch RuntimeError)."""
    from cephalo.codecs import create_codec

    codec = create_codec(input_size=(16, 16), heatmap_size=(4, 4), sigma=1.0)
    p = Predictor(torch.nn.Conv2d(3, 2, 4, stride=4), codec_spec=codec.to_dict(), device="auto")
    assert p.device.type in ("cpu", "cuda")


# ---------------------------------------------------------------------- original pixels
class _Oracle(torch.nn.Module):
    """Outputs given heatmaps in call order (ignores its input)."""

    def __init__(self, hm: np.ndarray):
        super().__init__()
        self.hm = torch.as_tensor(hm)
        self.i = 0

    def forward(self, x):
        out = self.hm[self.i : self.i + x.shape[0]]
        self.i += x.shape[0]
        return out


@pytest.mark.parametrize("convention", ["pixel_centre", "hf_corner"])
def test_predictions_round_trip_to_original_pixels(convention):
    """Encode original points through label_frame_affine, decode through the Predictor: back within
    the decoder's sub-pixel error, for both label conventions, letterboxes of different shapes."""
    from cephalo.codecs import create_codec

    W = H = 64
    codec = create_codec(input_size=(W, H), heatmap_size=(16, 16), sigma=1.5, decoder="dark", convention=convention)
    rng = np.random.default_rng(3)
    sizes = np.array([[400, 300], [300, 500], [320, 320]])
    affines = np.stack([G.letterbox_geometry(tuple(s), (W, H)).affine() for s in sizes])
    orig = np.stack([rng.uniform([0.2 * w, 0.2 * h], [0.8 * w, 0.8 * h], size=(4, 2)) for w, h in sizes])
    lab = np.stack(
        [
            G.apply_affine(G.label_frame_affine(affines[i], tuple(sizes[i]), (W, H), convention), orig[i])
            for i in range(3)
        ]
    )
    hm = np.stack([codec.encode(lab[i])[0] for i in range(3)])
    p = Predictor(_Oracle(hm), codec_spec=codec.to_dict(), device="cpu", n_landmarks=4)
    out = p.predict(np.zeros((3, H, W), np.uint8), affines, sizes)
    scale = np.max(sizes / W, axis=1)[:, None, None]
    assert np.all(np.abs(out.coords - orig) < 0.05 * 4 * scale)
    assert out.coords.dtype == np.float64 and out.confidence.shape == (3, 4) and not out.degenerate.any()
    np.testing.assert_allclose(out.coords_input, lab, atol=0.05 * 4)


def test_predictor_rejects_a_model_with_the_wrong_landmark_count():
    from cephalo.codecs import create_codec

    codec = create_codec(input_size=(16, 16), heatmap_size=(4, 4), sigma=1.0)
    p = Predictor(_Oracle(np.zeros((1, 3, 4, 4), np.float32)), codec=codec, device="cpu", n_landmarks=2)
    with pytest.raises(ConfigError, match="outputs 3 heatmaps but its meta names 2 landmarks"):
        p.predict(np.zeros((1, 16, 16), np.uint8), np.eye(2, 3)[None], np.array([[16, 16]]))


def test_predictor_runs_channels_last_with_the_values_of_the_plain_layout():
    """The Predictor runs the network in NHWC (channels-last) layout, oneDNN's fast CPU path: the
    heatmaps equal the plain NCHW forward pass to float rounding, and the weights keep their values."""
    from cephalo.codecs import create_codec
    from cephalo.models import create_model

    torch.manual_seed(0)
    model = create_model("hrnet_w18", 3, width=8, num_modules=(1, 1, 1), num_blocks=1).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images = np.random.default_rng(0).integers(0, 255, size=(2, 64, 64), dtype=np.uint8)
    codec = create_codec(input_size=(64, 64), heatmap_size=(16, 16), sigma=1.5)
    with torch.no_grad():
        from cephalo.preprocess import normalise

        plain = model(torch.cat([normalise(im[None], None) for im in images])).numpy()
    out = Predictor(model, codec=codec, device="cpu", n_landmarks=3).heatmaps(list(images))
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in model.parameters() if p.ndim == 4)
    np.testing.assert_allclose(out.numpy(), plain, rtol=1e-4, atol=1e-5)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


# ---------------------------------------------------------------------- validation == evaluate
@pytest.mark.slow
@pytest.mark.parametrize("convention", ["pixel_centre", "hf_corner"])
def test_validation_mre_equals_cephalo_evaluate(tmp_path, convention):
    """The MRE/SDR a training run records for its best checkpoint are the figures ``cephalo evaluate``
    reports for that checkpoint on the same split with the same decoder."""
    from cephalo.cli import main
    from cephalo.models import load_model
    from cephalo.preprocess import load_variant
    from cephalo.train import TrainConfig, make_synthetic_variant, train_on_variant

    vdir = make_synthetic_variant(
        tmp_path / "v", n_images=10, size=32, seed=1, landmark_names=["sella", "nasion", "orbitale", "porion"]
    )
    cfg = TrainConfig.from_dict(
        {
            "epochs": 1,
            "batch_size": 4,
            "lr": 1e-3,
            "num_workers": 0,
            "loss": "mse",
            "val_split": "valid",
            "val_batch_size": 3,
        }
    )
    res = train_on_variant(
        vdir,
        tmp_path / "run",
        cfg,
        arch="hrnet_w18",
        model_kwargs={"num_modules": [1, 1, 1], "num_blocks": 1},
        codec_params={"sigma": 1.0, "decoder": "dark", "convention": convention},
        progress=False,
    )
    val = res.history[-1]
    assert res.best_epoch == 1 and np.isfinite(val["val_mre_mm"])

    (tmp_path / "params.yaml").write_text(
        "evaluate: {n_boot: 10, batch_size: 4, device: auto, n_worst: 0}\ntracking: {enabled: false}\n"
    )
    r = CliRunner().invoke(
        main,
        [
            "evaluate",
            "--model",
            str(tmp_path / "run" / "best.pt"),
            "--data",
            str(vdir),
            "--split",
            "valid",
            "--out",
            str(tmp_path / "ev"),
            "--params",
            str(tmp_path / "params.yaml"),
        ],
    )
    assert r.exit_code == 0, r.output + repr(r.exception)
    overall = json.loads((tmp_path / "ev" / "metrics.json").read_text())["overall"]
    assert overall["mre_mm"] == pytest.approx(val["val_mre_mm"], rel=1e-6, abs=1e-9)
    assert overall["sd_mm"] == pytest.approx(val["val_sd_mm"], rel=1e-6, abs=1e-9)
    assert 100.0 * overall["sdr"]["2.0"] == pytest.approx(val["val_sdr_2mm"], abs=1e-9)

    # the test can fail: mapping the same output back without the label frame moves the MRE
    model, meta = load_model(tmp_path / "run" / "best.pt")
    v = load_variant(vdir)
    rows = np.flatnonzero(np.asarray(v.splits) == "valid")
    pred = predict_variant(Predictor.from_meta(model, meta, device="cpu"), v, rows)
    naive = G.apply_affine(np.stack([G.invert(v.affines[r]) for r in rows]), pred.coords_input)
    from cephalo.evaluate.metrics import radial_errors_mm

    gt, sp = np.asarray(v.landmarks_original)[rows], np.asarray(v.spacing)[rows]
    assert np.nanmean(radial_errors_mm(pred.coords, gt, sp)) == pytest.approx(overall["mre_mm"], rel=1e-6)
    moved = np.nanmax(np.abs(naive - pred.coords))
    if convention == "hf_corner":
        assert moved > 0.1  # label frame differs from the pixel affine (original px)
    else:
        assert moved < 1e-9
