"""cephalo predict: decoding (PNG/BMP/16-bit TIFF/DICOM), frames, mm per axis, outputs, CLI, real ISBI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from cephalo import geometry as G
from cephalo.cli import main
from cephalo.codecs import create_codec
from cephalo.errors import ConfigError, DataError
from cephalo.imageio import dicom_spacing, find_images, read_input_image
from cephalo.landmarks import landmark_symbols
from cephalo.models import ModelMeta, create_model, load_model, save_checkpoint
from cephalo.predict import (
    CSV_COLUMNS,
    MEASUREMENT_COLUMNS,
    BatchSettings,
    predict_images,
    resolve_variant_spec,
    write_predictions,
)
from cephalo.public_hrnet.checkpoint import public_hrnet_meta

NAMES = ["sella", "nasion", "menton"]
SIZE = 96  # model input (W = H), heatmaps 24 x 24
LETTERBOX = {"steps": [{"step": "letterbox", "size": [SIZE, SIZE], "interpolation": "cubic"}]}
STRETCH = {"steps": [{"stretch": {"size": SIZE}}]}


def _meta(variant=LETTERBOX) -> ModelMeta:
    return ModelMeta(
        arch="hrnet_w18",
        landmark_names=NAMES,
        input_size=(SIZE, SIZE),
        heatmap_size=(SIZE // 4, SIZE // 4),
        variant=variant,
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


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = create_model("hrnet_w18", len(NAMES), num_modules=(1, 1, 1), num_blocks=1)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", model, _meta())


def _write_dicom(
    path: Path, img: np.ndarray, pixel_spacing=None, imager_spacing=None, bits_stored=16, photometric="MONOCHROME2"
) -> Path:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - Presentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = img.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    if pixel_spacing is not None:
        ds.PixelSpacing = list(pixel_spacing)
    if imager_spacing is not None:
        ds.ImagerPixelSpacing = list(imager_spacing)
    ds.PixelData = np.ascontiguousarray(img.astype("<u2")).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return path


def _ramp(w: int, h: int, top: int, dtype) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.round((x + 2 * y) / (w + 2 * h) * top).astype(dtype)


@pytest.fixture
def images(tmp_path) -> dict[str, Path]:
    """PNG (8-bit, 80x64), BMP (colour, 50x90), 16-bit TIFF (60x40), 12-bit DICOM (70x56, anisotropic)."""
    d = tmp_path / "in"
    d.mkdir()
    cv2.imwrite(str(d / "a.png"), _ramp(80, 64, 255, np.uint8))
    cv2.imwrite(str(d / "b.bmp"), np.repeat(_ramp(50, 90, 255, np.uint8)[..., None], 3, axis=2))
    cv2.imwrite(str(d / "c.tif"), _ramp(60, 40, 60000, np.uint16))
    # DICOM PixelSpacing = [row (y), column (x)] = [0.2, 0.1] -> (x, y) = (0.1, 0.2)
    _write_dicom(d / "d.dcm", _ramp(70, 56, 4095, np.uint16), pixel_spacing=[0.2, 0.1], bits_stored=12)
    (d / "notes.txt").write_text("not an image")
    return {"dir": d, "png": d / "a.png", "bmp": d / "b.bmp", "tif": d / "c.tif", "dcm": d / "d.dcm"}


# ----------------------------------------------------------------- decoding and spacing


def test_dicom_spacing_is_row_column_and_falls_back_to_imager(tmp_path):
    from pydicom.dataset import Dataset

    ds = Dataset()
    assert dicom_spacing(ds) == (None, None)
    ds.ImagerPixelSpacing = [0.15, 0.12]
    assert dicom_spacing(ds) == ((0.12, 0.15), "ImagerPixelSpacing")
    ds.PixelSpacing = [0.3, 0.1]  # PixelSpacing wins
    assert dicom_spacing(ds) == ((0.1, 0.3), "PixelSpacing")
    ds.PixelSpacing = [0.0, 0.1]
    with pytest.raises(DataError, match="PixelSpacing"):
        dicom_spacing(ds, tmp_path / "x.dcm")


def test_read_input_image_formats_keep_depth(images, tmp_path):
    png = read_input_image(images["png"])
    assert png.image.dtype == np.uint8 and png.image.shape == (64, 80) and png.spacing is None and png.bit_depth == 8
    bmp = read_input_image(images["bmp"])
    assert bmp.image.shape == (90, 50) and bmp.image.ndim == 2
    tif = read_input_image(images["tif"])
    assert tif.image.dtype == np.uint16 and tif.bit_depth == 16
    np.testing.assert_array_equal(tif.image, _ramp(60, 40, 60000, np.uint16))  # no 8-bit truncation
    dcm = read_input_image(images["dcm"])
    assert dcm.image.shape == (56, 70) and dcm.image.dtype == np.uint16
    assert dcm.spacing == pytest.approx((0.1, 0.2)) and dcm.spacing_source == "PixelSpacing"
    assert dcm.bit_depth == 12
    # 12-bit stored values are stretched to the 16-bit white level (4095 -> 65535)
    np.testing.assert_allclose(
        dcm.image.astype(float), np.round(_ramp(70, 56, 4095, np.uint16).astype(float) * 65535 / 4095), atol=0
    )
    # MONOCHROME1 (bright = low values) comes out inverted to MONOCHROME2: the same picture
    inv = _write_dicom(
        tmp_path / "m1.dcm",
        4095 - _ramp(70, 56, 4095, np.uint16),
        imager_spacing=[0.1, 0.1],
        bits_stored=12,
        photometric="MONOCHROME1",
    )
    m1 = read_input_image(inv)
    np.testing.assert_array_equal(m1.image, dcm.image)
    assert m1.spacing_source == "ImagerPixelSpacing"


def test_unreadable_file_names_the_file(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(DataError, match="broken.png"):
        read_input_image(bad)
    with pytest.raises(DataError, match="missing.png"):
        read_input_image(tmp_path / "missing.png")


def test_find_images_filters_folder_and_rejects_empty(images, tmp_path):
    files = find_images([images["dir"], images["png"]])  # duplicate dropped
    assert [f.name for f in files] == ["a.png", "b.bmp", "c.tif", "d.dcm"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        find_images([tmp_path / "empty"])
    with pytest.raises(DataError, match="nope"):
        find_images([tmp_path / "nope"])


def test_variant_resolution_public_format_names_and_symbols():
    spec = resolve_variant_spec(public_hrnet_meta().variant)  # {"name": "letterbox", "interpolation": "bicubic"}
    assert spec["steps"][0] == {"step": "letterbox", "size": [768, 768], "interpolation": "cubic"}
    assert resolve_variant_spec("lb", {"lb": {"steps": ["clahe"]}})["steps"] == ["clahe"]
    with pytest.raises(ConfigError, match="not defined"):
        resolve_variant_spec("letterbox64", {})
    assert landmark_symbols(["sella", "nasion", "menton"]) == ["S", "N", "Me"]


# ----------------------------------------------------------------- frames and mm


def _forced(model, codec, q: np.ndarray):
    """Make ``model`` output the codec's encoding of ``q`` (K, 2) input px for every image."""
    hm, _ = codec.encode(q)

    def forward(x):
        return torch.from_numpy(np.repeat(hm[None], x.shape[0], axis=0))

    model.forward = forward
    return model


@pytest.mark.parametrize(
    "variant,affine_of",
    [
        (LETTERBOX, lambda w, h: G.letterbox_geometry((w, h), SIZE).affine()),
        (STRETCH, lambda w, h: G.resize_affine((w, h), (SIZE, SIZE))),
    ],
)
def test_forced_heatmap_maps_back_to_original_pixels(ckpt, images, variant, affine_of):
    model, meta = load_model(ckpt)
    codec = create_codec(**meta.codec)
    q = np.array([[30.3, 41.7], [60.0, 52.25], [48.6, 70.1]])  # input-frame points, inside every letterbox
    _forced(model, codec, q)
    paths = [images[k] for k in ("png", "bmp", "tif", "dcm")]
    preds = predict_images(
        model, meta, paths, variant=variant, spacing_mm=0.25, batch=BatchSettings(batch_size=3, progress=False)
    )
    assert [p.path for p in preds] == paths
    for p in preds:
        m = affine_of(p.width, p.height)
        np.testing.assert_allclose(p.affine, m, atol=1e-12)
        expected = G.apply_affine(G.invert(m), q)  # original px
        assert np.abs(p.coords - expected).max() < 0.5, (p.path.name, p.coords, expected)
        assert p.in_image().all()
        assert not p.degenerate.any() and p.coords.shape == (3, 2) and p.confidence.shape == (3,)
    png, dcm = preds[0], preds[3]
    # PNG: no own spacing -> the given isotropic fallback; DICOM: its own anisotropic spacing, per axis
    assert png.spacing == (0.25, 0.25) and png.spacing_source == "given"
    np.testing.assert_allclose(png.coords_mm, png.coords * 0.25)
    assert dcm.spacing == pytest.approx((0.1, 0.2)) and dcm.spacing_source == "PixelSpacing"
    np.testing.assert_allclose(dcm.coords_mm[:, 0], dcm.coords[:, 0] * 0.1)
    np.testing.assert_allclose(dcm.coords_mm[:, 1], dcm.coords[:, 1] * 0.2)
    rec = dcm.to_dict()["landmarks"][1]
    assert rec["name"] == "nasion" and rec["symbol"] == "N"
    assert rec["x_mm"] == pytest.approx(rec["x"] * 0.1) and rec["y_mm"] == pytest.approx(rec["y"] * 0.2)


def test_16bit_white_level_matches_8bit(ckpt, tmp_path):
    """The same picture as 8-bit PNG and 16-bit TIFF (x 257) gives the same prediction: the white level
    comes from the bit depth (no truncation, no 256x too bright input)."""
    model, meta = load_model(ckpt)
    img8 = (np.random.default_rng(0).random((72, 90)) * 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "p8.png"), img8)
    cv2.imwrite(str(tmp_path / "p16.tif"), img8.astype(np.uint16) * 257)
    p8, p16 = predict_images(
        model, meta, [tmp_path / "p8.png", tmp_path / "p16.tif"], variant=STRETCH, batch=BatchSettings(progress=False)
    )
    np.testing.assert_allclose(p16.coords, p8.coords, atol=0.05)
    assert p16.bit_depth == 16 and p8.bit_depth == 8


def test_spec_size_mismatch_and_bad_input_errors(ckpt, images):
    model, meta = load_model(ckpt)
    with pytest.raises(ConfigError, match="expects 96x96"):
        predict_images(
            model,
            meta,
            [images["png"]],
            variant={"steps": [{"letterbox": {"size": 64}}]},
            batch=BatchSettings(progress=False),
        )
    bad = images["dir"] / "z.png"
    bad.write_bytes(b"garbage")
    with pytest.raises(DataError, match="z.png"):
        predict_images(model, meta, [images["png"], bad], batch=BatchSettings(progress=False))
    seen = []
    preds = predict_images(
        model,
        meta,
        [images["png"], bad, images["tif"]],
        batch=BatchSettings(progress=False),
        on_error=lambda p, e: seen.append((p, str(e))),
    )
    assert [p.path.name for p in preds] == ["a.png", "c.tif"] and seen[0][0] == bad and "z.png" in seen[0][1]


# ----------------------------------------------------------------- outputs and CLI


def _params(tmp_path: Path) -> Path:
    p = tmp_path / "params.yaml"
    p.write_text(
        "variants:\n  stretch96:\n    steps:\n      - stretch: {size: 96}\npredict:\n  batch_size: 2\n  device: cpu\n"
    )
    return p


def test_cli_writes_json_csv_overlays(ckpt, images, tmp_path):
    out = tmp_path / "out"
    r = CliRunner().invoke(
        main,
        [
            "predict",
            "--model",
            str(ckpt),
            str(images["dir"]),
            "--out",
            str(out),
            "--spacing",
            "0.1",
            "--variant",
            "stretch96",
            "--params",
            str(_params(tmp_path)),
        ],
    )
    assert r.exit_code == 0, (r.output, r.exception)
    doc = json.loads((out / "predictions.json").read_text())
    assert doc["n_images"] == 4 and doc["skipped"] == [] and doc["model"]["landmark_names"] == NAMES
    by = {Path(i["file"]).name: i for i in doc["images"]}
    assert (by["a.png"]["width"], by["a.png"]["height"]) == (80, 64)
    assert by["c.tif"]["bit_depth"] == 16
    assert by["d.dcm"]["spacing"] == pytest.approx([0.1, 0.2]) and by["a.png"]["spacing"] == [0.1, 0.1]
    for rec in doc["images"]:
        w, h = rec["width"], rec["height"]
        assert [lm["name"] for lm in rec["landmarks"]] == NAMES
        for lm in rec["landmarks"]:  # stretch: the input frame is exactly the original image
            assert -0.5 <= lm["x"] <= w - 0.5 and -0.5 <= lm["y"] <= h - 0.5
            assert lm["x_mm"] == pytest.approx(lm["x"] * rec["spacing"][0])
            assert lm["y_mm"] == pytest.approx(lm["y"] * rec["spacing"][1])
            assert lm["in_image"] and not lm["degenerate"]
        ov = out / rec["overlay"]
        assert ov.is_file() and cv2.imread(str(ov)) is not None
    df = pd.read_csv(out / "predictions.csv", keep_default_na=False, dtype={"in_image": str, "flagged": str})
    assert len(df) == 4 * 3 and list(df["landmark_symbol"][:3]) == ["S", "N", "Me"]
    assert list(df.columns) == CSV_COLUMNS and set(df["in_image"]) <= {"true", "false"}
    d = df[df["image_id"] == "d"]
    np.testing.assert_allclose(d["x_px"], [lm["x"] for lm in by["d.dcm"]["landmarks"]], atol=0.005)  # 2 decimals
    np.testing.assert_allclose(d["y_mm"], [lm["y_mm"] for lm in by["d.dcm"]["landmarks"]], atol=0.0005)
    assert all(len(str(v).split(".")[-1]) <= 2 for v in df["x_px"])
    im = pd.read_csv(out / "images.csv", keep_default_na=False, dtype={"flagged": str}).set_index("image_id")
    assert im.loc["d", "spacing_y_mm"] == pytest.approx(0.2) and im.loc["d", "spacing_source"] == "PixelSpacing"
    assert im.loc["a", "spacing_source"] == "given"
    # tiny test images (80 x 64 px) are flagged as such, and the command says so
    assert set(im["flagged"]) == {"true"} and all("tiny" in f for f in im["flags"])
    assert "review flags: 4 of 4 image(s)" in r.output
    assert doc["flags"]["images"] == 4 and doc["flags"]["by_flag"]["tiny"] == 4
    assert (out / "report.html").read_text().count("<h2 id='img-") == 4
    assert list(pd.read_csv(out / "measurements.csv").columns) == MEASUREMENT_COLUMNS
    assert not any(p.name.endswith(".tmp") for p in out.rglob("*"))


def test_cli_bad_file_exit_1_and_skip_bad(ckpt, images, tmp_path):
    (images["dir"] / "zz_bad.bmp").write_bytes(b"BMnot an image")
    params = _params(tmp_path)
    out = tmp_path / "o1"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "cephalo",
            "predict",
            "--model",
            str(ckpt),
            str(images["dir"]),
            "--out",
            str(out),
            "--params",
            str(params),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]  # above it: the tqdm bar only
    assert (
        last.startswith("cephalo: error:")
        and "zz_bad.bmp" in last
        and "a BMP file (14 bytes) that cannot be decoded" in last
    ), r.stderr
    assert "imread_" not in r.stderr  # no OpenCV log noise
    assert not out.exists()  # nothing half-written
    out2 = tmp_path / "o2"
    res = CliRunner().invoke(
        main,
        [
            "predict",
            "--model",
            str(ckpt),
            str(images["dir"]),
            "--out",
            str(out2),
            "--skip-bad",
            "--no-overlays",
            "--params",
            str(params),
        ],
    )
    assert isinstance(res.exception, DataError) and "skipped" in str(res.exception)
    doc = json.loads((out2 / "predictions.json").read_text())
    assert doc["n_images"] == 4 and [Path(s["file"]).name for s in doc["skipped"]] == ["zz_bad.bmp"]
    assert not (out2 / "overlays").exists()


def test_cli_help_and_param_errors(tmp_path, ckpt, images):
    r = CliRunner().invoke(main, ["predict", "--help"])
    assert r.exit_code == 0
    for opt in ("--model", "--out", "--spacing", "--batch-size", "--device", "--skip-bad", "--params"):
        assert opt in r.output
    p = tmp_path / "p.yaml"
    p.write_text("predict: {batchsize: 2}\n")
    r = CliRunner().invoke(
        main, ["predict", "--model", str(ckpt), str(images["png"]), "--out", str(tmp_path / "o"), "--params", str(p)]
    )
    assert isinstance(r.exception, ConfigError) and "batchsize" in str(r.exception)
    if not torch.cuda.is_available():
        r = CliRunner().invoke(
            main,
            [
                "predict",
                "--model",
                str(ckpt),
                str(images["png"]),
                "--out",
                str(tmp_path / "o"),
                "--device",
                "cuda",
                "--params",
                str(_params(tmp_path)),
            ],
        )
        assert isinstance(r.exception, ConfigError) and "CUDA is not available" in str(r.exception)
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------- real data


def test_real_isbi_two_images(ckpt, shared_data, tmp_path):
    model, meta = load_model(ckpt)
    root = shared_data / "isbi2015" / "RawImage"
    paths = [root / "TrainingData" / "001.jpg", root / "Test1Data" / "151.jpg"]
    preds = predict_images(model, meta, paths, spacing_mm=0.1, batch=BatchSettings(batch_size=2, progress=False))
    assert len(preds) == 2
    lb = G.letterbox_geometry((1935, 2400), SIZE)
    for p in preds:
        assert (p.width, p.height) == (1935, 2400) and p.bit_depth == 8
        np.testing.assert_allclose(p.affine, lb.affine(), atol=1e-12)
        # every prediction lies in the model-input frame mapped back (image + letterbox pads)
        back = G.apply_affine(lb.affine(), p.coords)
        assert np.isfinite(p.coords).all() and (back >= -0.5).all() and (back <= SIZE - 0.5).all()
        np.testing.assert_allclose(p.coords_mm, p.coords * 0.1)
    paths_out = write_predictions(preds, tmp_path / "out", progress=False)
    doc = json.loads(paths_out["json"].read_text())
    assert [i["image_id"] for i in doc["images"]] == ["001", "151"]
    for rec in doc["images"]:
        ov = cv2.imread(str(tmp_path / "out" / rec["overlay"]))
        assert ov is not None and ov.shape[0] > 200 and ov.shape[1] > 150
        assert ov.std() > 5  # the radiograph is drawn, not a blank canvas
    assert len(pd.read_csv(paths_out["csv"])) == 2 * 3
