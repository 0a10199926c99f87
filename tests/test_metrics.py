"""Metrics in mm on hand-computed arrays (cephalo.evaluate.metrics)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cephalo.evaluate import metrics as m


def test_radial_error_anisotropic_spacing():
    # dx = 3 px at 0.1 mm/px, dy = 4 px at 0.2 mm/px -> 0.3, 0.8 mm -> sqrt(0.09 + 0.64)
    pred = np.array([[[13.0, 24.0]]])
    gt = np.array([[[10.0, 20.0]]])
    e = m.radial_errors_mm(pred, gt, np.array([[0.1, 0.2]]))
    assert e.shape == (1, 1)
    assert e[0, 0] == pytest.approx(math.sqrt(0.73), abs=1e-12)
    # swapping the axes of the spacing changes the answer: spacing is per axis
    e2 = m.radial_errors_mm(pred, gt, np.array([[0.2, 0.1]]))
    assert e2[0, 0] == pytest.approx(math.sqrt(0.36 + 0.16), abs=1e-12)


def test_two_images_with_different_spacings_applied_once():
    gt = np.zeros((2, 2, 2))
    pred = np.zeros((2, 2, 2))
    pred[0, 0] = [10, 0]  # 10 px * 0.1 = 1.0 mm
    pred[0, 1] = [0, 30]  # 30 px * 0.1 = 3.0 mm
    pred[1, 0] = [10, 0]  # 10 px * 0.2 = 2.0 mm
    pred[1, 1] = [6, 8]  # 10 px * 0.2 = 2.0 mm
    sp = np.array([[0.1, 0.1], [0.2, 0.2]])
    e = m.radial_errors_mm(pred, gt, sp)
    np.testing.assert_allclose(e, [[1.0, 3.0], [2.0, 2.0]], atol=1e-12)
    s = m.summarise(e)
    assert s["mre_mm"] == pytest.approx(2.0)
    assert s["sd_mm"] == pytest.approx(math.sqrt(0.5))  # deviations -1, 1, 0, 0 -> var 2/4
    assert s["median_mm"] == pytest.approx(2.0)
    assert s["sdr"]["2.0"] == pytest.approx(0.75)
    assert s["sdr"]["2.5"] == pytest.approx(0.75)
    assert s["sdr"]["3.0"] == pytest.approx(1.0)
    assert s["sdr"]["4.0"] == pytest.approx(1.0)
    # p90 by linear interpolation over sorted [1, 2, 2, 3]: rank 2.7 -> 2 + 0.7 * 1
    assert s["p90_mm"] == pytest.approx(2.7)
    assert s["n"] == 4 and s["n_missing"] == 0


@pytest.mark.parametrize(
    "gt_xy, pred_xy, spacing",
    [
        ((100.0, 50.0), (120.0, 50.0), 0.1),  # 20 px x 0.1 mm/px
        ((100.0, 50.0), (112.0, 66.0), 0.1),  # (12, 16) px -> 20 px
        ((12.2, 7.0), (32.2, 7.0), 0.1),  # float: (32.2 - 12.2) * 0.1 = 2.0000000000000004
        ((0.6, 3.0), (0.6 + 2.0 / 0.127, 3.0), 0.127),  # also 2.0000000000000004 in float
    ],
)
def test_exactly_2mm_counts_at_2mm_despite_float_roundoff(gt_xy, pred_xy, spacing):
    pred = np.array([[pred_xy]])
    gt = np.array([[gt_xy]])
    e = m.radial_errors_mm(pred, gt, np.array([[spacing, spacing]]))
    assert e[0, 0] == pytest.approx(2.0, abs=1e-9)
    assert m.sdr(e, 2.0) == 1.0
    assert m.summarise(e)["sdr"]["2.0"] == 1.0
    assert m.bootstrap_ci(e, n_boot=5)["sdr"]["2.0"] == [1.0, 1.0]
    # a real excess (1 micrometre) does not count
    assert m.sdr(e + 1e-3, 2.0) == 0.0


def test_roundoff_case_really_exceeds_two_in_float():
    # the reason for the tolerance: without it this 2.00 mm error would be missed
    e = m.radial_errors_mm(np.array([[[32.2, 7.0]]]), np.array([[[12.2, 7.0]]]), np.array([0.1, 0.1]))
    assert e[0, 0] > 2.0


def test_missing_landmarks_excluded_and_counted():
    gt = np.array([[[0.0, 0.0], [np.nan, np.nan], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]])
    pred = np.array([[[10.0, 0.0], [5.0, 5.0], [0.0, 30.0]], [[np.nan, 1.0], [0.0, 20.0], [0.0, 0.0]]])
    e = m.radial_errors_mm(pred, gt, np.array([0.1, 0.1]))
    assert np.isnan(e[0, 1]) and np.isnan(e[1, 0])
    s = m.summarise(e)
    assert s["n"] == 4 and s["n_missing"] == 2
    assert s["mre_mm"] == pytest.approx((1.0 + 3.0 + 2.0 + 0.0) / 4)
    rows = m.summarise_per_landmark(e, ["a", "b", "c"])
    assert [r["n_missing"] for r in rows] == [1, 1, 0]
    assert rows[0]["mre_mm"] == pytest.approx(1.0)
    assert rows[2]["mre_mm"] == pytest.approx(1.5)
    np.testing.assert_allclose(m.per_image_mre(e), [2.0, 1.0])


def test_all_missing_gives_nan_not_error():
    e = np.full((2, 3), np.nan)
    s = m.summarise(e)
    assert s["n"] == 0 and s["n_missing"] == 6 and math.isnan(s["mre_mm"])
    ci = m.bootstrap_ci(e, n_boot=10)
    assert all(math.isnan(x) for x in ci["mre_mm"])


def test_bad_spacing_and_shapes_raise():
    z = np.zeros((1, 2, 2))
    with pytest.raises(ValueError, match="spacing"):
        m.radial_errors_mm(z, z, np.array([[0.1, np.nan]]))
    with pytest.raises(ValueError, match="spacing"):
        m.radial_errors_mm(z, z, np.array([[0.1, 0.0]]))
    with pytest.raises(ValueError, match="shape"):
        m.radial_errors_mm(z, np.zeros((1, 3, 2)), np.array([[0.1, 0.1]]))


def test_groups_per_device():
    e = np.array([[1.0, 1.0], [3.0, 3.0], [2.0, np.nan]])
    g = m.summarise_groups(e, ["devA", "devB", "devA"])
    assert list(g) == ["devA", "devB"]
    assert g["devA"]["n_images"] == 2 and g["devA"]["mre_mm"] == pytest.approx(4.0 / 3)
    assert g["devB"]["mre_mm"] == pytest.approx(3.0)


def test_bootstrap_ci_brackets_estimate_and_is_reproducible():
    rng = np.random.default_rng(1)
    e = rng.gamma(2.0, 1.0, size=(40, 5))
    ci = m.bootstrap_ci(e, n_boot=500, seed=3)
    mre = float(e.mean())
    assert ci["mre_mm"][0] < mre < ci["mre_mm"][1]
    assert ci["mre_mm"] == m.bootstrap_ci(e, n_boot=500, seed=3)["mre_mm"]
    # width shrinks like 1/sqrt(N): 4x the images -> about half the width
    e4 = np.concatenate([e] * 4)
    w1 = np.diff(ci["mre_mm"])[0]
    w4 = np.diff(m.bootstrap_ci(e4, n_boot=500, seed=3)["mre_mm"])[0]
    assert 0.35 < w4 / w1 < 0.65
    lo, hi = ci["sdr"]["2.0"]
    assert lo <= m.sdr(e, 2.0) <= hi
    # constant errors: a degenerate interval at the value
    c = m.bootstrap_ci(np.full((5, 2), 1.5), n_boot=50)
    assert c["mre_mm"] == [1.5, 1.5] and c["sdr"]["2.0"] == [1.0, 1.0]


def test_paired_wilcoxon_hand_computed():
    # per-image MRE differences a - b = -1, -2, -3, -4, -5, +0.5: ranks of |d| = 2,3,4,5,6 and 1
    b = np.array([[2.0], [3.0], [4.0], [5.0], [6.0], [1.0]])
    a = b + np.array([[-1.0], [-2.0], [-3.0], [-4.0], [-5.0], [0.5]])
    r = m.paired_wilcoxon(a, b)
    assert r["n_images"] == 6 and r["n_a_better"] == 5 and r["n_b_better"] == 1
    assert r["mean_diff_mm"] == pytest.approx(-14.5 / 6)
    assert r["statistic"] == pytest.approx(1.0)  # min(W+, W-) = rank of the +0.5 difference
    assert r["p_value"] == pytest.approx(2 * 2 / 64)  # exact: P(W <= 1) = 2/64, two-sided


def test_paired_wilcoxon_matches_by_image_id_and_shared_landmarks():
    a = np.array([[1.0, np.nan], [2.0, 2.0], [9.0, 9.0]])
    b = np.array([[3.0, 3.0], [1.0, 5.0]])
    r = m.paired_wilcoxon(a, b, ["x", "y", "z"], ["y", "x"])
    assert r["image_ids"] == ["x", "y"]
    # x: a uses only landmark 0 (1.0) vs b's 1.0 -> 0; y: 2.0 vs 3.0 -> -1
    np.testing.assert_allclose(r["diff_mm"], [0.0, -1.0])
    with pytest.raises(ValueError):
        m.paired_wilcoxon(a, b)
