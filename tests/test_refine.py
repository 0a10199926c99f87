"""Coarse-to-fine refinement: window affines, training windows, the refiner beating the global model's resolution."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from cephalo import geometry as G
from cephalo.errors import CheckpointError, ConfigError, DataError
from cephalo.refine import (
    RefineConfig,
    TTAConfig,
    cut_windows,
    jitter_from_mre,
    resample_to_spacing,
)
from cephalo.refine import synthetic as S


# ------------------------------------------------------------------ windows (no model)
@pytest.mark.parametrize("spacing", [(0.1, 0.1), (0.1, 0.125), (0.139, 0.139)])
def test_window_affine_round_trip_and_marker_lands_on_its_coordinate(spacing):
    pts = np.array([[40.3, 52.7], [101.85, 120.4], [3.0, 150.2]])  # the last one near the border
    yy, xx = np.mgrid[0:160, 0:160]
    img = sum(np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 6.0**2)) for x, y in pts[:2])
    img = np.round(img * 60000).astype(np.uint16)  # Gaussian dots (s.d. 6 px), 16-bit
    res, m_res = resample_to_spacing(img, spacing, 0.3)
    assert res.shape == (round(160 * spacing[1] / 0.3), round(160 * spacing[0] / 0.3))
    centres = pts + [[1.3, -2.2], [0.0, 0.4], [2.0, 2.0]]  # coarse guesses
    wins, affs = cut_windows(res, m_res, centres, 24)
    assert wins.shape == (3, 24, 24) and wins.dtype == np.uint16
    # forward + inverse: within 1e-3 original px (the requirement), for points all over
    q = np.random.default_rng(0).uniform(-20, 180, (50, 2))
    for a in affs:
        assert np.abs(G.apply_affine(G.invert(a), G.apply_affine(a, q)) - q).max() < 1e-3
        # per-axis scale = the image's own spacing / window resolution
        np.testing.assert_allclose(np.diag(a[:, :2]), [res.shape[1] / 160, res.shape[0] / 160])
        assert G.is_axis_aligned(a)
    # the coarse centre lies within half a window px of the window centre
    c_win = G.apply_affine(affs, centres[:, None, :])[:, 0]
    assert np.abs(c_win - 11.5).max() <= 0.5 + 1e-9
    # the marker's intensity centroid in the window is where the affine puts it
    for k in range(2):
        p = G.apply_affine(affs[k], pts[k : k + 1])[0]
        x0, y0 = int(round(p[0])), int(round(p[1]))
        sub = wins[k, y0 - 7 : y0 + 8, x0 - 7 : x0 + 8].astype(float)
        yy, xx = np.mgrid[y0 - 7 : y0 + 8, x0 - 7 : x0 + 8]
        cen = np.array([(sub * xx).sum() / sub.sum(), (sub * yy).sum() / sub.sum()])
        assert np.linalg.norm(cen - p) < 0.05


def test_jitter_from_mre_is_the_rayleigh_scale():
    # hand value: MRE 1.2533 mm <-> s.d. 1 mm per axis; and by simulation
    assert jitter_from_mre(math.sqrt(math.pi / 2)) == pytest.approx(1.0)
    e = np.random.default_rng(0).normal(0, 0.7, (200000, 2))
    assert jitter_from_mre(np.linalg.norm(e, axis=1).mean()) == pytest.approx(0.7, rel=0.01)


def test_config_validation_and_tta_passes():
    cfg = RefineConfig.from_dict({"window": 48, "tta": {"scales": [0.95, 1.05], "shifts_px": [0, 2], "gammas": [1.0]}})
    # 2 scales x (no shift + 4 moves of 2 px) x 1 gamma
    s = cfg.tta.settings()
    assert len(s) == 10 and (0.95, 2.0, 0.0, 1.0) in s and (1.05, 0.0, -2.0, 1.0) in s
    assert cfg.crop_spec() == {"refine": {"spacing_mm": 0.3, "window": [48, 48], "fallback_spacing_mm": None}}
    assert TTAConfig().settings() == [(1.0, 0.0, 0.0, 1.0)]
    for bad, key in [
        ({"window": 30}, "window"),
        ({"spacing_mm": 0}, "spacing_mm"),
        ({"jitter_mm": "x"}, "jitter_mm"),
        ({"bogus": 1}, "bogus"),
        ({"tta": {"gammas": [0]}}, "gammas"),
        ({"crops_per_landmark": 0}, "crops"),
    ]:
        with pytest.raises(ConfigError, match=key):
            RefineConfig.from_dict(bad)


@pytest.fixture(scope="module")
def synth_index(tmp_path_factory) -> Path:
    return S.make_index(tmp_path_factory.mktemp("refine_synth"), n_train=24, n_valid=6, n_test=10)


def test_crop_set_windows_labels_and_splits(synth_index):
    from cephalo.refine import build_crop_set
    from cephalo.refine.dataset import _read_original_images

    cfg = RefineConfig.from_dict({"spacing_mm": 0.2, "window": 32, "crops_per_landmark": 3, "max_jitter_mm": 1.0})
    idx = _read_original_images(synth_index, None)
    imgs, names, gt = idx[0], idx[1], idx[2]
    train = np.flatnonzero(imgs["split"] == "train")[:5]
    val = np.flatnonzero(imgs["split"] == "valid")[:2]
    cs = build_crop_set(synth_index, cfg, 0.8, train_rows=train, val_rows=val, seed=3, progress=False, index=idx)
    K = len(names)
    assert len(cs) == (5 + 2) * K * 3 and cs.images.shape[1:] == (32, 32) and cs.input_size == (32, 32)
    assert list(cs.splits).count("valid") == 2 * K * 3
    # no test image is ever read; splits follow the source image
    test_ids = set(imgs["image_id"][imgs["split"] == "test"])
    assert not set(cs.source_ids) & test_ids
    for sid in set(cs.source_ids):
        assert len(set(cs.splits[cs.source_ids == sid])) == 1
    row_of = {str(i): r for r, i in enumerate(imgs["image_id"])}
    for n in range(len(cs)):
        g = gt[row_of[cs.source_ids[n]]]
        k = cs.crop_landmark[n]
        # window labels = every landmark mapped through the window's affine; original = own landmark only
        np.testing.assert_allclose(cs.landmarks[n], G.apply_affine(cs.affines[n], g))
        assert np.isfinite(cs.landmarks_original[n, k]).all()
        assert np.isnan(np.delete(cs.landmarks_original[n], k, axis=0)).all()
        # jitter: the own landmark is off the window centre by at most max_jitter_mm (+ half a px of rounding)
        off_mm = (cs.landmarks[n, k] - 15.5) * 0.2
        assert np.linalg.norm(off_mm) <= 1.0 + 0.2 * math.sqrt(0.5) + 1e-9
    offs = (cs.landmarks[np.arange(len(cs)), cs.crop_landmark] - 15.5) * 0.2
    assert 0.4 < offs.std() < 1.0  # jittered, not centred
    # deterministic
    cs2 = build_crop_set(synth_index, cfg, 0.8, train_rows=train, val_rows=val, seed=3, progress=False, index=idx)
    np.testing.assert_array_equal(cs.images, cs2.images)


def test_missing_spacing_without_fallback_is_a_data_error():
    from cephalo.refine import image_spacing

    assert image_spacing((np.nan, np.nan), 0.1) == (0.1, 0.1)
    with pytest.raises(DataError, match="fallback_spacing_mm"):
        image_spacing((np.nan, 0.1), None, "x.png")


# ------------------------------------------------------------------ trained global model + refiner
@pytest.fixture(scope="module")
def trained(tmp_path_factory, torch_one_thread):
    """A global model at a 32-px letterbox (0.5 mm/px input, 2 mm heatmap px) and a refiner at 0.2 mm/px."""
    root = tmp_path_factory.mktemp("refine_trained")
    index = S.make_index(root, n_train=32, n_valid=8, n_test=12)
    return {"root": root, "index": index, **S.train_pair(root, index)}


def _global_test_predictions(t):
    from cephalo.inference import Predictor, predict_variant
    from cephalo.models import load_model
    from cephalo.preprocess import load_variant

    v = load_variant(t["variant"])
    model, meta = load_model(t["global"])
    rows = v.select("test")
    pred = predict_variant(
        Predictor.from_meta(model, meta, normalisation=v.normalisation, device="cpu"), v, rows, progress=False
    ).coords
    return v, rows, pred


@pytest.mark.slow
def test_refiner_recovers_subpixel_positions_the_global_resolution_cannot(trained):
    from cephalo.imageio import read_image
    from cephalo.refine import load_refiner, refine_predictions

    v, rows, coarse = _global_test_predictions(trained)
    gt = v.landmarks_original[rows]
    ref = load_refiner(trained["refiner"])
    assert ref.window == 32 and ref.spacing_mm == 0.2
    refined = np.stack(
        [
            refine_predictions(
                ref, read_image(v.table["image_path"].iloc[r]), coarse[j], v.landmark_names, v.spacing[r]
            ).coords
            for j, r in enumerate(rows)
        ]
    )
    e_global = np.linalg.norm(coarse - gt, axis=-1) * S.SPACING
    e_ref = np.linalg.norm(refined - gt, axis=-1) * S.SPACING
    # global input px = 0.5 mm, heatmap px = 2 mm; the refiner works at 0.2 mm/px
    assert e_ref.mean() < 0.4 * e_global.mean(), (e_ref.mean(), e_global.mean())
    assert e_ref.mean() < 0.25  # below half a global input pixel
    # paired: better on most landmarks
    assert (e_ref < e_global).mean() > 0.7
    # test-time augmentation runs through the same path and stays as accurate
    tta = TTAConfig.from_dict({"scales": [0.95, 1.05], "shifts_px": [0, 2], "gammas": [0.9, 1.1]})
    r0 = rows[0]
    res = refine_predictions(
        ref, read_image(v.table["image_path"].iloc[r0]), coarse[0], v.landmark_names, v.spacing[r0], tta=tta
    )
    assert res.refined.all() and (res.spread_px > 0).all()
    assert (np.linalg.norm(res.coords - gt[0], axis=-1) * S.SPACING).max() < 0.5


@pytest.mark.slow
def test_bundle_pairs_the_checkpoints_and_detects_a_changed_one(trained, tmp_path):
    import json
    import shutil

    from cephalo.refine import read_bundle, write_bundle

    b = read_bundle(trained["bundle"])
    assert b.global_path.resolve() == trained["global"].resolve()
    assert b.refiner_path.resolve() == trained["refiner"].resolve()
    assert b.iterations == 1 and b.tta.settings() == [(1.0, 0.0, 0.0, 1.0)]
    # relative paths: the bundle folder can move with its checkpoints
    d = json.loads(trained["bundle"].read_text())
    assert not Path(d["global"]).is_absolute() and d["refiner"] == "best.pt"
    g2, r2 = tmp_path / "g.pt", tmp_path / "r.pt"
    shutil.copy(trained["global"], g2)
    shutil.copy(trained["refiner"], r2)
    write_bundle(tmp_path / "bundle.json", g2, r2)
    g2.write_bytes(g2.read_bytes() + b"x")
    with pytest.raises(CheckpointError, match="changed"):
        read_bundle(tmp_path / "bundle.json")
    (tmp_path / "other.json").write_text('{"format": "nope"}')
    with pytest.raises(CheckpointError, match="not a cephalo bundle"):
        read_bundle(tmp_path / "other.json")


@pytest.mark.slow
def test_bundle_command_takes_the_inference_settings_from_params(trained, tmp_path):
    """`cephalo bundle` pairs two checkpoints with refine.iterations / tta of params, nothing else of refine:."""
    import yaml
    from click.testing import CliRunner

    from cephalo.cli import main
    from cephalo.refine import read_bundle

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"refine": {"iterations": 2, "window": 48, "tta": {"scales": [0.9, 1.1]}}}))
    out = tmp_path / "models" / "bundle.json"
    out.parent.mkdir()
    r = CliRunner().invoke(
        main,
        [
            "bundle",
            "--global",
            str(trained["global"]),
            "--refiner",
            str(trained["refiner"]),
            "--out",
            str(out),
            "--params",
            str(params),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "2 round(s), 2 pass(es) per round" in r.output
    b = read_bundle(out)
    assert b.iterations == 2 and b.batch_size == 64 and [t[0] for t in b.tta.settings()] == [0.9, 1.1]
    assert set(b.settings) == {"iterations", "batch_size", "tta"}  # the window is the refiner's own, not params'
    r = CliRunner().invoke(
        main,
        [
            "bundle",
            "--global",
            str(tmp_path / "nope.pt"),
            "--refiner",
            str(trained["refiner"]),
            "--out",
            str(tmp_path / "b2.json"),
            "--params",
            str(params),
        ],
    )
    said = r.output + str(r.exception)
    assert r.exit_code != 0 and "global checkpoint not found" in said and "nope.pt" in said
    assert not (tmp_path / "b2.json").exists()


def test_refine_params_split_into_training_and_bundle_settings():
    """The engines' params of train-refiner and bundle (workflow/stages.py) are RefineConfig's two halves."""
    from cephalo.config.schema import RefineConfig
    from helpers import REPO, load_script

    st = load_script(REPO / "workflow" / "stages.py", "cephalo_workflow_stages_refine")
    assert [k.split(".", 1)[1] for k in st.REFINE_INFERENCE] == list(RefineConfig.INFERENCE_KEYS)
    assert {k.split(".", 1)[1] for k in st.REFINE_TRAINING} == set(RefineConfig.model_fields) - set(
        RefineConfig.INFERENCE_KEYS
    )
    r = RefineConfig.from_dict({"iterations": 3, "window": 32})
    assert r.inference_settings()["iterations"] == 3 and "iterations" not in r.training_settings()
    assert r.training_settings()["window"] == 32 and "window" not in r.inference_settings()


@pytest.mark.slow
def test_evaluate_and_predict_through_the_bundle_equal_global_plus_refiner_by_hand(trained, tmp_path):
    import pandas as pd
    import yaml
    from click.testing import CliRunner

    from cephalo.cli import main
    from cephalo.imageio import read_image
    from cephalo.refine import load_refiner, refine_predictions

    v, rows, coarse = _global_test_predictions(trained)
    ref = load_refiner(trained["refiner"])
    images = [read_image(v.table["image_path"].iloc[r]) for r in rows]
    by_hand = np.stack(
        [
            refine_predictions(ref, images[j], coarse[j], v.landmark_names, v.spacing[r]).coords
            for j, r in enumerate(rows)
        ]
    )
    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "evaluate": {"n_boot": 10, "device": "cpu", "n_worst": 0},
                "tracking": {"enabled": False},
                "predict": {"device": "cpu"},
            }
        )
    )
    # cephalo evaluate --model bundle.json
    out = tmp_path / "eval"
    r = CliRunner().invoke(
        main,
        [
            "evaluate",
            "--model",
            str(trained["bundle"]),
            "--data",
            str(trained["variant"]),
            "--split",
            "test",
            "--out",
            str(out),
            "--stage",
            "refine",
            "--params",
            str(params),
        ],
    )
    assert r.exit_code == 0, r.output
    got = pd.read_parquet(out / "predictions.parquet")
    ids = [v.image_ids[r] for r in rows]
    for j, i in enumerate(ids):
        g = got[got["image_id"] == i].set_index("landmark_name").loc[list(v.landmark_names)]
        np.testing.assert_allclose(g[["x_pred", "y_pred"]].to_numpy(), by_hand[j], atol=1e-6)
    import json

    info = json.loads((out / "metrics.json").read_text())
    assert info["refine"]["refiner_sha256"] and info["refine"]["global"].endswith("best.pt")
    # cephalo predict --model bundle.json on the original files
    files = [str(v.table["image_path"].iloc[r]) for r in rows[:3]]
    pout = tmp_path / "pred"
    r = CliRunner().invoke(
        main,
        [
            "predict",
            "--model",
            str(trained["bundle"]),
            *files,
            "--out",
            str(pout),
            "--spacing",
            "0.1",
            "--no-overlays",
            "--params",
            str(params),
        ],
    )
    assert r.exit_code == 0, r.output
    recs = {r["file"]: r for r in json.loads((pout / "predictions.json").read_text())["images"]}
    for j, f in enumerate(files):
        lm = {d["name"]: (d["x"], d["y"]) for d in recs[f]["landmarks"]}
        np.testing.assert_allclose([lm[n] for n in v.landmark_names], by_hand[j], atol=1e-4)
    # and a plain checkpoint still gives the global model's positions
    r = CliRunner().invoke(
        main,
        [
            "predict",
            "--model",
            str(trained["global"]),
            *files[:1],
            "--out",
            str(tmp_path / "plain"),
            "--spacing",
            "0.1",
            "--no-overlays",
            "--params",
            str(params),
        ],
    )
    assert r.exit_code == 0, r.output
    rec = json.loads((tmp_path / "plain" / "predictions.json").read_text())["images"][0]
    lm = {d["name"]: (d["x"], d["y"]) for d in rec["landmarks"]}
    np.testing.assert_allclose([lm[n] for n in v.landmark_names], coarse[0], atol=1e-4)


@pytest.mark.slow
def test_calibrate_a_bundle_on_its_refined_predictions(trained, tmp_path):
    """`cephalo calibrate --model bundle.json` writes a bundle JSON whose radii come from the refined
    validation errors (not the global model's), and `evaluate` reports their coverage on test."""
    import json

    import yaml
    from click.testing import CliRunner

    from cephalo.cli import main
    from cephalo.refine import read_bundle

    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "evaluate": {"n_boot": 10, "device": "cpu", "n_worst": 0},
                "tracking": {"enabled": False},
                "calibrate": {"device": "cpu", "coverages": [0.5], "scale": "constant"},
            }
        )
    )
    run = CliRunner().invoke
    common = ["--data", str(trained["variant"]), "--split", "valid", "--no-progress", "--params", str(params)]
    r = run(main, ["calibrate", "--model", str(trained["bundle"]), "--out", str(tmp_path / "cal.pt"), *common])
    assert r.exit_code == 1 and "--out must be a .json file" in f"{r.output}{r.exception}"
    r = run(main, ["calibrate", "--model", str(trained["bundle"]), "--out", str(tmp_path / "cal.json"), *common])
    assert r.exit_code == 0, r.output
    r = run(main, ["calibrate", "--model", str(trained["global"]), "--out", str(tmp_path / "global.pt"), *common])
    assert r.exit_code == 0, r.output
    b = read_bundle(tmp_path / "cal.json")
    assert b.calibration is not None and b.calibration["n_images"] == 8 and b.calibration["split"] == "valid"
    original = read_bundle(trained["bundle"])  # the same two checkpoints, referenced relative to the new file
    assert b.global_path.resolve() == original.global_path.resolve()
    assert b.refiner_path.resolve() == original.refiner_path.resolve()
    from cephalo.uncertainty import read_calibration

    q_refined = np.asarray(b.calibration["q_mm"]["0.5"], dtype=float)
    q_global = np.asarray(read_calibration(tmp_path / "global.pt")["q_mm"]["0.5"], dtype=float)
    # the calibrated checkpoint names the weights it came from (MLflow links its evaluation to their training)
    from cephalo.io import file_sha256
    from cephalo.models import load_model
    from cephalo.provenance import weights_chain

    assert weights_chain(load_model(tmp_path / "global.pt")[1].provenance)[0] == file_sha256(trained["global"])
    assert not np.allclose(q_refined, q_global)  # refined errors, not the coarse ones
    out = tmp_path / "eval"
    r = run(
        main,
        [
            "evaluate",
            "--model",
            str(tmp_path / "cal.json"),
            "--data",
            str(trained["variant"]),
            "--split",
            "test",
            "--out",
            str(out),
            "--stage",
            "refine",
            "--params",
            str(params),
        ],
    )
    assert r.exit_code == 0, r.output
    cov = json.loads((out / "metrics.json").read_text())["uncertainty"]["coverage"]["0.5"]
    assert 0.0 <= cov["overall"] <= 1.0 and cov["mean_radius"] == pytest.approx(float(np.mean(q_refined)), rel=1e-6)
