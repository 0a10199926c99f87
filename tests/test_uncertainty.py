"""Conformal prediction radii (cephalo.uncertainty): rank rule, coverage on synthetic data, storage."""

from __future__ import annotations

import numpy as np
import pytest

from cephalo import uncertainty as U
from cephalo.config.schema import CalibrateConfig
from cephalo.errors import ConfigError


def test_conformal_rank_rule_hand_computed():
    e = np.arange(1, 10, dtype=float)[:, None]  # 9 calibration scores 1..9
    cal = U.calibrate(e, e, np.ones_like(e), ["sella"], coverages=(0.8, 0.9, 0.95), scale="constant")
    # rank ceil((n + 1) * level): 8 -> 8, 9 -> 9, 9.5 -> 10 > n -> infinite (None)
    assert cal["q_mm"]["0.8"] == [8.0] and cal["q_mm"]["0.9"] == [9.0] and cal["q_mm"]["0.95"] == [None]
    assert np.isinf(U.radii(cal, ["sella"], np.ones((1, 1)), 0.95, "mm")).all()
    assert np.isnan(U.radii(cal, ["nasion"], np.ones((1, 1)), 0.9, "mm")).all()  # not calibrated
    # NaN errors are excluded from the ranks
    e2 = np.concatenate([e, [[np.nan]]])
    assert U.calibrate(e2, e2, np.ones_like(e2), ["sella"], (0.9,), "constant")["n"] == [9]
    with pytest.raises(ConfigError):
        U.calibrate(e, e, np.ones_like(e), ["sella"], coverages=(1.0,))
    with pytest.raises(ConfigError):
        U.calibrate(e, e, np.ones_like(e), ["sella"], scale="bogus")


def test_pooled_quantile_weights_and_leave_one_out_hand_computed():
    """Two landmarks, four images; landmark B errs twice as much as A and has weight 2."""
    e = np.array([[1.0, 2.0], [2.0, 4.0], [3.0, 6.0], [4.0, 8.0]])
    one = np.ones_like(e)
    # weighted scores e / w: A 1,2,3,4 and B 1,2,3,4 -> pooled 1,1,2,2,3,3,4,4 (n = 8)
    cal = U.calibrate(e, e, one, ["A", "B"], (0.5, 0.75), "constant", pooling="pooled", weights=[1.0, 2.0])
    assert cal["q_mm"]["0.5"] == [3.0, 6.0]  # rank ceil(9 x 0.5) = 5 -> 3; radius q x w_k
    assert cal["q_mm"]["0.75"] == [4.0, 8.0]  # rank ceil(9 x 0.75) = 7 -> 4
    # leave one image out at 0.5 (rank ceil(7 x 0.5) = 4 of the 6 scores left): images 1 and 2 keep
    # radii (3, 6) and are covered (2 + 2 hits); images 3 and 4 get (2, 4) and are not (0 + 0): 4 / 8
    assert cal["loo_coverage"] == {"unit": "mm", "0.5": 0.5, "0.75": pytest.approx(6 / 8)}
    # unweighted: scores 1,2,2,3,4,4,6,8 -> rank 7 -> 6 for both landmarks
    assert U.calibrate(e, e, one, ["A", "B"], (0.75,), "constant", pooling="pooled")["q_mm"]["0.75"] == [6.0, 6.0]
    # per landmark: rank ceil(5 x 0.75) = 4 of 4 -> the largest error of each (weights cancel)
    for w in (None, [1.0, 2.0]):
        assert U.calibrate(e, e, one, ["A", "B"], (0.75,), "constant", pooling="landmark", weights=w)["q_mm"][
            "0.75"
        ] == [4.0, 8.0]
    with pytest.raises(ConfigError, match="pooling"):
        U.calibrate(e, e, one, ["A", "B"], pooling="global")
    with pytest.raises(ConfigError, match="weights"):
        U.calibrate(e, e, one, ["A", "B"], weights=[1.0, 0.0])


def test_difficulty_weights_hand_computed():
    e = np.array([[1.0, 1.0, 4.0, np.nan], [1.0, 3.0, 4.0, np.nan]])  # medians 1, 2, 4, none
    np.testing.assert_allclose(U.difficulty_weights(e), [0.5, 1.0, 2.0, 1.0])  # / median(1, 2, 4) = 2
    np.testing.assert_array_equal(U.difficulty_weights(np.zeros((3, 2))), [1.0, 1.0])  # no positive median


def test_pooling_with_training_weights_covers_each_landmark():
    """Landmarks of different difficulty (sigma 0.5..2 mm) and a small calibration split (15 images, as a
    clinic's validation split): per-landmark radii over-cover (the largest of 15 errors, expected
    15/16 = 93.75 %), pooled unweighted radii miss the hard landmarks, pooled radii weighted by the
    training split's per-landmark errors are near nominal overall and per landmark."""
    rng = np.random.default_rng(1)
    sig = np.array([0.5, 1.0, 1.5, 2.0])
    names = [f"l{i}" for i in range(sig.size)]

    def draw(n):
        return np.hypot(*rng.normal(0, 1, size=(2, n, sig.size))) * sig

    runs = {"landmark": [], "pooled": [], "weighted": []}
    for _ in range(200):  # average over calibration draws: the guarantee is in expectation
        e_cal, e_test, e_train = draw(15), draw(200), draw(60)
        one, t1 = np.ones_like(e_cal), np.ones_like(e_test)
        for key, kw in (
            ("landmark", {"pooling": "landmark"}),
            ("pooled", {"pooling": "pooled"}),
            ("weighted", {"pooling": "pooled", "weights": U.difficulty_weights(e_train)}),
        ):
            cal = U.calibrate(e_cal, e_cal, one, names, (0.9,), "constant", **kw)
            cov = U.coverage(cal, e_test, t1, names)["0.9"]
            runs[key].append([cov["per_landmark"][n] for n in names])
    mean = {k: np.mean(v, axis=0) for k, v in runs.items()}
    assert abs(mean["landmark"].mean() - 15 / 16) < 0.01
    assert mean["pooled"][-1] < 0.85 and mean["pooled"][0] > 0.97  # hard landmark under-, easy over-covered
    assert abs(mean["weighted"].mean() - 0.9) < 0.01 and np.all(np.abs(mean["weighted"] - 0.9) < 0.03)


@pytest.mark.parametrize("scale", ["inverse_confidence", "constant"])
def test_coverage_on_synthetic_heteroscedastic_errors(scale):
    rng = np.random.default_rng(0)
    k = 5

    def draw(n):
        conf = rng.uniform(0.2, 1.0, size=(n, k))
        sigma = 0.8 / conf  # low confidence, large error
        err = np.hypot(*rng.normal(0, 1, size=(2, n, k))) * sigma  # Rayleigh radial errors
        return err, conf

    e_cal, c_cal = draw(400)
    cal = U.calibrate(e_cal, e_cal * 10, c_cal, [f"l{i}" for i in range(k)], (0.9, 0.95), scale)
    e_test, c_test = draw(4000)
    cov = U.coverage(cal, e_test, c_test, [f"l{i}" for i in range(k)])
    for lv in ("0.9", "0.95"):
        assert abs(cov[lv]["overall"] - float(lv)) < 0.025
        assert all(abs(v - float(lv)) < 0.05 for v in cov[lv]["per_landmark"].values())
    if scale == "inverse_confidence":  # adaptive radii: low confidence -> wider
        r = U.radii(cal, ["l0"], np.array([[0.2], [1.0]]), 0.9)
        assert r[0, 0] == pytest.approx(5 * r[1, 0])
    # px table calibrated on errors x 10: radii x 10
    np.testing.assert_allclose(np.array(cal["q_px"]["0.9"]), 10 * np.array(cal["q_mm"]["0.9"]))


def test_calibration_round_trip_through_checkpoint(tmp_path):
    import torch

    from cephalo.models import ModelMeta

    names = ["sella", "nasion"]
    model = torch.nn.Conv2d(3, 2, 1)
    meta = ModelMeta(arch="test", landmark_names=names, input_size=(8, 8), heatmap_size=(2, 2))
    e = np.abs(np.random.default_rng(0).normal(size=(20, 2)))
    cal = U.calibrate(e, e, np.ones_like(e), names)
    ckpt = tmp_path / "m.pt"
    torch.save(
        {
            "format": "cephalo",
            "format_version": 1,
            "model_state_dict": model.state_dict(),
            "meta": meta.to_dict(),
            "calibration": cal,
        },
        ckpt,
    )
    assert U.read_calibration(ckpt) == cal
    torch.save(
        {"format": "cephalo", "format_version": 1, "model_state_dict": model.state_dict(), "meta": meta.to_dict()}, ckpt
    )
    assert U.read_calibration(ckpt) is None


def test_calibrate_model_on_a_variant_split_and_shape_model(tmp_path):
    """A stand-in model whose heatmaps put every landmark 3 input px right of the truth (64 px input, images
    4x larger, 0.1 mm/px): radial error 12 px = 1.2 mm everywhere, so every quantile is 1.2 mm."""
    from types import SimpleNamespace

    import torch

    from cephalo import geometry
    from cephalo.codecs import create_codec

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
    names = ["sella", "nasion", "menton", "gonion"]
    n = 8
    A = geometry.resize_affine((256, 256), (W, H))
    orig = rng.uniform(60, 200, size=(n, 4, 2))
    hms = np.stack([codec.encode(geometry.apply_affine(A, p) + [3.0, 0.0])[0] for p in orig])  # 3 input px

    class Stand:
        i = 0

        def to(self, d):
            return self

        def eval(self):
            return self

        def __call__(self, x):
            out = torch.as_tensor(hms[self.i : self.i + x.shape[0]])
            self.i += x.shape[0]
            return out

    variant = SimpleNamespace(
        images=np.zeros((n, H, W), np.uint8),
        image_ids=[f"{i:03d}" for i in range(n)],
        splits=np.array(["valid"] * 4 + ["train"] * 4, dtype=object),
        spacing=np.full((n, 2), 0.1),
        affines=np.stack([A] * n),
        landmarks_original=orig,
        landmark_names=names,
        orig_sizes=np.full((n, 2), 256),
        input_size=(W, H),
        normalisation={"name": "imagenet"},
        meta={"name": "v"},
        path=tmp_path,
    )
    meta = SimpleNamespace(landmark_names=names, normalisation={"name": "imagenet"}, codec=codec_kw)
    cal = U.calibrate_model(
        Stand(), meta, variant, "valid", settings=CalibrateConfig(coverages=[0.5], scale="constant"), progress=False
    )
    assert cal["n_images"] == 4 and cal["split"] == "valid"
    # the training split weights the landmarks: the same 1.2 mm error everywhere -> equal weights
    assert cal["difficulty_split"] == "train" and cal["difficulty_n_images"] == 4 and cal["pooling"] == "pooled"
    np.testing.assert_allclose(cal["weights"], 1.0, rtol=0.05)
    np.testing.assert_allclose(cal["q_mm"]["0.5"], 1.2, atol=0.05)  # 3 input px = 12 original px = 1.2 mm
    np.testing.assert_allclose(cal["q_px"]["0.5"], 12.0, atol=0.5)
    assert cal["shape_model"]["split"] == "train" and len(cal["shape_model"]["mean"]) == 4

    # a refiner bundle is calibrated on its refined predictions: one that undoes the 12 px shift
    # leaves no error, so every radius is 0 (the global model's own radii would be 1.2 mm)
    seen_rows = []

    def refine(coords, rows):
        seen_rows.append(list(rows))
        return coords - [12.0, 0.0]

    Stand.i = 0
    cal_r = U.calibrate_model(
        Stand(),
        meta,
        variant,
        "valid",
        settings=CalibrateConfig(coverages=[0.5], scale="constant", shape_split=None),
        progress=False,
        refine=refine,
    )
    assert seen_rows == [[0, 1, 2, 3, 4, 5, 6, 7]]  # the calibration split's variant rows, then the training split's
    np.testing.assert_allclose(cal_r["q_mm"]["0.5"], 0.0, atol=0.02)

    # weights learnt on the calibration images themselves would void the guarantee
    with pytest.raises(ConfigError, match="difficulty_split"):
        U.calibrate_model(
            Stand(),
            meta,
            variant,
            "valid",
            settings=CalibrateConfig(coverages=[0.5], difficulty_split="valid"),
            progress=False,
        )


def test_bundle_carries_its_own_calibration(tmp_path):
    """read_calibration: a bundle's own radii (not its global checkpoint's); none -> None."""
    from cephalo.refine import read_bundle, write_bundle

    g, r = tmp_path / "g.pt", tmp_path / "r.pt"
    g.write_bytes(b"global")
    r.write_bytes(b"refiner")
    e = np.linspace(0.1, 2.0, 20)[:, None]
    cal = U.calibrate(e, e * 10, np.ones_like(e), ["sella"], (0.9,), "constant")
    plain = write_bundle(tmp_path / "bundle.json", g, r, settings={"iterations": 2})
    assert U.read_calibration(plain) is None
    calibrated = write_bundle(tmp_path / "calibrated.json", g, r, settings=read_bundle(plain).settings, calibration=cal)
    b = read_bundle(calibrated)
    assert b.iterations == 2 and b.settings == {"iterations": 2}
    got = U.read_calibration(calibrated)
    assert got is not None and got["q_mm"]["0.9"] == cal["q_mm"]["0.9"]


def test_evaluation_reports_coverage_per_landmark_and_overall(tmp_path):
    from cephalo.evaluate.runner import EvalContext, EvalData, EvalSettings, evaluate_predictions

    rng = np.random.default_rng(0)
    n, names = 200, ["sella", "nasion"]
    gt = rng.uniform(100, 900, size=(n, 2, 2))
    pred = gt + rng.normal(0, 10, size=gt.shape)  # 0.1 mm/px: ~1 mm errors
    e = np.hypot(*(pred - gt).transpose(2, 0, 1)) * 0.1
    cal = U.calibrate(e[:100], e[:100] * 10, np.ones((100, 2)), names, (0.9, 0.95), "constant")
    res = evaluate_predictions(
        EvalData(
            pred[100:],
            gt[100:],
            np.full((100, 2), 0.1),
            image_ids=[str(i) for i in range(100)],
            names=names,
            confidence=np.ones((100, 2)),
        ),
        tmp_path / "ev",
        EvalSettings(n_boot=20, make_plots=False),
        EvalContext(calibration=cal),
    )
    cov = res["uncertainty"]["coverage"]
    assert set(cov) == {"0.9", "0.95"} and set(cov["0.9"]["per_landmark"]) == set(names)
    assert 0.8 < cov["0.9"]["overall"] < 0.98 and cov["0.95"]["overall"] >= cov["0.9"]["overall"]
    assert cov["0.9"]["overall"] == pytest.approx((e[100:] <= np.array(cal["q_mm"]["0.9"])).mean())
    # per landmark also in per_landmark.csv, and the calibration's own leave-one-out check in metrics
    import pandas as pd

    table = pd.read_csv(tmp_path / "ev" / "per_landmark.csv").set_index("landmark")
    for lm in names:
        assert table.loc[lm, "coverage_0.9"] == pytest.approx(
            (e[100:, names.index(lm)] <= cal["q_mm"]["0.9"][names.index(lm)]).mean()
        )
    assert res["uncertainty"]["pooling"] == "pooled" and res["uncertainty"]["calibration_loo_coverage"]["unit"] == "mm"


def test_unbounded_radii_claim_no_coverage():
    """9 calibration images cannot give a 95 % radius: coverage says so instead of counting every error a hit."""
    e = np.arange(1, 10, dtype=float)[:, None]
    cal = U.calibrate(e, e, np.ones_like(e), ["sella"], coverages=(0.8, 0.95), scale="constant")
    test = np.array([[2.0], [7.9], [8.0], [8.5], [100.0]])
    cov = U.coverage(cal, test, np.ones_like(test), ["sella"])
    assert cov["0.8"]["overall"] == pytest.approx(3 / 5) and cov["0.8"]["n"] == 5  # radius 8: 2, 7.9, 8 inside
    assert cov["0.8"]["n_unbounded"] == 0 and cov["0.8"]["mean_radius"] == pytest.approx(8.0)
    assert np.isnan(cov["0.95"]["overall"]) and cov["0.95"]["n"] == 0 and cov["0.95"]["n_unbounded"] == 5
    assert np.isnan(cov["0.95"]["per_landmark"]["sella"]) and np.isnan(cov["0.95"]["mean_radius"])
