"""Zero-shot diagnosis: collapsed, offset, scaled, flipped and good predictors are told apart."""

from __future__ import annotations

import numpy as np
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
    res = find_leakage(["cx0000000000000000000003", "c3a96d771qguw5im1gqk0xeb4"], ["aariz", "aariz"],
                       ["test", "test"], prov)
    assert res["seen"] == ["c3a96d771qguw5im1gqk0xeb4"]
    isbi = find_leakage(["151", "152"], ["isbi2015", "isbi2015"], ["test1", "test1"],
                        {"train_image_ids": {"isbi2015": [151]}})
    assert isbi["seen"] == ["151"]
