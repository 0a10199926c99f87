"""The synthetic demo data: determinism, official layouts, landmarks on drawn structures."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from cephalo.commands.make_demo import demo_config, device_spec, make_demo
from cephalo.config.schema import DemoDevice
from cephalo.demo import (
    DEFAULT_AARIZ_DEVICES,
    DeviceSpec,
    render_cephalogram,
)
from cephalo.demo_skull import skull_template
from cephalo.errors import ConfigError
from cephalo.landmarks import AARIZ29, ISBI19

SMALL = {
    "seed": 7,
    "isbi2015": {"n_train": 3, "n_test1": 2},
    "aariz": {"n_train": 3, "n_valid": 3, "n_test": 3},
}


def _tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("demo")
    recs = make_demo(out, SMALL)
    return out, recs


def test_same_seed_byte_identical_and_other_seed_differs(demo_dir, tmp_path):
    out, _ = demo_dir
    make_demo(tmp_path / "again", SMALL)
    a, b = _tree(out), _tree(tmp_path / "again")
    assert len(a) > 40 and a == b
    make_demo(tmp_path / "other", {**SMALL, "seed": 8})
    c = _tree(tmp_path / "other")
    bmp = "isbi2015/RawImage/TrainingData/001.bmp"
    assert a[bmp] != c[bmp]


def test_isbi_layout_and_annotation_files(demo_dir):
    out, recs = demo_dir
    root = out / "isbi2015"
    assert sorted(p.name for p in (root / "RawImage" / "TrainingData").iterdir()) == ["001.bmp", "002.bmp", "003.bmp"]
    assert sorted(p.name for p in (root / "RawImage" / "Test1Data").iterdir()) == ["004.bmp", "005.bmp"]
    img = cv2.imread(str(root / "RawImage" / "TrainingData" / "001.bmp"), cv2.IMREAD_UNCHANGED)
    assert img.shape == (300, 240) and img.dtype == np.uint8
    lines = (root / "AnnotationsByMD" / "400_senior" / "001.txt").read_text().splitlines()
    assert len(lines) == 19 + 8
    xy = np.array([[int(v) for v in ln.split(",")] for ln in lines[:19]])
    assert all(ln.strip() in {"1", "2", "3"} for ln in lines[19:])
    # senior = rounded truth, in ISBI file order (mapped from the 29-landmark template by name)
    np.testing.assert_array_equal(xy, np.round(recs["isbi2015"][0]["landmarks"]))
    assert (root / "AnnotationsByMD" / "400_junior" / "005.txt").is_file()


def test_isbi_parses_with_real_adapter(demo_dir):
    datasets = pytest.importorskip("cephalo.datasets")
    out, recs = demo_dir
    res = datasets.create_adapter("isbi2015").parse(out / "isbi2015", spacing_mm=0.8)
    assert not res.exclusions
    senior = [r for r in res.rows if r["annotator"] == "senior" and r["image_id"] == "002"]
    assert len(senior) == 19
    got = np.array([[r["x"], r["y"]] for r in sorted(senior, key=lambda r: r["landmark_index"])])
    np.testing.assert_array_equal(got, np.round(recs["isbi2015"][1]["landmarks"]))
    assert {r["split"] for r in res.rows} >= {"train"} and len({r["image_id"] for r in res.rows}) == 5
    assert {r["spacing_x_mm"] for r in res.rows} == {0.8}


def test_aariz_layout_parses_with_real_adapter(demo_dir):
    datasets = pytest.importorskip("cephalo.datasets")
    out, recs = demo_dir
    base = out / "aariz" / "Aariz"
    raw = (base / "cephalogram_machine_mappings.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf" + b"cephalogram_id,machine,pixel_size,image_format,mode")
    rec = recs["aariz"][0]
    cid = rec["image_id"]
    assert len(cid) == 25 and cid[0] == "c" and cid.isalnum() and cid.islower()
    doc = json.loads(
        (
            base / rec["split"] / "Annotations" / "Cephalometric Landmarks" / "Senior Orthodontists" / f"{cid}.json"
        ).read_text()
    )
    assert doc["ceph_id"] == cid and len(doc["landmarks"]) == 29
    assert {e["landmark_id"] for e in doc["landmarks"]} == {lm.source_id for lm in AARIZ29}
    assert {e["symbol"] for e in doc["landmarks"]} == set(AARIZ29.symbols)
    cvm = json.loads((base / rec["split"] / "Annotations" / "CVM Stages" / f"{cid}.json").read_text())
    assert 1 <= cvm["cvm_stage"]["value"] <= 6 and cvm["cvm_stage"]["title"] == f"CVM-S{cvm['cvm_stage']['value']}"

    res = datasets.create_adapter("aariz").parse(out / "aariz")
    assert not res.exclusions
    assert len({r["image_id"] for r in res.rows}) == 9
    assert {r["split"] for r in res.rows} == {"train", "valid", "test"}
    spacings = {r["device"]: r["spacing_x_mm"] for r in res.rows}
    assert spacings == {d.name: d.spacing_mm for d in DEFAULT_AARIZ_DEVICES}
    # by landmark id, not list position (the JSON lists are shuffled)
    for r0 in recs["aariz"][:3]:
        rows = sorted(
            (r for r in res.rows if r["image_id"] == r0["image_id"] and r["annotator"] == "senior"),
            key=lambda r: r["landmark_index"],
        )
        got = np.array([[r["x"], r["y"]] for r in rows])
        np.testing.assert_array_equal(got, np.round(r0["landmarks"]))


def test_aariz_devices_differ_in_size_aspect_spacing_contrast(demo_dir):
    out, recs = demo_dir
    sizes, means = {}, {}
    for r in recs["aariz"]:
        img = cv2.imread(str(r["path"]), cv2.IMREAD_GRAYSCALE)
        sizes.setdefault(r["device"], set()).add(img.shape[::-1])
        means.setdefault(r["device"], []).append(float(img.mean()))
    assert len(sizes) == 3  # 9 images over 3 equal-weight devices: every device appears
    assert any(w > h for s in sizes.values() for w, h in s)  # a landscape device
    assert len({tuple(sorted(s)) for s in sizes.values()}) == 3
    m = sorted(np.mean(v) for v in means.values())
    assert m[-1] - m[0] > 10  # grey-level response differs between devices (8-bit levels)


def test_junior_is_senior_plus_about_one_mm(tmp_path):
    cfg = demo_config(
        {"seed": 3, "isbi2015": {"n_train": 12, "n_test1": 0}, "aariz": {"n_train": 0, "n_valid": 0, "n_test": 0}}
    )
    make_demo(tmp_path, cfg)
    ann = tmp_path / "isbi2015" / "AnnotationsByMD"
    d = []
    for f in sorted((ann / "400_senior").glob("*.txt")):
        s = np.array([[int(v) for v in ln.split(",")] for ln in f.read_text().splitlines()[:19]])
        j = np.array(
            [[int(v) for v in ln.split(",")] for ln in (ann / "400_junior" / f.name).read_text().splitlines()[:19]]
        )
        d.append(np.linalg.norm(s - j, axis=1))
    # pixels -> anatomical mm: x spacing / head_scale
    mean_mm = float(np.mean(d)) * cfg.isbi_device.spacing_mm / cfg.head_scale
    assert 0.75 < mean_mm < 1.3


def _grad(img: np.ndarray) -> np.ndarray:
    g = img.astype(np.float32)
    return np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3))


def test_landmarks_lie_on_drawn_structures():
    """Max gradient within 4 px of each landmark beats the same statistic at random points."""
    rng = np.random.default_rng(0)
    cfg = demo_config()
    dev = cfg.isbi_device  # with its noise: an edge must stand out of it
    near, rand = [], []
    for _ in range(4):
        img, lms = render_cephalogram(rng, dev, cfg)
        g = _grad(img)
        h, w = g.shape
        yy, xx = np.mgrid[0:h, 0:w]

        def local_max(x, y, r=4, g=g, xx=xx, yy=yy):
            return g[(xx - x) ** 2 + (yy - y) ** 2 <= r * r].max()

        near += [local_max(x, y) for x, y in lms]
        pts = rng.uniform([4, 4], [w - 5, h - 5], size=(200, 2))
        rand += [local_max(x, y) for x, y in pts]
    near, rand = np.array(near), np.array(rand)
    # every landmark sees an edge; random points mostly sit in flat regions
    assert np.percentile(near, 10) > np.median(rand)
    assert near.mean() > 2.0 * rand.mean()
    assert np.median(near) > np.percentile(rand, 75)


def test_template_covers_aariz_and_isbi_by_name():
    t = skull_template()
    assert set(t.landmarks) == set(AARIZ29.names) and set(ISBI19.names) <= set(t.landmarks)
    # Orbitale is the lowest point of the drawn orbit ring; Menton the lowest point of the mandible outline
    kinds = [s for s in t.shapes if s[0] == "line" and len(s[1]) == 48]
    orbit = [s for s in kinds if np.allclose(s[1][:, 1].max(), t.landmarks["orbitale"][1], atol=0.05)]
    assert orbit
    mand = max(
        (s for s in t.shapes if s[0] == "fill" and any(np.allclose(p, t.landmarks["gonion"]) for p in s[1])),
        key=lambda s: len(s[1]),
    )
    assert np.isclose(mand[1][:, 1].max(), t.landmarks["menton"][1])


def test_bad_config_raises_config_error():
    with pytest.raises(ConfigError, match="demo.seeed: unknown key; did you mean 'seed'"):
        demo_config({"seeed": 1})
    with pytest.raises(ConfigError, match=r"demo.aariz.devices\[0\]"):
        demo_config({"aariz": {"devices": [{"name": "x", "size": [100, 100]}]}})
    with pytest.raises(ConfigError, match="image_format"):
        demo_config({"aariz": {"devices": [{"spacing_mm": 0.1, "size": [100, 100], "image_format": "gif"}]}})
    with pytest.raises(ConfigError, match="n_train"):
        demo_config({"isbi2015": {"n_train": -1}})


def test_cli_make_demo(tmp_path):
    from cephalo.cli import main

    params = tmp_path / "params.yaml"
    params.write_text(
        "demo:\n  seed: 5\n  isbi2015: {n_train: 1, n_test1: 1}\n  aariz: {n_train: 1, n_valid: 1, n_test: 1}\n"
    )
    r = CliRunner().invoke(main, ["make-demo", "--out", str(tmp_path / "d"), "--params", str(params), "--quiet"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "d" / "isbi2015" / "RawImage" / "Test1Data" / "002.bmp").is_file()
    assert len(list((tmp_path / "d" / "aariz" / "Aariz").glob("*/Cephalograms/*"))) == 3
    # a bad params section: one line, exit 1, nothing written
    params.write_text("demo:\n  head_scale: -1\n")
    import subprocess
    import sys

    p = subprocess.run(
        [sys.executable, "-m", "cephalo", "make-demo", "--out", str(tmp_path / "e"), "--params", str(params)],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 1 and "demo.head_scale" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "e" / "isbi2015").exists()


def test_device_too_small_for_head_is_config_error():
    cfg = demo_config()
    with pytest.raises(ConfigError, match="cannot hold the head"):
        render_cephalogram(np.random.default_rng(0), DeviceSpec("tiny", 0.2, (40, 40)), cfg)
    assert math.isclose(cfg.head_scale, 1.0)


def test_head_is_real_size_in_mm_on_every_device():
    """Sella-nasion is ~59 mm in the template; in pixels x each device's spacing it stays ~59 mm."""
    cfg = demo_config()
    rng = np.random.default_rng(1)
    s, n = AARIZ29.names.index("sella"), AARIZ29.names.index("nasion")
    for dev in (cfg.isbi_device,) + DEFAULT_AARIZ_DEVICES:
        assert 0.6 <= dev.spacing_mm <= 0.9 and max(dev.size) <= 400  # coarse spacing, small images
        d = []
        for _ in range(3):
            _, lms = render_cephalogram(rng, dev, cfg)
            d.append(np.linalg.norm(lms[s] - lms[n]) * dev.spacing_mm / dev.head_size)
        assert 52 < np.mean(d) < 66, (dev.name, d)


def test_target_devices_have_burnt_in_labels_and_collimation():
    """Target images carry white text near the top-left corner and (Hyperion) bright collimated borders;
    the source device has neither."""
    cfg = demo_config()
    rng = np.random.default_rng(2)
    src, _ = render_cephalogram(rng, cfg.isbi_device, cfg)
    assert np.percentile(src[:20, :60], 99) < 200
    for dev in DEFAULT_AARIZ_DEVICES:
        img, lms = render_cephalogram(rng, dev, cfg)
        cx, cy = int(round(dev.collimation * dev.size[0])), int(round(dev.collimation * dev.size[1]))
        corner = img[cy + 2 : cy + int(0.12 * dev.size[1]), cx + 2 : cx + int(0.4 * dev.size[0])]
        assert (corner > 240).sum() > 20, dev.name  # text strokes
        if dev.collimation:
            assert img[: max(1, cy - 3)].mean() > 200 and img[:, : max(1, cx - 3)].mean() > 200
            assert (lms[:, 0] > cx).all() and (lms[:, 1] > cy).all()  # landmarks in the open window


def test_device_pose_keys_validate():
    d = device_spec(
        DemoDevice.from_dict(
            {
                "spacing_mm": 0.7,
                "size": [300, 300],
                "head_size": 0.9,
                "tilt_deg": 3,
                "head_offset_mm": [5, -2],
                "collimation": 0.05,
                "labels": True,
            }
        ),
        "x",
    )
    assert d.head_size == 0.9 and d.head_offset_mm == (5.0, -2.0) and d.labels
    with pytest.raises(ConfigError, match="collimation"):
        DemoDevice.from_dict({"spacing_mm": 0.7, "size": [300, 300], "collimation": 0.4})
