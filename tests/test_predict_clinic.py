"""cephalo predict for a clinic: runs with only a checkpoint, LabelMe round trip, calibrated radii and flags."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from cephalo.cli import main
from cephalo.models import ModelMeta, create_model, save_checkpoint

NAMES = ["sella", "nasion", "menton"]
SIZE = 96


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """A tiny cephalo checkpoint whose meta carries its preprocessing (no params needed)."""
    torch.manual_seed(0)
    model = create_model("hrnet_w18", len(NAMES), num_modules=(1, 1, 1), num_blocks=1)
    meta = ModelMeta(
        arch="hrnet_w18",
        landmark_names=NAMES,
        input_size=(SIZE, SIZE),
        heatmap_size=(SIZE // 4, SIZE // 4),
        variant={"steps": [{"stretch": {"size": SIZE}}]},
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
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", model, meta)


def _images(folder: Path) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, (w, h) in (("a", (300, 260)), ("b", (280, 320))):
        img = cv2.GaussianBlur(rng.uniform(0, 255, size=(h, w)).astype(np.float32), (0, 0), 8)
        img = cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
        cv2.imwrite(str(folder / f"{name}.png"), img)
    return folder


def test_predict_from_any_folder_and_labelme_round_trip(ckpt, tmp_path, monkeypatch):
    from cephalo.datasets import create_adapter
    from cephalo.index import build_index

    imgs = _images(tmp_path / "in")
    work = tmp_path / "elsewhere"
    work.mkdir()
    monkeypatch.chdir(work)  # no params.yaml here: the checkpoint is enough
    lm_dir = tmp_path / "corrections" / "clinician"
    r = CliRunner().invoke(
        main,
        [
            "predict",
            "--model",
            str(ckpt),
            str(imgs),
            "--out",
            str(work / "out"),
            "--spacing",
            "0.1",
            "--no-overlays",
            "--no-report",
            "--labelme",
            str(lm_dir),
            "--device",
            "cpu",
        ],
    )
    assert r.exit_code == 0, (r.output, r.exception)
    doc = json.loads((work / "out" / "predictions.json").read_text())
    pred = {rec["image_id"]: np.array([[lm["x"], lm["y"]] for lm in rec["landmarks"]]) for rec in doc["images"]}
    # a clinician moves two points in LabelMe
    moved = {("a", "sella"): (12.0, -7.5), ("b", "menton"): (-4.25, 3.0)}
    for (img, name), (dx, dy) in moved.items():
        p = lm_dir / f"{img}.json"
        d = json.loads(p.read_text())
        (shape,) = [s for s in d["shapes"] if s["label"] == name]
        shape["points"][0][0] += dx
        shape["points"][0][1] += dy
        p.write_text(json.dumps(d))
    opts = {
        "annotators": {"clinician": "clinician"},
        "spacing_mm": 0.1,
        "default_split": "train",
        "catalogue": {"key": "mine", "landmarks": [{"like": f"isbi19:{n}"} for n in NAMES]},
    }
    res = create_adapter("labelme").parse(tmp_path / "corrections", dataset="clinic", **opts)
    assert not res.exclusions
    df = build_index(res, tmp_path / "corrections", progress=False)
    assert sorted(df["image_id"].unique()) == ["a", "b"]
    diff = []
    for _, row in df.iterrows():
        k = NAMES.index(row["landmark_name"])
        got = np.array([row["x"], row["y"]])
        want = pred[row["image_id"]][k] + np.array(moved.get((row["image_id"], row["landmark_name"]), (0.0, 0.0)))
        np.testing.assert_allclose(got, want, atol=1e-9)
        if not np.allclose(got, pred[row["image_id"]][k], atol=1e-9):
            diff.append((row["image_id"], row["landmark_name"]))
    assert sorted(diff) == sorted(moved)


def test_params_file_given_but_missing_is_an_error(ckpt, tmp_path):
    imgs = _images(tmp_path / "in")
    r = CliRunner().invoke(
        main,
        [
            "predict",
            "--model",
            str(ckpt),
            str(imgs),
            "--out",
            str(tmp_path / "o"),
            "--params",
            str(tmp_path / "nope.yaml"),
        ],
    )
    assert r.exit_code != 0 and "nope.yaml" in str(r.exception)


def test_calibrated_checkpoint_gives_radii_circles_and_radius_flags(ckpt, tmp_path, monkeypatch):
    from cephalo.models import load_checkpoint
    from cephalo.uncertainty import calibrate

    model, meta, _ = load_checkpoint(ckpt)
    e = np.tile(np.array([[0.5, 1.0, 30.0]]), (20, 1))  # menton: 30 mm radius -> flagged at 2 mm
    cal = calibrate(e, e * 10, np.ones_like(e), NAMES, (0.9, 0.95), "constant", pooling="landmark")
    cal.update(split="valid", n_images=20, variant="synthetic")
    calibrated = save_checkpoint(tmp_path / "cal.pt", model, meta, extra={"calibration": cal})
    imgs = _images(tmp_path / "in")
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(
        main,
        [
            "predict",
            "--model",
            str(calibrated),
            str(imgs / "a.png"),
            "--out",
            "out",
            "--spacing",
            "0.1",
            "--device",
            "cpu",
        ],
    )
    assert r.exit_code == 0, (r.output, r.exception)
    doc = json.loads(Path("out/predictions.json").read_text())
    (rec,) = doc["images"]
    # constant scale: radius = the 90 % quantile itself (20 equal errors)
    assert [lm["radius_mm"] for lm in rec["landmarks"]] == pytest.approx([0.5, 1.0, 30.0])
    assert [lm["flags"] for lm in rec["landmarks"]][:2] == [[], []] and "radius" in rec["landmarks"][2]["flags"]
    df = pd.read_csv("out/predictions.csv")
    assert list(df["radius_mm"]) == pytest.approx([0.5, 1.0, 30.0])
    ov = cv2.imread("out/overlays/a.png")
    # a small image is enlarged (long side 900 px) with a title band above and a legend band below it
    assert ov.shape[1] == 900 and ov.shape[0] > round(260 * 3)
    html = Path("out/report.html").read_text()
    assert "split-conformal radii at 90%" in html and "data:image/jpeg;base64," in html
    assert "ground truth" not in html
