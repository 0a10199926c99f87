"""Zero-shot diagnosis: collapsed, offset, scaled, flipped and good predictors are told apart."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cephalo.evaluate.diagnosis import diagnose

W, H = 1000, 1200
NAMES = [f"lm{k}" for k in range(8)]


def _gt(n=12, seed=0):
    """Skull-like constellations: a template spread over the image, jittered and shifted per image."""
    rng = np.random.default_rng(seed)
    template = rng.uniform([200, 250], [800, 950], size=(len(NAMES), 2))
    shift = rng.normal(0, 40, size=(n, 1, 2))
    return template[None] + shift + rng.normal(0, 8, size=(n, len(NAMES), 2))


def _codes(d):
    return [f.code for f in d.findings]


SP = np.full((12, 2), 0.1)
SIZES = np.tile([W, H], (12, 1))


def test_collapsed_predictor_is_diagnosed_as_collapse_toward_centre():
    gt = _gt()
    rng = np.random.default_rng(5)
    centre = np.array([(W - 1) / 2, (H - 1) / 2])
    pred = centre + 0.1 * (gt - gt.mean(axis=1, keepdims=True)) + rng.normal(0, 2, gt.shape)
    d = diagnose(pred, gt, SP, NAMES, image_sizes=SIZES, label="letterbox768")
    assert _codes(d)[0] == "collapse"
    assert d.constellation_ratio < 0.2
    assert "toward the image centre" in d.findings[0].observation
    assert "normalisation" in d.summary and "input size" in d.summary
    assert d.spread_ratio["x"] < 0.5 and d.spread_ratio["y"] < 0.5
    md = d.to_markdown()
    assert "collapse" in md and "letterbox768" in md


def test_collapse_elsewhere_is_not_called_centre():
    gt = _gt()
    pred = np.array([100.0, 100.0]) + 0.1 * (gt - gt.mean(axis=1, keepdims=True))
    d = diagnose(pred, gt, SP, NAMES, image_sizes=SIZES)
    assert _codes(d)[0] == "collapse" and "centre" not in d.findings[0].observation


def test_offset_predictor_is_diagnosed_with_dx_dy_in_px_and_mm():
    gt = _gt()
    rng = np.random.default_rng(2)
    pred = gt + np.array([30.0, -20.0]) + rng.normal(0, 3, gt.shape)
    sp = np.tile([0.1, 0.2], (12, 1))  # anisotropic: dy in mm uses 0.2
    d = diagnose(pred, gt, sp, NAMES)
    assert _codes(d) == ["offset"]
    assert d.offset_px[0] == pytest.approx(30.0, abs=2) and d.offset_px[1] == pytest.approx(-20.0, abs=2)
    assert d.offset_mm[0] == pytest.approx(3.0, abs=0.2) and d.offset_mm[1] == pytest.approx(-4.0, abs=0.4)
    assert 0.8 < d.constellation_ratio < 1.25
    assert all(r["bias_dx_mm"] == pytest.approx(3.0, abs=0.5) for r in d.per_landmark)
    assert "letterbox" in d.findings[0].likely_cause


def test_scaled_predictor_is_scale_not_collapse():
    gt = _gt()
    c = gt.mean(axis=1, keepdims=True)
    pred = c + 1.6 * (gt - c)
    d = diagnose(pred, gt, SP, NAMES)
    assert _codes(d)[0] == "scale" and d.constellation_ratio == pytest.approx(1.6, rel=1e-6)


def test_mirrored_predictor_is_flip():
    gt = _gt()
    pred = gt.copy()
    pred[..., 0] = (W - 1) - gt[..., 0]
    d = diagnose(pred, gt, SP, NAMES)
    assert "flip" in _codes(d)


def test_good_predictor_has_no_finding_and_confidence_is_reported():
    gt = _gt()
    rng = np.random.default_rng(3)
    noise = rng.normal(0, 6, gt.shape)
    pred = gt + noise
    err = np.hypot(noise[..., 0], noise[..., 1])
    conf = 1.0 / (1.0 + err)  # surer where closer
    d = diagnose(pred, gt, SP, NAMES, confidence=conf)
    assert [c for c in _codes(d) if c != "confidence"] == []
    assert "works" in d.summary
    assert d.confidence["spearman_vs_error"] == pytest.approx(-1.0)


def test_landmark_specific_failure_names_worst_landmarks():
    gt = _gt()
    rng = np.random.default_rng(4)
    pred = gt + rng.normal(0, 3, gt.shape)
    pred[:, 3] += rng.normal(0, 150, (12, 2))  # one landmark fails in random directions
    d = diagnose(pred, gt, SP, NAMES)
    assert "landmark_specific" in _codes(d)
    assert "lm3" in d.findings[-1].observation


def test_missing_values_and_errors():
    gt = _gt()
    pred = gt.copy()
    pred[0, :] = np.nan
    d = diagnose(pred, gt, SP, NAMES)
    assert d.n_images == 11 and d.n_points == 11 * len(NAMES)
    with pytest.raises(ValueError, match="no landmark"):
        diagnose(np.full_like(gt, np.nan), gt, SP, NAMES)
    with pytest.raises(ValueError, match="names"):
        diagnose(gt, gt, SP, NAMES[:3])


def test_leakage_ids_with_digits_do_not_match_by_number():
    """Aariz-style cuids contain digits; only purely numeric ids (ISBI NNN) compare by number."""
    from cephalo.evaluate.leakage import find_leakage

    prov = {"train_image_ids": {"aariz": ["c3a96d771qguw5im1gqk0xeb4", "ck0000000000000000000003"]}}
    res = find_leakage(
        ["cx0000000000000000000003", "c3a96d771qguw5im1gqk0xeb4"], ["aariz", "aariz"], ["test", "test"], prov
    )
    assert res["seen"] == ["c3a96d771qguw5im1gqk0xeb4"]
    isbi = find_leakage(
        ["151", "152"], ["isbi2015", "isbi2015"], ["test1", "test1"], {"train_image_ids": {"isbi2015": [151]}}
    )
    assert isbi["seen"] == ["151"]


def test_per_landmark_biases_of_2mm_are_named_in_the_summary():
    """A good model (MRE < 2.5 mm) whose two landmarks are biased by >= 2 mm: the summary names both."""
    gt = _gt()
    rng = np.random.default_rng(3)
    sp = np.full((12, 2), 0.1)
    pred = gt + rng.normal(0, 6, gt.shape)  # ~0.75 mm scatter
    pred[:, 2, 1] += 25.0  # lm2: +2.5 mm in y
    pred[:, 5, 0] -= 22.0  # lm5: -2.2 mm in x
    d = diagnose(pred, gt, sp, NAMES)
    assert d.mre_mm < 2.5
    assert "landmark_bias" in _codes(d)
    assert "lm2" in d.summary and "lm5" in d.summary and d.summary.startswith("The model works")
    assert "lm0" not in d.summary and "lm7" not in d.summary
    # 1.5 mm is below the 2 mm anatomical threshold: not named
    pred2 = gt + rng.normal(0, 6, gt.shape)
    pred2[:, 2, 1] += 15.0
    assert "landmark_bias" not in _codes(diagnose(pred2, gt, sp, NAMES))


def test_landmark_bias_beyond_a_global_offset():
    gt = _gt()
    rng = np.random.default_rng(4)
    sp = np.full((12, 2), 0.1)
    pred = gt + np.array([40.0, 0.0]) + rng.normal(0, 3, gt.shape)
    pred[:, 3, 1] += 30.0
    d = diagnose(pred, gt, sp, NAMES)
    assert _codes(d)[0] == "offset" and "landmark_bias" in _codes(d)
    bias = next(f for f in d.findings if f.code == "landmark_bias")
    assert "lm3" in bias.observation and "lm1" not in bias.observation and "lm3" in d.summary


def test_preprocessing_mismatch_is_named_in_plain_words():
    from cephalo.evaluate.diagnosis_report import preprocessing_words

    pp = {
        "used": {"normalisation": "raw", "decoder": "soft_argmax"},
        "expected": {"normalisation": "imagenet", "decoder": "dark"},
        "variant": "letterbox256",
    }
    w = preprocessing_words(pp)
    assert "raw grey values 0-255" in w and "ImageNet mean" in w and "soft-argmax" in w
    assert "variant letterbox256" in w and "imagenet normalisation" in w and "dark decoder" in w
    assert preprocessing_words({"used": pp["expected"], "expected": pp["expected"]}) == ""
    gt = _gt()
    centre = np.array([(W - 1) / 2, (H - 1) / 2])
    pred = centre + 0.05 * (gt - gt.mean(axis=1, keepdims=True))
    d = diagnose(pred, gt, SP, NAMES, image_sizes=SIZES, preprocessing=pp)
    assert _codes(d)[0] == "collapse" and "raw grey values 0-255" in d.summary and "Fix:" in d.summary


def test_find_mistakes_two_rounds_swap_then_mirror():
    from cephalo.evaluate.mistakes import find_mistakes

    gt = _gt()
    rng = np.random.default_rng(6)
    good = gt + rng.normal(0, 5, gt.shape)
    wrong = np.stack([W - 1 - good[..., 0], good[..., 1]], -1)[..., ::-1]  # mirrored, then axes swapped
    m = find_mistakes(wrong, gt, SP, SIZES, NAMES)
    # one composition of two mistakes, each named (the mirror as the axis flipped before the swap)
    assert [x.code for x in m] == ["swapped_axes", "mirror"] and m[1].details == {"axis": "x"}
    mre_good = float(np.nanmean(np.hypot(*((good - gt) * 0.1).transpose(2, 0, 1))))
    assert m[0].mre_after_mm == pytest.approx(mre_good, abs=1e-9)
    # two mistakes found one after the other: swapped axes, then a 40 px offset of every landmark
    two = good[..., ::-1] + 40.0
    m2 = find_mistakes(two, gt, SP, SIZES, NAMES)
    assert [x.code for x in m2] == ["swapped_axes", "residual_offset"]
    assert m2[-1].mre_after_mm == pytest.approx(mre_good, abs=0.05)


class _HeatmapModel:
    """Returns fixed [0, 1] Gaussian heatmaps (a heatmap-regression model that found every landmark)
    and records the input it was given."""

    def __init__(self, heatmaps):
        import torch

        self.hm = torch.as_tensor(heatmaps)
        self.i = 0
        self.inputs = []

    def to(self, device):
        return self

    def eval(self):
        return self

    def __call__(self, x):
        self.inputs.append(x.detach().clone())
        out = self.hm[self.i : self.i + x.shape[0]]
        self.i += x.shape[0]
        return out


def test_naive_run_soft_argmax_on_heatmaps_collapses_to_centre_and_names_the_mismatch(tmp_path):
    """The clinic's first run: 0-1 grey values without ImageNet mean/std, soft-argmax over raw outputs.
    A model that finds every landmark (its dark decoding is exact) then lands them all near the image
    centre, and the diagnosis says why in plain words."""
    from types import SimpleNamespace

    from cephalo import geometry
    from cephalo.codecs import create_codec
    from cephalo.evaluate.runner import EvalContext, EvalSettings, PredictOptions, evaluate_model

    W = H = 64
    codec_kw = {
        "name": "gaussian",
        "input_size": (W, H),
        "heatmap_size": (16, 16),
        "sigma": 1.5,
        "decoder": "dark",
        "convention": "pixel_centre",
    }
    codec = create_codec(**codec_kw)
    rng = np.random.default_rng(0)
    names = ["sella", "nasion", "orbitale", "porion", "menton", "gonion"]
    n = 6
    sizes = np.tile([300, 300], (n, 1))
    affines, orig, hms = [], [], []
    for w, h in sizes:
        a = geometry.letterbox_geometry((int(w), int(h)), W).affine()
        p = rng.uniform([0.15 * w, 0.15 * h], [0.85 * w, 0.85 * h], size=(len(names), 2))
        affines.append(a)
        orig.append(p)
        hms.append(codec.encode(geometry.apply_affine(a, p))[0])

    class V(SimpleNamespace):  # the attributes of cephalo.preprocess.Variant
        def __len__(self):
            return n

    v = V(
        images=np.full((n, H, W), 128, np.uint8),
        image_ids=[f"{i:03d}" for i in range(n)],
        splits=np.array(["test"] * n, dtype=object),
        devices=np.array(["d"] * n, dtype=object),
        datasets=np.array(["demo"] * n, dtype=object),
        spacing=np.full((n, 2), 0.8),
        affines=np.stack(affines),
        landmarks=None,
        landmarks_original=np.stack(orig),
        annotators={},
        landmark_names=names,
        orig_sizes=sizes,
        input_size=(W, H),
        normalisation={"name": "imagenet"},
        spec={},
        meta={"name": "lb64", "ground_truth": "mean"},
        path=tmp_path / "variant",
    )
    meta = SimpleNamespace(
        landmark_names=names,
        normalisation={"name": "imagenet"},
        codec=codec_kw,
        arch="t",
        input_size=[W, H],
        provenance={},
    )
    good = evaluate_model(
        _HeatmapModel(np.stack(hms)),
        meta,
        v,
        "test",
        tmp_path / "good",
        settings=EvalSettings(n_boot=20, n_worst=0),
        predict=PredictOptions(progress=False),
    )
    assert good["overall"]["mre_mm"] < 0.5 and good["preprocessing"]["used"]["decoder"] == "dark"
    m = _HeatmapModel(np.stack(hms))
    naive = evaluate_model(
        m,
        meta,
        v,
        "test",
        tmp_path / "naive",
        settings=EvalSettings(n_boot=20, n_worst=0),
        context=EvalContext(label="naive-lb64"),
        predict=PredictOptions(progress=False, normalisation="unit", decoder="soft_argmax"),
    )
    x = m.inputs[0]
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0  # 0-1, no ImageNet mean/std
    assert naive["overall"]["mre_mm"] > 20  # tens of mm on a real-size head
    assert naive["preprocessing"] == {
        "used": {"normalisation": "unit", "decoder": "soft_argmax"},
        "expected": {"normalisation": "imagenet", "decoder": "dark"},
        "variant": "lb64",
    }
    d = naive["diagnosis"]
    assert d["findings"][0]["code"] == "collapse" and "toward the image centre" in d["findings"][0]["observation"]
    assert "without the ImageNet mean/std" in d["summary"] and "soft-argmax" in d["summary"]
    assert "variant lb64" in d["summary"] and "Fix:" in d["summary"]
    pr = pd.read_parquet(tmp_path / "naive" / "predictions.parquet")
    assert pr["x_pred"].std() < 0.2 * pr["x_gt"].std()  # bunched
