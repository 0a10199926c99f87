"""Clinic outputs that never overclaim (issue #24): one test (or more) per point, on real images where
the point is about real images (``../shared/data``; skipped with a reason where absent)."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from cephalo import measurements as M
from cephalo.assess import assess
from cephalo.cli import main
from cephalo.errors import ConfigError, DataError
from cephalo.flags import GEOMETRY_FLAGS, image_flags, noise_level
from cephalo.imageio import SPACING_RANGE_MM, check_spacing, parse_spacing, read_input_image
from cephalo.landmarks import ISBI19, landmark_symbols
from cephalo.models import ModelMeta, create_model, load_model, save_checkpoint
from cephalo.predict import (
    CSV_COLUMNS,
    IMAGE_COLUMNS,
    MEASUREMENT_COLUMNS,
    BatchSettings,
    ImagePrediction,
    predict_images,
    write_predictions,
)

NAMES = list(ISBI19.names)
SIZE = 96
STRETCH = {"steps": [{"stretch": {"size": SIZE}}]}


@pytest.fixture(scope="module")
def ckpt19(tmp_path_factory) -> Path:
    """A tiny untrained 19-landmark (ISBI order) checkpoint: every ISBI measurement is computed."""
    torch.manual_seed(0)
    model = create_model("hrnet_w18", len(NAMES), num_modules=(1, 1, 1), num_blocks=1)
    meta = ModelMeta(
        arch="hrnet_w18",
        landmark_names=NAMES,
        input_size=(SIZE, SIZE),
        heatmap_size=(SIZE // 4, SIZE // 4),
        variant=STRETCH,
        normalisation={"name": "imagenet"},
        codec={
            "name": "gaussian",
            "input_size": [SIZE, SIZE],
            "heatmap_size": [SIZE // 4, SIZE // 4],
            "sigma": 2.0,
            "decoder": "dark",
            "convention": "pixel_centre",
        },
    )
    return save_checkpoint(tmp_path_factory.mktemp("ckpt19") / "tiny19.pt", model, meta)


def _isbi(shared: Path, n: str = "001") -> tuple[Path, np.ndarray]:
    """An ISBI 2015 image and its 19 mean-annotation points (original px)."""
    sub = "TrainingData" if int(n) <= 150 else "Test1Data"
    img = shared / "isbi2015" / "RawImage" / sub / f"{n}.jpg"
    pts = np.loadtxt(shared / "isbi2015" / "AnnotationsByMD" / "400_mean" / f"{n}.txt", delimiter=",")[:19]
    return img, pts.astype(np.float64)


def _pred(path: Path, coords: np.ndarray, w: int, h: int, spacing=(0.1, 0.1)) -> ImagePrediction:
    k = len(coords)
    return ImagePrediction(
        path=path,
        width=w,
        height=h,
        spacing=spacing,
        spacing_source="given",
        bit_depth=8,
        landmark_names=NAMES,
        symbols=landmark_symbols(NAMES),
        coords=np.asarray(coords, float),
        confidence=np.ones(k),
        degenerate=~np.isfinite(coords).all(axis=1),
        affine=np.eye(2, 3),
    )


# ------------------------------------------------------------------ 1. the gate


def test_gate_noise_image_gets_no_class_real_image_does(shared_data, tmp_path):
    """Point 1: the same (ground-truth) landmarks on a real radiograph give classes; on a noise image of the
    same size, whose flags say it is no radiograph, no class and no status, and every output says so."""
    path, gt = _isbi(shared_data)
    real = read_input_image(path).image
    noise = np.random.default_rng(0).integers(0, 256, real.shape, dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "noise.png"), noise)
    a_real = assess(_pred(path, gt, 1935, 2400), real)
    assert a_real["review"]["image"] == []
    assert all(m["reliable"] and m["status"] is not None for m in a_real["measurements"].values())
    assert a_real["measurements"]["SNB"]["class"] in (1, 2, 3)
    a_noise = assess(_pred(tmp_path / "noise.png", gt, 1935, 2400), noise)
    assert "no_structure" in a_noise["review"]["image"]
    for k, m in a_noise["measurements"].items():
        assert m["reliable"] is False and m["class"] is None and m["status"] is None, k
        assert m["unreliable_because"] == ["image flagged: no_structure"]
        assert m["value"] == pytest.approx(a_real["measurements"][k]["value"])  # kept for audit, marked


def test_gate_landmark_not_found_withholds_only_its_measurements(shared_data):
    """Point 1 (real image, failed prediction): gonion predicted outside the image -> ODI, FHI, FMA (which
    read gonion) are withheld, SNA (which does not) is reported."""
    path, gt = _isbi(shared_data)
    c = gt.copy()
    c[NAMES.index("gonion")] = (-400.0, 3000.0)
    a = assess(_pred(path, c, 1935, 2400), read_input_image(path).image)
    meas = a["measurements"]
    for k in ("ODI", "FHI", "FMA"):
        assert meas[k]["reliable"] is False and meas[k]["class"] is None
        assert "landmark not found: gonion (outside)" in meas[k]["unreliable_because"]
    assert meas["SNA"]["reliable"] and meas["SNA"]["class"] is not None


def test_gate_in_every_csv_report_and_overlay(ckpt19, tmp_path, monkeypatch):
    """Point 1: a noise image through ``cephalo predict``: a flag column in every per-image CSV, measurements
    withheld in JSON, CSV, report; the overlay header says so."""
    import cephalo.evaluate.plots as plots

    drawn = {}
    real_overlay = plots.prediction_overlay

    def spy(*a, **kw):
        drawn["notes"] = list(kw.get("notes", []))
        return real_overlay(*a, **kw)

    monkeypatch.setattr(plots, "prediction_overlay", spy)
    rng = np.random.default_rng(1)
    cv2.imwrite(str(tmp_path / "noise.png"), rng.integers(0, 256, (600, 500), dtype=np.uint8))
    out = tmp_path / "out"
    r = CliRunner().invoke(
        main,
        [
            "predict",
            "--model",
            str(ckpt19),
            str(tmp_path / "noise.png"),
            "--out",
            str(out),
            "--spacing",
            "0.1",
            "--device",
            "cpu",
        ],
    )
    assert r.exit_code == 0, (r.output, r.exception)
    doc = json.loads((out / "predictions.json").read_text())
    (rec,) = doc["images"]
    assert "no_structure" in rec["review"]["image"]
    assert rec["measurements"] and all(m["class"] is None and not m["reliable"] for m in rec["measurements"].values())
    for name in ("predictions.csv", "images.csv", "measurements.csv"):
        df = pd.read_csv(out / name, keep_default_na=False, dtype=str)
        flag_col = "flagged" if name == "images.csv" else "image_flagged"
        assert set(df[flag_col]) == {"true"}, name
    ms = pd.read_csv(out / "measurements.csv", keep_default_na=False, dtype=str)
    assert set(ms["reliable"]) == {"false"} and set(ms["class"]) == {""} and set(ms["status"]) == {""}
    assert all("no_structure" in w for w in ms["unreliable_because"])
    im = pd.read_csv(out / "images.csv", keep_default_na=False, dtype=str)
    assert list(im["measurements_reliable"]) == ["false"]
    html = (out / "report.html").read_text()
    assert "Measurements withheld" in html and "not reported: image flagged: no_structure" in html
    assert "prognathic" not in html and "retrognathic" not in html
    assert drawn["notes"][0] == "MEASUREMENTS NOT RELIABLE: image flagged (no_structure)"
    assert (out / "overlays" / "noise.png").is_file()


# ------------------------------------------------------------------ 2. norms with their reference


def test_norms_name_their_reference_and_steiner_anb_2_is_normal():
    """Point 2: the normal range of SNA/SNB/ANB is Steiner's (not the ISBI class-1 band), said in the
    output; an ANB of 2 deg is normal after Steiner and ISBI class 3, both with their names."""
    for k, (lo, hi) in {"SNA": (80, 84), "SNB": (78, 82), "ANB": (0, 4)}.items():
        m = M.MEASUREMENTS[k]
        assert m.normal == (lo, hi) and m.norm_reference == "Steiner 1953" and "Steiner" in m.normal_source
    for k in ("ODI", "APDI", "FHI", "FMA", "MW"):
        assert M.MEASUREMENTS[k].norm_reference == "ISBI 2015 class 1"
    assert M.MEASUREMENTS["FH_MP"].norm_reference.startswith("Downs 1948")
    anb = M.MEASUREMENTS["ANB"]
    assert anb.status(2.0) == "normal" and M.classify("ANB", np.array([2.0])).tolist() == [3]
    assert [anb.status(v) for v in (-0.01, 0.0, 4.0, 4.01, math.nan)] == ["below", "normal", "normal", "above", None]


@pytest.mark.parametrize(
    "key,lo,hi,below,above",
    [
        ("ANB", 3.2, 5.7, 3, 2),
        ("SNB", 74.6, 78.7, 2, 3),
        ("SNA", 79.4, 83.2, 3, 2),
        ("ODI", 68.4, 80.5, 3, 2),
        ("APDI", 77.6, 85.2, 2, 3),
        ("FHI", 0.65, 0.75, 3, 2),
        ("FMA", 26.8, 31.4, 3, 2),
    ],
)
def test_isbi_classes_at_every_band_edge(key, lo, hi, below, above):
    """Point 2: ISBI 2015 classes (Wang et al. 2016, Table 2): the class-1 band is closed at both ends."""
    eps = 1e-9
    v = np.array([lo - eps, lo, (lo + hi) / 2, hi, hi + eps])
    assert M.classify(key, v).tolist() == [below, 1, 1, 1, above]


def test_mw_classes_as_the_challenge_tool():
    """Point 2: MW class 2 is exactly 0 mm; 0 < MW < 2 is class 3 (as the challenge's tool), so accuracy
    is comparable with published results."""
    eps = 1e-9
    v = np.array([-1.0, -eps, 0.0, eps, 1.0, 2 - eps, 2.0, 4.5, 4.5 + eps])
    assert M.classify("MW", v).tolist() == [3, 3, 2, 3, 3, 3, 1, 1, 4]


def test_isbi_fma_is_not_folded_above_90():
    """Point 2: S->N along +x, Go->Gn pointing back and down at 120 deg: the tool's 120, not the acute 60."""
    names = NAMES
    c = np.full((19, 2), np.nan)
    c[names.index("sella")] = (0, 0)
    c[names.index("nasion")] = (100, 0)
    c[names.index("gonion")] = (0, 0)
    c[names.index("gnathion")] = (-50, 50 * math.sqrt(3))  # image y down: 60 deg below -x
    v = M.compute(c, names, np.array([0.1, 0.1]), ["FMA"])["FMA"][0]
    assert v == pytest.approx(120.0)


# ------------------------------------------------------------------ 3. bit depth


def test_12bit_in_16bit_tiff_real_image_is_rescaled_and_said(shared_data, ckpt19, tmp_path):
    """Point 3: a real ISBI image stored as 12-bit values in a 16-bit TIFF is read as 12-bit, rescaled to
    full range (not near-black), predicts as the 8-bit original, and the output says what was done."""
    path, _ = _isbi(shared_data, "151")
    img8 = read_input_image(path).image
    v12 = np.round(img8.astype(np.float64) * 4095 / 255).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "d12.tif"), v12)
    inp = read_input_image(tmp_path / "d12.tif")
    assert inp.bit_depth == 12 and inp.container_bits == 16 and "12-bit values" in inp.bit_depth_note
    assert inp.image.max() == 65535  # white is white
    np.testing.assert_allclose(inp.image / 65535.0, img8 / 255.0, atol=1e-3)
    model, meta = load_model(ckpt19)
    p8, p12 = predict_images(model, meta, [path, tmp_path / "d12.tif"], batch=BatchSettings(progress=False))
    np.testing.assert_allclose(p12.coords, p8.coords, atol=0.5)
    np.testing.assert_allclose(p12.confidence, p8.confidence, rtol=0.05)
    rec = p12.to_dict()
    assert rec["bit_depth"] == 12 and rec["container_bits"] == 16 and "rescaled" in rec["bit_depth_note"]


def test_full_16bit_and_8bit_untouched(tmp_path):
    img = (np.random.default_rng(0).random((40, 50)) * 65535).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "a.tif"), img)
    inp = read_input_image(tmp_path / "a.tif")
    assert inp.bit_depth == 16 and inp.bit_depth_note is None and np.array_equal(inp.image, img)


# ------------------------------------------------------------------ 4. spacing


def test_spacing_range_is_index_s_and_per_axis():
    """Point 4: one home for the plausible range; per-axis X,Y; micrometres refused with a hint."""
    from cephalo.index import core

    assert core.SPACING_RANGE_MM is SPACING_RANGE_MM == (0.02, 1.0)
    assert parse_spacing("0.1") == (0.1, 0.1) and parse_spacing("0.1,0.12") == (0.1, 0.12)
    assert check_spacing(0.02) == (0.02, 0.02) and check_spacing(1.0) == (1.0, 1.0)
    with pytest.raises(ConfigError, match=r"--spacing 100 mm/px is outside .*0.02-1 mm/px.*micrometres"):
        parse_spacing("100", error=ConfigError)
    for bad in ("0.0199", "1.01", "0.1,0.2,0.3", "a,b", "-0.1", "nan"):
        with pytest.raises(ConfigError):
            parse_spacing(bad, error=ConfigError)


def test_cli_spacing_100_one_line_error_nothing_written(ckpt19, tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((300, 300), np.uint8))
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "cephalo",
            "predict",
            "--model",
            str(ckpt19),
            str(tmp_path / "a.png"),
            "--out",
            str(tmp_path / "o"),
            "--spacing",
            "100",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        "cephalo: error: --spacing 100 mm/px is outside the plausible range 0.02-1 mm/px of a cephalogram "
        "(micrometres? 100 um = 0.1 mm)"
    ]
    assert not (tmp_path / "o").exists()


def test_cli_per_axis_spacing_reaches_every_output(ckpt19, tmp_path):
    cv2.imwrite(
        str(tmp_path / "a.png"),
        cv2.GaussianBlur(np.random.default_rng(0).integers(0, 256, (320, 300)).astype(np.uint8), (0, 0), 6),
    )
    r = CliRunner().invoke(
        main,
        [
            "predict",
            "--model",
            str(ckpt19),
            str(tmp_path / "a.png"),
            "--out",
            str(tmp_path / "o"),
            "--spacing",
            "0.1,0.2",
            "--device",
            "cpu",
            "--no-overlays",
        ],
    )
    assert r.exit_code == 0, (r.output, r.exception)
    im = pd.read_csv(tmp_path / "o" / "images.csv")
    assert (im.loc[0, "spacing_x_mm"], im.loc[0, "spacing_y_mm"]) == (0.1, 0.2)
    df = pd.read_csv(tmp_path / "o" / "predictions.csv")
    np.testing.assert_allclose(df["y_mm"], df["y_px"] * 0.2, atol=2e-3)
    np.testing.assert_allclose(df["x_mm"], df["x_px"] * 0.1, atol=2e-3)


# ------------------------------------------------------------------ 5. no radius without spacing


def _calibrated(ckpt: Path, tmp_path: Path) -> Path:
    from cephalo.models import load_checkpoint
    from cephalo.uncertainty import calibrate

    model, meta, _ = load_checkpoint(ckpt)
    e = np.tile(np.linspace(0.5, 3.0, 19)[None], (20, 1))
    cal = calibrate(e, e * 10, np.ones_like(e), NAMES, (0.9,), "constant", pooling="landmark")
    cal.update(split="valid", n_images=20, variant="synthetic")
    return save_checkpoint(tmp_path / "cal.pt", model, meta, extra={"calibration": cal})


def test_no_spacing_no_radius_anywhere(ckpt19, tmp_path):
    """Point 5: with a calibration but no spacing, no radius is written or drawn (the calibration's pixel
    table is another resolution's); with a spacing, radii in mm and px per axis."""
    cal = _calibrated(ckpt19, tmp_path)
    img = cv2.GaussianBlur(np.random.default_rng(2).integers(0, 256, (400, 360)).astype(np.uint8), (0, 0), 6)
    cv2.imwrite(str(tmp_path / "a.png"), img)
    model, meta = load_model(cal)
    from cephalo.models import load_checkpoint

    calib = load_checkpoint(cal)[2]["calibration"]
    (p,) = predict_images(model, meta, [tmp_path / "a.png"], batch=BatchSettings(progress=False))
    a = assess(p, img, calib)
    assert a["radius_mm"] is None and a["radius_px"] is None
    r = CliRunner().invoke(
        main, ["predict", "--model", str(cal), str(tmp_path / "a.png"), "--out", str(tmp_path / "o"), "--device", "cpu"]
    )
    assert r.exit_code == 0, (r.output, r.exception)
    df = pd.read_csv(tmp_path / "o" / "predictions.csv")
    assert df[["radius_mm", "radius_x_px", "radius_y_px", "x_mm", "y_mm"]].isna().all().all()
    html = (tmp_path / "o" / "report.html").read_text()
    assert "no prediction radii" in html
    r = CliRunner().invoke(
        main,
        [
            "predict",
            "--model",
            str(cal),
            str(tmp_path / "a.png"),
            "--out",
            str(tmp_path / "o2"),
            "--device",
            "cpu",
            "--spacing",
            "0.1,0.2",
        ],
    )
    df = pd.read_csv(tmp_path / "o2" / "predictions.csv")
    np.testing.assert_allclose(df["radius_x_px"], df["radius_mm"] / 0.1, atol=0.11)
    np.testing.assert_allclose(df["radius_y_px"], df["radius_mm"] / 0.2, atol=0.11)


# ------------------------------------------------------------------ 6. columns and ids


def test_csv_columns_units_and_text_ids(shared_data, tmp_path):
    """Point 6: pixel and mm columns named with their unit; ``001`` stays ``001`` (quoted text)."""
    path, gt = _isbi(shared_data)
    p = _pred(path, gt, 1935, 2400)
    p.image_id = "001"
    write_predictions([p], tmp_path / "o", overlays=False, report=False, progress=False)
    df = pd.read_csv(tmp_path / "o" / "predictions.csv", dtype={"image_id": str})
    assert list(df.columns) == CSV_COLUMNS and {"x_px", "y_px", "x_mm", "y_mm"} <= set(df.columns)
    np.testing.assert_allclose(df["x_px"], gt[:, 0], atol=0.005)
    np.testing.assert_allclose(df["x_mm"], gt[:, 0] * 0.1, atol=0.0005)
    for name, cols in (
        ("predictions.csv", CSV_COLUMNS),
        ("images.csv", IMAGE_COLUMNS),
        ("measurements.csv", MEASUREMENT_COLUMNS),
    ):
        text = (tmp_path / "o" / name).read_text()
        rows = list(csv.DictReader(text.splitlines()))
        assert list(rows[0]) == cols and {r["image_id"] for r in rows} == {"001"}, name
        assert '"001"' in text


# ------------------------------------------------------------------ 8. noise flag


@pytest.mark.parametrize("sd,flagged", [(0, False), (1, False), (3, True), (5, True), (10, True), (25, True)])
def test_noise_flag_on_real_radiographs(shared_data, sd, flagged):
    """Point 8: real ISBI (source) and Hamedan (another device) radiographs with added Gaussian noise of sd
    grey levels: clean ones pass (threshold calibrated on training images), noisy ones are flagged."""
    rng = np.random.default_rng(sd)
    for f in (shared_data / "isbi2015/RawImage/TrainingData/010.jpg", shared_data / "hamedan/pictures/005.png"):
        img = read_input_image(f).image
        noisy = np.clip(img + rng.normal(0, sd, img.shape), 0, 255).astype(np.uint8) if sd else img
        fl, vals = image_flags(noisy)
        assert ("noisy" in fl) is flagged, (f.name, sd, vals)
        assert "no_structure" not in fl  # noise is not mistaken for a non-radiograph
        if sd >= 3:
            assert vals["noise"] == pytest.approx(sd / 255, rel=0.25)
    assert "noisy" in GEOMETRY_FLAGS


def test_noise_level_hand_computed():
    """A constant image and a linear ramp have zero noise (the Laplacian difference cancels them); a
    checkerboard of +-a has |I * N| = 16a everywhere: sigma = sqrt(pi/2) * 16a / 6."""
    assert noise_level(np.full((20, 20), 100, np.uint8)) == 0.0
    y, x = np.mgrid[0:20, 0:20]
    assert noise_level((3 * x + 2 * y).astype(np.uint8)) == pytest.approx(0.0, abs=1e-9)
    a = 10
    board = (128 + a * (-1) ** (x + y)).astype(np.uint8)
    assert noise_level(board) == pytest.approx(math.sqrt(math.pi / 2) * 16 * a / 6 / 255, rel=1e-6)


# ------------------------------------------------------------------ 10. fail fast, skipped in report, overlays


def test_unreadable_input_fails_before_the_model_loads(tmp_path):
    """Point 10: the only input is unreadable: the error names it (the checkpoint, garbage here, is never
    opened) within a few seconds, without torch being imported."""
    bad = tmp_path / "scan.png"
    bad.write_text("hello")
    fake = tmp_path / "model.pt"
    fake.write_bytes(b"\x00" * 10)
    t = time.perf_counter()
    r = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "cephalo",
            "predict",
            "--model",
            str(fake),
            str(bad),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
    )
    assert time.perf_counter() - t < 20
    assert r.returncode == 1
    lines = [ln for ln in r.stderr.splitlines() if not ln.startswith("import time:")]
    imported = {ln.rsplit("|", 1)[-1].strip() for ln in r.stderr.splitlines() if ln.startswith("import time:")}
    assert "torch" not in imported and "cv2" in imported
    assert len(lines) == 1 and lines[0].startswith("cephalo: error:")
    assert "scan.png" in lines[0] and "a text file" in lines[0] and "model.pt" not in lines[0]
    assert not (tmp_path / "o").exists()


def test_skipped_inputs_listed_in_report_and_overlays_scale(ckpt19, tmp_path):
    """Point 10: --skip-bad lists the unreadable inputs in report.html; a tiny image and a very wide one get
    enlarged overlays (long side >= 900 px; a 20:1 strip up to the 3200 px cap)."""
    d = tmp_path / "in"
    d.mkdir()
    rng = np.random.default_rng(3)
    cv2.imwrite(str(d / "tiny.png"), cv2.GaussianBlur(rng.integers(0, 256, (90, 80)).astype(np.uint8), (0, 0), 3))
    cv2.imwrite(str(d / "wide.png"), cv2.GaussianBlur(rng.integers(0, 256, (60, 1200)).astype(np.uint8), (0, 0), 3))
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    out = tmp_path / "o"
    r = CliRunner().invoke(
        main,
        [
            "predict",
            "--model",
            str(ckpt19),
            str(d),
            "--out",
            str(out),
            "--skip-bad",
            "--spacing",
            "0.1",
            "--device",
            "cpu",
        ],
    )
    assert isinstance(r.exception, DataError) and "skipped" in str(r.exception)
    html = (out / "report.html").read_text()
    assert "Not predicted: 1 input(s) could not be read" in html and "broken.jpg" in html
    tiny = cv2.imread(str(out / "overlays" / "tiny.png"))
    wide = cv2.imread(str(out / "overlays" / "wide.png"))
    assert tiny.shape[1] >= 900 * 80 / 90 - 1 and tiny.shape[0] >= 900
    assert wide.shape[1] == 3200 and wide.shape[0] >= 160


def test_labels_do_not_overlap():
    from cephalo.evaluate.plots import _place_labels

    pts = np.array([[100, 100], [104, 102], [98, 97], [300, 300], [102, 99]], float)
    offs = _place_labels(pts, ["Sn", "N", "Or", "Po", "UIT"], 14.0, (600, 600))
    boxes = []
    for (x, y), t, (dx, dy) in zip(pts, ["Sn", "N", "Or", "Po", "UIT"], offs, strict=True):
        tw, th = 0.62 * 14 * len(t), 1.1 * 14
        x0 = x + dx if dx >= 0 else x + dx - tw
        y0 = y + dy - th if dy <= 0 else y + dy
        boxes.append((x0, y0, x0 + tw, y0 + th))
    for i in range(len(boxes)):
        for j in range(i):
            a, b = boxes[i], boxes[j]
            assert min(a[2], b[2]) <= max(a[0], b[0]) or min(a[3], b[3]) <= max(a[1], b[1]), (i, j)


# ------------------------------------------------------------------ 9. LabelMe points outside the image


def test_labelme_outside_points_round_trip_predict_edit_index(shared_data, tmp_path):
    """Point 9: predictions with a landmark outside a real Hamedan image are exported clipped and marked;
    the clinician moves another point; ``cephalo index`` (labelme adapter + build_index) indexes the folder,
    reports the outside landmark per image and keeps it missing; a hand-made file with a point outside
    its image is reported the same way instead of refusing the folder."""
    from cephalo.datasets import create_adapter
    from cephalo.datasets.labelme.adapter import OUTSIDE_FLAG
    from cephalo.index import build_index

    img = shared_data / "hamedan" / "pictures" / "001.png"
    w, h = 1340, 1671
    base = np.array([[300 + 40 * k, 400 + 50 * k] for k in range(19)], dtype=np.float64)
    c = base.copy()
    c[NAMES.index("gonion")] = (-35.0, 1800.0)  # outside (left and below)
    p = _pred(img, c, w, h, spacing=(0.127, 0.127))
    p.image_id = "001"
    lm_dir = tmp_path / "corr" / "clinician"
    write_predictions([p], tmp_path / "o", overlays=False, report=False, progress=False, labelme_dir=lm_dir)
    doc = json.loads((lm_dir / "001.json").read_text())
    go = next(s for s in doc["shapes"] if s["label"] == "gonion")
    assert go["points"] == [[0.0, h - 1.0]] and go["flags"] == {OUTSIDE_FLAG: True}
    assert "(-35.0, 1800.0)" in go["description"]
    sella = next(s for s in doc["shapes"] if s["label"] == "sella")
    sella["points"][0][0] += 5.0  # the clinician's correction
    (lm_dir / "001.json").write_text(json.dumps(doc))
    # a second, hand-made annotation (another tool) with a point outside its image, not flagged
    other = json.loads(json.dumps(doc))
    other["imagePath"] = str(shared_data / "hamedan" / "pictures" / "002.png")
    for s in other["shapes"]:
        s["flags"], s["description"] = {}, ""
    next(s for s in other["shapes"] if s["label"] == "menton")["points"] = [[700.0, 1690.0]]
    (lm_dir / "002.json").write_text(json.dumps(other))
    opts = {"annotators": {"clinician": "clinician"}, "spacing_mm": 0.127, "default_split": "test"}
    res = create_adapter("labelme").parse(tmp_path / "corr", dataset="clinic", **opts)
    assert not res.exclusions
    probs = {pr.image_id: pr.problem for pr in res.problems}
    assert "Go (predicted outside, clipped" in probs["001"] and "Me at (700.0, 1690.0)" in probs["002"]
    df = build_index(res, tmp_path / "corr", progress=False)
    assert sorted(df["image_id"].unique()) == ["001", "002"]
    row = df[(df["image_id"] == "001") & (df["landmark_name"] == "gonion")].iloc[0]
    assert not row["visible"] and np.isnan(row["x"])
    s_row = df[(df["image_id"] == "001") & (df["landmark_name"] == "sella")].iloc[0]
    assert s_row["x"] == pytest.approx(base[0, 0] + 5.0) and s_row["visible"]
    assert not df[(df["image_id"] == "002") & (df["landmark_name"] == "menton")].iloc[0]["visible"]


# ------------------------------------------------------------------ 11. like with like


def _sna_case(t_deg: float) -> np.ndarray:
    """19 ISBI landmarks NaN except S, N, A with SNA = t_deg (A on a 100 px arm from N)."""
    c = np.full((19, 2), np.nan)
    t = math.radians(t_deg)
    c[NAMES.index("sella")] = (0.0, 0.0)
    c[NAMES.index("nasion")] = (100.0, 0.0)
    c[NAMES.index("a_point")] = (100.0 - 100 * math.cos(t), 100 * math.sin(t))
    return c


def test_measurement_table_model_vs_each_annotator_beside_annotator_vs_annotator(tmp_path):
    """Point 11: with two annotators the table scores the model against each annotator (like with like) beside
    annotator vs annotator. SNA: annotators 80/82 and 78/79 deg, model 83 and 80 deg on two images:
    vs each = (3 + 1 + 2 + 1) / 4 = 1.75; annotator vs annotator = (2 + 1) / 2 = 1.5."""
    from cephalo.evaluate.measurement_errors import CSV_COLUMNS as MCOLS
    from cephalo.evaluate.measurement_errors import measurement_errors, write_outputs

    a = np.stack([_sna_case(80), _sna_case(78)])
    b = np.stack([_sna_case(82), _sna_case(79)])
    pred = np.stack([_sna_case(83), _sna_case(80)])
    gt = (a + b) / 2
    sp = np.full((2, 2), 0.1)
    blk = measurement_errors(pred, gt, sp, NAMES, annotators={"a": a, "b": b}, keys=["SNA"], n_boot=50)
    r = blk["per_measurement"]["SNA"]
    assert r["vs_each_mae"] == pytest.approx(1.75, abs=1e-9)
    assert r["human_mae"] == pytest.approx(1.5, abs=1e-9)
    write_outputs(blk, tmp_path, make_plot=False)
    df = pd.read_csv(tmp_path / "measurements.csv")
    assert list(df.columns) == MCOLS
    cols = list(df.columns)
    assert cols.index("vs_each_mae") + 3 == cols.index("human_mae")  # side by side (with its CI)
    assert df.loc[0, "vs_each_mae"] == pytest.approx(1.75) and df.loc[0, "human_mae"] == pytest.approx(1.5)


# ------------------------------------------------------------------ 7. which guarantee holds


def test_pooled_radii_hold_marginally_mondrian_per_landmark():
    """Point 7: one landmark much harder than its weight says: the pooled quantile covers ~90 % over all
    landmarks but that landmark far less (reported per landmark beside the pooled figure); ``auto``
    switches to per-landmark (Mondrian) quantiles where the split is large enough, and every landmark is
    then covered; with too few images it stays pooled and says the guarantee is marginal."""
    from cephalo.uncertainty import calibrate, mondrian_min_images

    rng = np.random.default_rng(0)
    n, k = 40, 10
    e = np.abs(rng.normal(1.0, 0.3, (n, k)))
    e[:, 3] *= 3.0  # "gonion": three times the others
    conf = np.ones_like(e)
    pooled = calibrate(e, e, conf, NAMES[:k], (0.9,), "constant", pooling="pooled")
    per = pooled["loo_coverage_per_landmark"]["0.9"]
    assert pooled["guarantee"] == "marginal" and pooled["loo_coverage"]["0.9"] == pytest.approx(0.9, abs=0.04)
    assert per[3] < 0.5 and min(per[:3] + per[4:]) >= 0.95
    auto = calibrate(e, e, conf, NAMES[:k], (0.9,), "constant", pooling="auto")
    assert auto["pooling"] == "landmark" and auto["guarantee"] == "per_landmark"
    assert min(auto["loo_coverage_per_landmark"]["0.9"]) >= 0.8
    assert mondrian_min_images([0.9]) == 9 and mondrian_min_images([0.9, 0.95]) == 19
    small = calibrate(e[:8], e[:8], conf[:8], NAMES[:k], (0.9,), "constant", pooling="auto")
    assert small["pooling"] == "pooled" and small["pooling_requested"] == "auto"


def test_report_states_the_guarantee_and_per_landmark_coverage(ckpt19, tmp_path):
    from cephalo.models import load_checkpoint
    from cephalo.uncertainty import calibrate

    model, meta, _ = load_checkpoint(ckpt19)
    rng = np.random.default_rng(1)
    e = np.abs(rng.normal(1.0, 0.3, (30, 19)))
    e[:, NAMES.index("orbitale")] *= 3
    cal = calibrate(e, e * 10, np.ones_like(e), NAMES, (0.9,), "constant", pooling="pooled")
    cal.update(split="valid", n_images=30, variant="synthetic")
    ck = save_checkpoint(tmp_path / "cal.pt", model, meta, extra={"calibration": cal})
    cv2.imwrite(str(tmp_path / "a.png"), cv2.GaussianBlur(rng.integers(0, 256, (400, 360)).astype(np.uint8), (0, 0), 6))
    r = CliRunner().invoke(
        main,
        [
            "predict",
            "--model",
            str(ck),
            str(tmp_path / "a.png"),
            "--out",
            str(tmp_path / "o"),
            "--device",
            "cpu",
            "--spacing",
            "0.1",
            "--no-overlays",
        ],
    )
    assert r.exit_code == 0, (r.output, r.exception)
    html = (tmp_path / "o" / "report.html").read_text()
    assert "marginal over landmarks" in html and "per landmark lowest: orbitale" in html
    doc = json.loads((tmp_path / "o" / "predictions.json").read_text())
    assert doc["calibration"]["guarantee"] == "marginal"


def test_interval_crossing_a_band_edge_is_not_settled():
    """Point 1/2 (no overclaim): ANB 3.0 +/- 0.5 deg reaches ISBI classes 3 and 1 (edge 3.2) but stays normal
    after Steiner (0-4); ANB 3.0 +/- 1.5 reaches above the Steiner norm too; without an interval, one each."""
    from cephalo.assess import interval_spans

    m = M.MEASUREMENTS["ANB"]
    assert interval_spans(m, 3.0, 0.5) == {"status": ["normal"], "classes": [1, 3]}
    assert interval_spans(m, 3.0, 1.5) == {"status": ["normal", "above"], "classes": [1, 3]}
    assert interval_spans(m, 3.0, None) == {"status": ["normal"], "classes": [3]}
    assert interval_spans(M.MEASUREMENTS["MW"], 1.0, 1.5)["classes"] == [1, 2, 3]  # reaches 0 (2) and 2 (1)


def test_implausible_values_are_withheld_and_all_isbi_annotations_pass(shared_data):
    """Point 1 (real images with failed predictions: ODI 198, APDI 288.6 deg): a value outside
    ``PLAUSIBLE`` is withheld with its reason; the 300 real ISBI 2015 mean annotations all lie inside."""
    import glob

    files = sorted(glob.glob(str(shared_data / "isbi2015" / "AnnotationsByMD" / "400_mean" / "*.txt")))
    assert len(files) == 300
    c = np.stack([np.loadtxt(f, delimiter=",")[:19] for f in files]).astype(np.float64)
    vals = M.compute(c, NAMES, np.full((300, 2), 0.1))
    for k, v in vals.items():
        lo, hi = M.PLAUSIBLE[k]
        assert ((v >= lo) & (v <= hi)).all(), k
    # a failed prediction on a real image: menton and gonion swapped far apart -> ODI out of range
    path, gt = _isbi(shared_data, "001")
    bad = gt.copy()
    bad[NAMES.index("gonion")], bad[NAMES.index("menton")] = gt[NAMES.index("menton")], gt[NAMES.index("gonion")]
    a = assess(_pred(path, bad, 1935, 2400), read_input_image(path).image)
    withheld = {k for k, m in a["measurements"].items() if not m["reliable"]}
    assert withheld and all(
        "outside the plausible range" in a["measurements"][k]["unreliable_because"][0] for k in withheld
    )
    assert all(a["measurements"][k]["class"] is None for k in withheld)


def test_probe_image_checks_without_decoding_and_names_the_problem(tmp_path):
    """Point 10: the pre-model check accepts what the reader reads and refuses, by file, what it cannot."""
    from cephalo.imageio import probe_image

    cv2.imwrite(str(tmp_path / "a16.png"), (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16))
    probe_image(tmp_path / "a16.png")
    png = (tmp_path / "a16.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(png[: len(png) // 2])
    (tmp_path / "empty.tif").write_bytes(b"")
    (tmp_path / "note.dcm").write_text("not dicom")
    (tmp_path / "blob.bin").write_bytes(bytes(range(256)) * 4)
    for name, words in (
        ("cut.png", "truncated PNG"),
        ("empty.tif", "empty file"),
        ("note.dcm", "text file"),
        ("blob.bin", "unknown format"),
    ):
        with pytest.raises(DataError, match=words) as e:
            probe_image(tmp_path / name)
        assert name in str(e.value)
