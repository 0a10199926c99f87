"""Reliability catalogue (issue 8): bad input and faults, each proven by a fault-injecting test.

Items already covered elsewhere (not repeated here):
- download faults: tests/test_download.py (truncated/resumed download, HTML instead of archive, 404,
  checksum mismatch, disk full, unsafe member path, occupied destination, failed refetch).
- duplicated/missing labels: test_datasets_labelme.py::test_labelme_stem_match_imagedata_and_duplicates,
  test_datasets_aariz.py::test_aariz_duplicate_landmark_excludes_that_file.
- out-of-image coords, mm-looking coords, missing spacing, duplicate keys: test_index.py::test_validation_errors.
- shuffled landmark order: test_datasets_aariz.py::test_aariz_shuffled_order_and_root_variants_give_identical_rows.
- unreadable (garbage) image: test_index.py::test_validation_errors,
  test_preprocess.py::test_read_image_keeps_bit_depth_and_names_bad_files.
- Aariz CSV image_format vs extension: test_datasets_aariz.py::test_aariz_official_layout.
- checkpoint for another input size / landmark set / arch (expect=...):
  test_checkpoint.py::test_expect_mismatch_names_every_difference; truncated checkpoints:
  test_checkpoint.py::test_truncated_file_names_the_file; partial transfer:
  test_checkpoint_transfer.py::test_partial_backbone_below_threshold.
- kill-and-resume: test_train_resume.py; NaN loss: test_train.py::test_nan_loss_stops_and_keeps_last_good_checkpoint;
  concurrent MLflow logging: test_tracking.py::test_four_processes_log_to_one_store_at_once.
- real hamedan label defects as reported exclusions: test_datasets_labelme.py::test_hamedan_real.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageOps

from cephalo.datasets import create_adapter
from cephalo.datasets.base import AdapterResult, _header, annotation_rows, assign_splits, image_header
from cephalo.errors import CheckpointError, ConfigError, DataError
from cephalo.index import build_index, index_dataset, quality_report, spacing_outliers, write_index
from cephalo.landmarks import ISBI19
from cephalo.preprocess import build_variant, image_bit_depth, load_variant, read_image

LETTERBOX32 = {"steps": [{"letterbox": {"size": 32}}]}


@pytest.fixture(autouse=True)
def _fresh_header_cache():
    _header.cache_clear()  # headers are cached by (path, mtime, size); tests rewrite files
    yield


def _gradient(h=40, w=50, dtype=np.uint8) -> np.ndarray:
    """An asymmetric test pattern (no flip/rotation maps it onto itself)."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = (xx * 3 + yy * 2) % 200 + 20
    img[12:16, 15:21] = 250  # a bright marker, off-centre
    return img.astype(dtype)


def _result(paths: dict[str, Path], spacing=(0.1, 0.1), device="D", coords=None) -> AdapterResult:
    """Toy adapter output: one annotator, ISBI-19, every landmark at (5, 5) unless given."""
    res = AdapterResult("toy", "test", "0", ISBI19)
    for image_id, p in paths.items():
        sp = spacing[image_id] if isinstance(spacing, dict) else spacing
        c = coords or {lm.name: (5.0 + k, 6.0 + k) for k, lm in enumerate(ISBI19)}
        res.rows += annotation_rows(
            dataset="toy",
            image_id=image_id,
            split="train",
            image_path=Path(p).resolve(),
            spacing=sp,
            device=device if not isinstance(device, dict) else device[image_id],
            annotator="a",
            coords=c,
            catalogue=ISBI19,
        )
    return res


def _index(tmp_path: Path, paths: dict[str, Path], **kw) -> Path:
    df = build_index(_result(paths, **kw), tmp_path, progress=False)
    out = tmp_path / "index.parquet"
    write_index(df, out)
    return out


def _save(path: Path, arr: np.ndarray, fmt: str | None = None, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format=fmt, **kw)
    return path


# =========================================================================== images
@pytest.mark.parametrize("ext,fmt", [("png", "PNG"), ("jpg", "JPEG"), ("bmp", "BMP")])
def test_truncated_image_is_a_data_error_at_index_time(tmp_path, ext, fmt):
    p = _save(tmp_path / f"001.{ext}", _gradient(), fmt)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) * 2 // 3])  # the header survives; the pixels do not
    with pytest.raises(DataError, match=rf"001\.{ext}: truncated {fmt if fmt != 'JPEG' else 'JPEG'}"):
        build_index(_result({"001": p}), tmp_path, progress=False)
    with pytest.raises(DataError, match=rf"001\.{ext}: truncated"):
        read_image(p)  # libjpeg / SimpleITK would otherwise return grey-filled pixels


def test_truncated_image_at_preprocess_time_leaves_the_previous_variant_whole(tmp_path):
    paths = {f"00{i}": _save(tmp_path / "img" / f"00{i}.jpg", _gradient() + i, "JPEG", quality=95) for i in range(1, 4)}
    index = _index(tmp_path, paths)
    out = tmp_path / "variant"
    build_variant(index, LETTERBOX32, out, progress=False, workers=2)
    before = {f: (out / f).read_bytes() for f in ("images.npy", "variant.parquet", "variant.json")}
    data = paths["002"].read_bytes()
    paths["002"].write_bytes(data[: len(data) // 2])  # truncated after indexing
    with pytest.raises(DataError, match=r"002\.jpg: truncated JPEG"):
        build_variant(index, LETTERBOX32, out, progress=False, workers=2, force=True)
    assert {f: (out / f).read_bytes() for f in before} == before  # old variant intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img", "index.parquet", "variant"]  # no temp left
    with pytest.raises(DataError, match=r"002\.jpg: truncated JPEG"):
        build_variant(index, LETTERBOX32, tmp_path / "new", progress=False, workers=1)
    assert not (tmp_path / "new").exists()


def test_rgba_becomes_luma_grey_and_alpha_is_ignored(tmp_path):
    g = _gradient()
    rgba = np.dstack([g, (g // 2).astype(np.uint8), (255 - g).astype(np.uint8), np.full_like(g, 255)])
    p = _save(tmp_path / "rgba.png", rgba)
    got = read_image(p)
    want = np.asarray(Image.open(p).convert("L"))  # ITU-R 601 luma, as Pillow computes it
    assert got.dtype == np.uint8 and got.shape == g.shape
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    la = _save(tmp_path / "la.png", np.dstack([g, np.full_like(g, 128)]), "PNG")
    np.testing.assert_array_equal(read_image(la), g)  # grey + alpha -> the grey channel, exactly


def test_16bit_colour_png_keeps_16_bits_through_the_variant(tmp_path):
    import cv2

    g16 = _gradient(dtype=np.uint16) * 257 + 3  # values that do not fit 8 bits
    colour = np.dstack([g16, g16, g16])  # equal channels -> grey exactly
    cv2.imwrite(str(tmp_path / "c16.png"), colour)
    img = read_image(tmp_path / "c16.png")
    assert img.dtype == np.uint16
    np.testing.assert_array_equal(img, g16)
    # Pillow opens it as 8-bit "RGB": the bit depth must come from the PNG header instead
    assert Image.open(tmp_path / "c16.png").mode == "RGB"
    assert image_bit_depth(tmp_path / "c16.png") == 16
    grey8 = _save(tmp_path / "g8.png", _gradient())
    index = _index(tmp_path, {"001": tmp_path / "c16.png", "002": grey8})
    v = load_variant(
        build_variant(index, {"steps": [{"stretch": {"size": [50, 40]}}]}, tmp_path / "v", progress=False).out_dir
    )
    assert v.images.dtype == np.uint16
    k = v.image_ids.index("001")
    assert int(v.images[k].max()) > 255 and abs(int(v.images[k].max()) - int(g16.max())) <= 2 * 257
    assert int(v.images[v.image_ids.index("002")].max()) == 250 * 257  # 8-bit scaled by 257


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_applied_alike_to_header_pixels_and_variant(tmp_path, orientation):
    g = _gradient(30, 44)
    exif = Image.Exif()
    exif[0x0112] = orientation
    p = _save(tmp_path / "001.png", g, "PNG", exif=exif.tobytes())  # lossless: exact pixel check
    want = np.asarray(ImageOps.exif_transpose(Image.open(p)))
    got = read_image(p)
    np.testing.assert_array_equal(got, want)
    w, h, _ = image_header(p)
    assert (h, w) == got.shape
    pj = _save(tmp_path / "002.jpg", g, "JPEG", quality=98, exif=exif.tobytes())
    assert (image_header(pj)[1], image_header(pj)[0]) == read_image(pj).shape
    # the marker's centre in the displayed (oriented) frame is where an annotator clicks
    ys, xs = np.nonzero(want == 250)
    mark = {lm.name: (float(xs.mean()), float(ys.mean())) for lm in ISBI19}
    index = _index(tmp_path, {"001": p}, coords=mark)
    v = load_variant(
        build_variant(index, {"steps": [{"stretch": {"size": [w, h]}}]}, tmp_path / "v", progress=False).out_dir
    )
    x, y = np.rint(v.landmarks[0, 0]).astype(int)
    assert v.images[0][y, x] == 250  # landmark and pixels agree after preprocessing


def test_labelme_image_size_disagreeing_with_annotation_is_a_reported_exclusion(tmp_path):
    _save(tmp_path / "pictures" / "001.png", _gradient())  # 50 x 40
    _save(tmp_path / "pictures" / "002.png", _gradient())
    (tmp_path / "ann").mkdir()
    for stem, (w, h) in {"001": (50, 40), "002": (100, 80)}.items():  # 002 was annotated at 2x
        shapes = [{"label": f"l{k + 1}", "points": [[5 + k, 6 + k]], "shape_type": "point"} for k in range(19)]
        (tmp_path / "ann" / f"{stem}.json").write_text(
            json.dumps(
                {"shapes": shapes, "imagePath": f"{stem}.tif", "imageData": None, "imageWidth": w, "imageHeight": h}
            )
        )
    res = create_adapter("labelme").parse(
        tmp_path, images="pictures", labels="l{n}", spacing_mm=0.1, annotators=["ann"], default_split="train"
    )
    (ex,) = [e for e in res.exclusions if e.annotator == "ann"]
    assert ex.image_id == "002" and "size mismatch" in ex.reason and "100x80" in ex.reason and "50x40" in ex.reason
    df = build_index(res, tmp_path, progress=False)
    assert set(df["image_id"]) == {"001"}
    report = quality_report(df, res.exclusions, hash_images=False, progress=False)
    assert any("size mismatch" in e["reason"] for e in report["exclusions"]["items"])


def test_png_named_jpg_is_read_by_content_and_aariz_reports_it(tmp_path):
    g = _gradient()
    p = tmp_path / "img" / "001.jpg"
    _save(p, g, "PNG")  # extension lies
    assert image_header(p) == (50, 40, "PNG")
    np.testing.assert_array_equal(read_image(p), g)  # lossless pixels: it was read as PNG
    index = _index(tmp_path, {"001": p})
    v = load_variant(
        build_variant(index, {"steps": [{"stretch": {"size": [50, 40]}}]}, tmp_path / "v", progress=False).out_dir
    )
    np.testing.assert_array_equal(v.images[0], g)

    from helpers import make_aariz

    root = make_aariz(tmp_path / "aariz")
    jpg = next((root / "Aariz").rglob("idb.jpg"))
    w, h = Image.open(jpg).size
    _save(jpg, np.full((h, w), 90, np.uint8), "PNG")
    res = create_adapter("aariz").parse(root)
    probs = [p.problem for p in res.problems if p.image_id == "idb"]
    assert any("content is PNG but extension is '.jpg'" in q for q in probs), probs


# =========================================================================== annotations
def test_isbi_nan_and_empty_annotation_files_are_reported_exclusions(tmp_path):
    for i in (1, 2, 3):
        _save(tmp_path / "RawImage" / "TrainingData" / f"00{i}.bmp", _gradient(), "BMP")
    _save(tmp_path / "RawImage" / "Test1Data" / "151.bmp", _gradient(), "BMP")  # the release layout has Test1
    d = tmp_path / "AnnotationsByMD" / "400_senior"
    d.mkdir(parents=True)
    good = "\n".join(f"{5 + k},{6 + k}" for k in range(19))
    (d / "001.txt").write_text(good)
    (d / "002.txt").write_text(good.replace("10,11", "nan,nan"))
    (d / "003.txt").write_text("")
    (d / "151.txt").write_text(good)
    res = create_adapter("isbi2015").parse(tmp_path)
    reasons = {e.image_id: e.reason for e in res.exclusions if e.annotator}
    assert "line 6 is not 'x,y': 'nan,nan'" in reasons["002"]
    assert "only 0 lines" in reasons["003"]
    assert set(build_index(res, tmp_path, progress=False)["image_id"]) == {"001", "151"}


def _labelme_root(tmp_path: Path, points: dict[str, list]) -> Path:
    _save(tmp_path / "pictures" / "001.png", _gradient())
    (tmp_path / "ann").mkdir(exist_ok=True)
    shapes = [
        {"label": f"l{k + 1}", "points": [points.get(f"l{k + 1}", [5 + k, 6 + k])], "shape_type": "point"}
        for k in range(19)
    ]
    # json.dumps writes NaN/Infinity, which json.loads (and LabelMe) accept
    (tmp_path / "ann" / "001.json").write_text(json.dumps({"shapes": shapes, "imagePath": "x.tif"}))
    return tmp_path


@pytest.mark.parametrize("bad", [[float("nan"), 7.0], [float("inf"), 7.0], [3.0, float("-inf")]])
def test_labelme_nan_or_infinite_point_is_a_reported_exclusion(tmp_path, bad):
    root = _labelme_root(tmp_path, {"l4": bad})
    res = create_adapter("labelme").parse(
        root, images="pictures", labels="l{n}", spacing_mm=0.1, annotators=["ann"], default_split="train"
    )
    assert not res.rows
    (ex,) = [e for e in res.exclusions if e.annotator == "ann"]
    assert "non-finite" in ex.reason and ex.labels == ("l4",)


def test_csv_empty_nan_and_infinite_values(tmp_path):
    _save(tmp_path / "a.png", _gradient())
    head = "image_path,landmark,x,y,split,spacing_x_mm,spacing_y_mm\n"
    (tmp_path / "t.csv").write_text(
        head + "a.png,sella,5,6,train,0.1,0.1\na.png,nasion,,7,train,0.1,0.1\na.png,menton,nan,nan,train,0.1,0.1\n"
    )
    df = build_index(create_adapter("csv").parse(tmp_path / "t.csv"), tmp_path, progress=False)
    assert df["visible"].tolist() == [True, False, False]
    assert df.loc[1, ["x", "y"]].isna().all()  # half a point (empty x, y=7) is a missing point
    (tmp_path / "t.csv").write_text(head + "a.png,sella,5,inf,train,0.1,0.1\n")
    with pytest.raises(DataError, match=r"t\.csv: row 2: column 'y' is not finite"):
        create_adapter("csv").parse(tmp_path / "t.csv")


def test_split_that_names_an_image_twice_is_an_error():
    ids = [f"{i:03d}" for i in range(1, 11)]
    with pytest.raises(ConfigError, match=r"split 'train' names image id '003' 2 times.*'001-005', '3'"):
        assign_splits(ids, {"train": "001-005,3", "test": "6-10"})
    with pytest.raises(ConfigError, match="several splits"):
        assign_splits(ids, {"train": "1-6", "test": "6-10"})
    assert set(assign_splits(ids, {"train": "1-5", "test": "6-10"}).values()) == {"train", "test"}


def test_same_image_in_two_splits_is_an_error(tmp_path):
    _save(tmp_path / "a.png", _gradient())
    _save(tmp_path / "b.png", _gradient())
    head = "image_path,landmark,x,y,split,annotator\n"
    (tmp_path / "t.csv").write_text(head + "a.png,sella,5,6,train,s\na.png,nasion,6,7,test,s\n")
    with pytest.raises(DataError, match=r"row 3: image 'a' is in split 'test' here but in 'train' in row 2"):
        create_adapter("csv").parse(tmp_path / "t.csv", spacing_mm=0.1)
    (tmp_path / "t.csv").write_text(head + "a.png,sella,5,6,train,s\na.png,sella,6,7,test,j\n")
    with pytest.raises(DataError, match="an image belongs to one split"):  # across annotators too
        create_adapter("csv").parse(tmp_path / "t.csv", spacing_mm=0.1)
    (tmp_path / "t.csv").write_text(
        "image_path,image_id,landmark,x,y,split\na.png,p1,sella,5,6,train\nb.png,p1,nasion,6,7,train\n"
    )
    with pytest.raises(DataError, match="one image id, two files"):
        create_adapter("csv").parse(tmp_path / "t.csv", spacing_mm=0.1)
    # one file under two ids in two splits (a train/test leak) fails index validation
    (tmp_path / "t.csv").write_text(
        "image_path,image_id,landmark,x,y,split\na.png,p1,sella,5,6,train\na.png,p2,sella,6,7,test\n"
    )
    res = create_adapter("csv").parse(tmp_path / "t.csv", spacing_mm=0.1)
    with pytest.raises(DataError, match=r"one image file under several image ids \(p1, p2 -> .*a\.png\)"):
        build_index(res, tmp_path, progress=False)


# =========================================================================== spacing
def test_negative_spacing_is_a_data_error(tmp_path):
    p = _save(tmp_path / "001.png", _gradient())
    with pytest.raises(DataError, match="non-positive pixel spacing.*001"):
        build_index(_result({"001": p}, spacing=(-0.1, -0.1)), tmp_path, progress=False)
    with pytest.raises(ConfigError, match="spacing_mm must be positive"):
        _labelme = _labelme_root(tmp_path / "lm", {})
        create_adapter("labelme").parse(
            _labelme, images="pictures", labels="l{n}", spacing_mm=-0.127, annotators=["ann"], default_split="train"
        )


def test_implausible_spacing_fails_validation_unless_allowed_and_is_reported(tmp_path):
    paths = {f"00{i}": _save(tmp_path / f"00{i}.png", _gradient()) for i in range(1, 6)}
    spacing = {
        "001": (0.139, 0.139),
        "002": (0.139, 0.139),
        "003": (1.139, 1.139),  # typo 1.139
        "004": (0.1, 0.1),
        "005": (0.1, 0.1),
    }
    device = {"001": "ProMax", "002": "ProMax", "003": "ProMax", "004": "ART", "005": "ART"}
    with pytest.raises(
        DataError,
        match=r"implausible pixel spacing for 2 image\(s\), e.g. 003 \(ProMax\): 1.139 mm/px, "
        r"outside the plausible range 0.02-1 mm/px.*allow_implausible_spacing",
    ):
        build_index(_result(paths, spacing=spacing, device=device), tmp_path, progress=False)
    df = build_index(
        _result(paths, spacing=spacing, device=device), tmp_path, progress=False, allow_implausible_spacing=True
    )
    rep = quality_report(df, hash_images=False, progress=False)["spacing_mm"]["implausible"]
    assert [(r["image_id"], r["axis"]) for r in rep] == [("003", "x"), ("003", "y")]
    assert rep[0]["device_median_mm"] == pytest.approx(0.139)
    # inside the range but 1.6x its device's median: a per-device outlier
    spacing["003"] = (0.2224, 0.139)
    out = spacing_outliers(
        df.assign(
            spacing_x_mm=df["image_id"].map(lambda i: spacing[i][0]),
            spacing_y_mm=df["image_id"].map(lambda i: spacing[i][1]),
        ).drop_duplicates("image_id")
    )
    assert [(r["image_id"], r["axis"]) for r in out] == [("003", "x")]
    assert "1.60x the median 0.139 mm/px of device 'ProMax'" in out[0]["reason"]
    # hand-computed ratio thresholds: 0.139 * 1.5 = 0.2085 passes, 0.139 * 0.67 = 0.09313 passes
    imgs = pd.DataFrame(
        {
            "dataset": "d",
            "image_id": list("abcde"),
            "device": "X",
            "image_path": list("abcde"),
            "spacing_x_mm": [0.139, 0.139, 0.139, 0.2085, 0.0932],
            "spacing_y_mm": 0.139,
        }
    )
    assert spacing_outliers(imgs) == []
    imgs.loc[3, "spacing_x_mm"] = 0.2090
    assert [r["image_id"] for r in spacing_outliers(imgs)] == ["d"]


def test_index_dataset_params_switch_for_implausible_spacing(tmp_path):
    _labelme_root(tmp_path, {})
    spec = {
        "adapter": "labelme",
        "policy": "ann",
        "options": {
            "images": "pictures",
            "labels": "l{n}",
            "spacing_mm": 1.27,
            "annotators": ["ann"],
            "default_split": "train",
        },
    }
    with pytest.raises(DataError, match="implausible pixel spacing"):
        index_dataset("toy", spec, tmp_path, tmp_path / "i.parquet", tmp_path / "rep", progress=False)
    assert not (tmp_path / "i.parquet").exists() and not (tmp_path / "rep").exists()  # nothing half-written
    df, rep = index_dataset(
        "toy",
        spec | {"allow_implausible_spacing": True},
        tmp_path,
        tmp_path / "i.parquet",
        tmp_path / "rep",
        progress=False,
    )
    assert len(rep["spacing_mm"]["implausible"]) == 2
    assert "Implausible spacing (2)" in (tmp_path / "rep" / "quality.md").read_text()


# =========================================================================== models
def test_cephalo_checkpoint_whose_weights_are_for_another_architecture(tmp_path):
    import torch

    from cephalo.models import ModelMeta, create_model, load_model, save_checkpoint

    meta = ModelMeta(
        arch="hrnet_w18",
        landmark_names=["sella", "nasion", "menton"],
        input_size=(64, 48),
        heatmap_size=(16, 12),
        variant="letterbox64",
        normalisation={"name": "imagenet"},
        codec={
            "name": "gaussian",
            "input_size": [64, 48],
            "heatmap_size": [16, 12],
            "sigma": 2.0,
            "decoder": "dark",
            "convention": "pixel_centre",
        },
        provenance={},
    )
    model = create_model("hrnet_w18", 3, num_modules=(1, 1, 1), num_blocks=1)
    path = save_checkpoint(tmp_path / "c.pt", model, meta)
    raw = torch.load(path, weights_only=False)
    assert raw["meta"]["arch_kwargs"]["width"] == 18
    raw["meta"]["arch"], raw["meta"]["arch_kwargs"]["width"] = "hrnet_w32", 32  # weights of a w18, meta says w32
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match=r"c\.pt: state dict does not fit hrnet_w32: .*shape mismatches"):
        load_model(path)
    raw = torch.load(save_checkpoint(tmp_path / "d.pt", model, meta), weights_only=False)
    raw["meta"]["landmark_names"] = ["sella", "nasion", "menton", "gonion"]  # 4 names, 3 output channels
    torch.save(raw, tmp_path / "d.pt")
    with pytest.raises(CheckpointError, match=r"d\.pt: .*final_layer"):
        load_model(tmp_path / "d.pt")


# =========================================================================== faults
SLEEPY_SNAKEFILE = """
rule all:
    output: "done.txt"
    shell: "sleep 45 && echo ok > {output}"
"""


def test_second_pipeline_run_in_one_project_refuses_with_a_lock_error(tmp_path):
    snakemake = Path(sys.executable).with_name("snakemake")
    if not snakemake.exists():
        pytest.skip("snakemake not installed next to this Python")
    (tmp_path / "Snakefile").write_text(SLEEPY_SNAKEFILE)
    cmd = [str(snakemake), "--cores", "1", "--snakefile", str(tmp_path / "Snakefile"), "--directory", str(tmp_path)]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    first = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        locks = tmp_path / ".snakemake" / "locks"
        deadline = time.monotonic() + 60
        while not (locks.is_dir() and any(locks.iterdir())):
            assert first.poll() is None, first.communicate()[0]
            assert time.monotonic() < deadline, "first run never took the lock"
            time.sleep(0.2)
        second = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert first.poll() is None, "the first run finished before the second was refused: lengthen the sleep"
        msg = second.stdout + second.stderr
        assert second.returncode != 0
        assert "LockException" in msg or "Directory cannot be locked" in msg, msg
        out, _ = first.communicate(timeout=120)
        assert first.returncode == 0, out  # the first run is not disturbed
        assert (tmp_path / "done.txt").read_text() == "ok\n"
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()


# =========================================================================== two engines, concurrent runs
def _rules_planned(dry_run_text: str) -> set[str]:
    return {
        line.split()[1].rstrip(":") for line in dry_run_text.splitlines() if line.startswith(("rule ", "localrule "))
    }


def _run_long(cmd: list[str], cwd: Path, timeout: int = 2700) -> str:
    from helpers import pipeline_env as _env

    p = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)
    out = p.stdout + p.stderr
    assert p.returncode == 0, f"{' '.join(cmd)} failed:\n{out[-4000:]}"
    return out


#: the source model's branch of the reduced demo: demo data -> index -> variant -> trained checkpoint
#: -> evaluation (every kind of DVC-tracked output, at a third of the demo's cost)
SOURCE_EVAL = "results/eval/source-isbi2015/metrics.json"
SOURCE_STAGE = "evaluate_source@isbi2015"


@pytest.mark.pipeline
@pytest.mark.slow
def test_snakemake_run_is_recorded_by_dvc_and_a_dvc_checkout_leaves_snakemake_nothing_to_do(tmp_path):
    """Both directions of "DVC tracks data and checkpoints whichever engine ran" on the reduced demo."""
    import shutil

    import yaml

    from helpers import TINY_DEMO as TINY
    from helpers import copy_workflow as _copy
    from helpers import set_dotted as _set

    d = _copy(tmp_path / "sync")
    params = yaml.safe_load((d / "params.yaml").read_text())
    for k, v in TINY.items():
        _set(params, k, v)
    (d / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    smk = [sys.executable, "-m", "snakemake", SOURCE_EVAL, "--cores", "2", "--resources", "gpu=1"]
    dvc = [sys.executable, "-m", "dvc"]
    _run_long(dvc + ["init", "--no-scm", "-q"], d)
    # Snakemake -> DVC: the run's outputs are recorded in dvc.lock (onsuccess), nothing recomputed
    out = _run_long(smk, d)
    assert "DVC: recorded" in out, out[-3000:]
    lock = yaml.safe_load((d / "dvc.lock").read_text())["stages"]
    assert {
        "make_demo@resources/demo",
        "index@isbi2015",
        "preprocess_source@isbi2015",
        "train_source@isbi2015",
        SOURCE_STAGE,
    } <= set(lock), sorted(lock)
    status = _run_long(dvc + ["status", SOURCE_STAGE, "--with-deps"], d)
    assert "up to date" in status, status
    # DVC -> Snakemake: checkpoints and the variant restored by `dvc checkout` (same bytes, new mtimes)
    ckpts = sorted((d / "results" / "models").rglob("*.pt"))
    assert ckpts
    digests = {c: c.read_bytes() for c in ckpts}
    for c in ckpts:
        c.unlink()
    shutil.rmtree(d / "results" / "variants")
    time.sleep(1.1)
    _run_long(dvc + ["checkout", SOURCE_STAGE, "--with-deps"], d)
    assert {c: c.read_bytes() for c in ckpts} == digests
    plan = _run_long(smk + ["-n"], d)
    assert "Nothing to be done" in plan, plan[-3000:]
    # a run (not only a dry run) aligns the times too: it takes the engine lock after DVC gave its own back
    run = _run_long(smk, d)
    assert "Nothing to be done" in run and "could not check" not in run, run[-3000:]
    # params still count: a changed evaluation setting re-plans evaluation, never training/preprocessing
    text = (d / "params.yaml").read_text()
    _set(params, "evaluate.n_boot", 60)
    (d / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    planned = _rules_planned(_run_long(smk + ["-n"], d))
    assert planned and planned.isdisjoint({"make_demo", "index", "preprocess", "train_source", "finetune", "adapt"}), (
        planned
    )
    (d / "params.yaml").write_text(text)
    # Not covered (and not claimed): a fresh clone with no Snakemake metadata at all plans make_demo
    # again; there `dvc pull` + `dvc repro` (or `snakemake --touch`) is the way in.


@pytest.mark.pipeline
@pytest.mark.slow
def test_a_dry_run_with_other_params_during_a_run_changes_nothing_the_run_reads(tmp_path):
    """A dry run with another --config while a run works writes its own params file; the running
    jobs keep reading theirs. A second real run on overlapping outputs is refused by the lock."""
    import yaml

    from helpers import TINY_DEMO as TINY
    from helpers import config_set as _config_set
    from helpers import copy_workflow as _copy
    from helpers import pipeline_env as _env

    d = _copy(tmp_path / "conc")
    target = SOURCE_EVAL
    smk = [sys.executable, "-m", "snakemake", target, "--cores", "2", "--resources", "gpu=1"]
    mine = _config_set(TINY)
    other = _config_set({**TINY, "evaluate.n_boot": 7, "train.stages.source.epochs": 2})
    log = open(tmp_path / "real.log", "w")  # noqa: SIM115 (closed in finally); a file, not a pipe: nothing blocks the run while we wait
    real = subprocess.Popen(
        smk + ["--config", mine], cwd=d, env=_env(), stdout=log, stderr=subprocess.STDOUT, text=True
    )

    def real_output() -> str:
        log.flush()
        return (tmp_path / "real.log").read_text()[-4000:]

    try:
        locks = d / ".snakemake" / "locks"
        deadline = time.monotonic() + 900
        while not (locks.is_dir() and any(locks.iterdir())):
            assert real.poll() is None, real_output()
            assert time.monotonic() < deadline, "the run never took its lock"
            time.sleep(0.2)
        (params_file,) = (d / "results" / "params").glob("*.yaml")
        before = params_file.read_bytes()
        dry = subprocess.run(
            smk + ["-n", "--config", other], cwd=d, env=_env(), capture_output=True, text=True, timeout=900
        )
        # the dry run either plans, or (when it looks while a job of the real run is writing) refuses to
        # plan over that job's incomplete outputs; either way it must change nothing the real run reads
        dry_msg = dry.stdout + dry.stderr
        assert dry.returncode == 0 or "IncompleteFilesException" in dry_msg, dry_msg[-3000:]
        second = subprocess.run(
            smk + ["--config", other], cwd=d, env=_env(), capture_output=True, text=True, timeout=900
        )
        assert real.poll() is None, "the run ended before the dry run and the second run: nothing was tested"
        msg = second.stdout + second.stderr
        # refused: by the lock, or (when a job of the real run is writing) over its incomplete outputs
        assert second.returncode != 0 and any(
            w in msg for w in ("LockException", "Directory cannot be locked", "IncompleteFilesException")
        ), msg[-3000:]
        real.wait(timeout=2700)
        assert real.returncode == 0, real_output()
    finally:
        if real.poll() is None:
            real.kill()
            real.wait()
        log.close()
    assert params_file.read_bytes() == before
    assert len(list((d / "results" / "params").glob("*.yaml"))) == 2  # the dry run wrote its own file
    metrics = json.loads((d / target).read_text())
    read = metrics["command"].split("--params", 1)[1].split()[0]
    assert (d / read).resolve() == params_file.resolve()
    assert yaml.safe_load(params_file.read_text())["evaluate"]["n_boot"] == TINY["evaluate.n_boot"]
    assert yaml.safe_load(params_file.read_text())["train"]["stages"]["source"]["epochs"] == 1


# =========================================================================== one layout check, Aariz spacing
def _small_aariz(tmp_path: Path) -> Path:
    import yaml

    from cephalo.commands.make_demo import make_demo

    repo = Path(__file__).resolve().parents[1]
    demo = {**yaml.safe_load((repo / "params.yaml").read_text())["demo"]}
    demo["aariz"] = {**demo["aariz"], "n_train": 3, "n_valid": 3, "n_test": 3}
    demo["isbi2015"] = {**demo["isbi2015"], "n_train": 1, "n_test1": 1}
    make_demo(tmp_path / "demo", demo)
    return tmp_path / "demo" / "aariz"  # holds Aariz/


def _zip_tree(root: Path, out: Path) -> Path:
    import zipfile

    with zipfile.ZipFile(out, "w") as zf:
        for f in sorted(root.rglob("*")):
            zf.write(f, f.relative_to(root).as_posix())
    return out


def test_download_and_index_accept_the_same_aariz_tree_whatever_the_case_of_its_folders(tmp_path):
    import hashlib

    from cephalo.datasets.fetch.release import fetch_release

    root = _small_aariz(tmp_path)
    os.replace(root / "Aariz" / "train", root / "Aariz" / "Train")  # the official loader's spelling
    archive = _zip_tree(root, tmp_path / "Aariz.zip")
    sha = "sha256:" + hashlib.sha256(archive.read_bytes()).hexdigest()
    dest = fetch_release("aariz", tmp_path / "raw", archive=archive, known_hash=sha, progress=False)
    res = create_adapter("aariz").parse(dest)
    assert {r["split"] for r in res.rows} == {"train", "valid", "test"}
    assert res.rows and not [e for e in res.exclusions if "pixel" in e.reason]


def test_download_and_index_reject_the_same_incomplete_aariz_tree_with_the_same_message(tmp_path):
    import hashlib
    import shutil

    from cephalo.datasets.fetch.release import fetch_release
    from cephalo.errors import DownloadError

    root = _small_aariz(tmp_path)
    shutil.rmtree(root / "Aariz" / "valid" / "Cephalograms")
    archive = _zip_tree(root, tmp_path / "Aariz.zip")
    sha = "sha256:" + hashlib.sha256(archive.read_bytes()).hexdigest()
    with pytest.raises(DownloadError) as dl:
        fetch_release("aariz", tmp_path / "raw", archive=archive, known_hash=sha, progress=False)
    with pytest.raises(DataError) as ix:
        create_adapter("aariz").parse(root)
    assert not (tmp_path / "raw").exists()
    for e in (dl.value, ix.value):
        assert "missing Aariz/valid/Cephalograms/" in str(e), e


def _break_spacing(root: Path, how: str) -> str:
    csv = root / "Aariz" / "cephalogram_machine_mappings.csv"
    lines = csv.read_text(encoding="utf-8-sig").splitlines()
    victim = lines[1].split(",")[0]
    if how == "no row":
        lines = [lines[0]] + lines[2:]
    else:
        cells = lines[1].split(",")
        cells[2] = how
        lines[1] = ",".join(cells)
    csv.write_text("\ufeff" + "\n".join(lines) + "\n", encoding="utf-8")
    return victim


@pytest.mark.parametrize("how", ["no row", "0", "-0.1", ""])
def test_aariz_image_without_a_valid_pixel_size_is_an_error_unless_excluded_explicitly(tmp_path, how):
    root = _small_aariz(tmp_path)
    victim = _break_spacing(root, how)
    with pytest.raises(DataError) as e:
        create_adapter("aariz").parse(root)
    msg = str(e.value)
    assert victim in msg and "cephalogram_machine_mappings.csv" in msg and "missing_spacing: exclude" in msg
    res = create_adapter("aariz").parse(root, missing_spacing="exclude")
    assert [x.image_id for x in res.exclusions] == [victim]
    assert victim not in {r["image_id"] for r in res.rows}


def test_aariz_missing_spacing_reaches_the_quality_report_as_an_exclusion(tmp_path):
    root = _small_aariz(tmp_path)
    victim = _break_spacing(root, "0")
    spec = {"adapter": "aariz", "policy": "mean", "options": {"missing_spacing": "exclude"}}
    index_dataset("aariz", spec, root, tmp_path / "ix.parquet", tmp_path / "q", progress=False)
    report = (tmp_path / "q" / "quality.md").read_text()
    assert victim in report and "invalid pixel_size '0'" in report


# =========================================================================== temporaries with an owner
def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_temporary_names_carry_their_owner_and_only_stale_ones_are_swept(tmp_path):
    from cephalo.io import _host, atomic_path, is_stale, sweep_stale, temp_owner

    target = tmp_path / "index.parquet"
    target.write_text("old")
    host = _host()
    mine = tmp_path / f".index.parquet.{host}_{os.getpid()}_0000abcd.tmp"  # a running writer (this test)
    dead = tmp_path / f".index.parquet.{host}_{_dead_pid()}_0000abce.tmp"  # its writer was killed
    foreign_new = tmp_path / ".index.parquet.otherhost_1_0000abcf.tmp"  # another host, recent
    foreign_old = tmp_path / ".index.parquet.otherhost_2_0000abd0.tmp"  # another host, 2 days old
    legacy_old = tmp_path / ".index.parquet.k2j_x9aa.tmp"  # mkstemp name of an older version
    other_target = tmp_path / f".other.csv.{host}_{_dead_pid()}_0000abd1.tmp"
    for f in (mine, dead, foreign_new, foreign_old, legacy_old, other_target):
        f.write_text("partial")
    for f in (foreign_old, legacy_old):
        os.utime(f, (time.time() - 2 * 86400,) * 2)
    assert temp_owner(mine) == ("index.parquet", host, os.getpid())
    assert temp_owner(legacy_old) == ("index.parquet", "", None) and temp_owner(target) is None
    assert [is_stale(f) for f in (mine, dead, foreign_new, foreign_old, legacy_old)] == [False, True, False, True, True]
    assert sorted(sweep_stale(target)) == sorted([dead, foreign_old, legacy_old])
    assert mine.exists() and foreign_new.exists() and other_target.exists() and target.read_text() == "old"
    with atomic_path(tmp_path / "other.csv") as tmp:  # every writer sweeps its own target first
        assert temp_owner(tmp)[1:] == (host, os.getpid())
        tmp.write_text("new")
    assert not other_target.exists() and (tmp_path / "other.csv").read_text() == "new"


def test_a_killed_two_rename_swap_gets_its_previous_output_back(tmp_path):
    from cephalo.io import _host, atomic_dir

    target = tmp_path / "variant"
    old = tmp_path / f".variant.{_host()}_{_dead_pid()}_0000abcd.old"  # moved aside, then the writer died
    old.mkdir()
    (old / "images.npy").write_text("previous")
    half = tmp_path / f".variant.{_host()}_{_dead_pid()}_0000abce.tmp"
    half.mkdir()
    from cephalo.io import sweep_stale

    sweep_stale(target)
    assert (target / "images.npy").read_text() == "previous" and not old.exists() and not half.exists()
    with atomic_dir(target) as tmp:
        (tmp / "images.npy").write_text("new")
    assert (target / "images.npy").read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["variant"]


def test_cephalo_clean_lists_then_removes_stale_temporaries_in_a_project(tmp_path):
    from click.testing import CliRunner

    from cephalo.cli import main
    from cephalo.io import _host

    (tmp_path / "results" / "models").mkdir(parents=True)
    stale = tmp_path / "results" / "models" / f".last.pt.{_host()}_{_dead_pid()}_0000abcd.tmp"
    live = tmp_path / "results" / f".index.parquet.{_host()}_{os.getpid()}_0000abce.tmp"
    stale.write_bytes(b"")
    live.write_bytes(b"")
    r = CliRunner().invoke(main, ["clean", str(tmp_path), "--dry-run"])
    assert r.exit_code == 0 and f"would remove {stale}" in r.output and stale.exists()
    r = CliRunner().invoke(main, ["clean", str(tmp_path)])
    assert r.exit_code == 0 and "1 stale temporary removed" in r.output
    assert not stale.exists() and live.exists()


def test_os_errors_become_one_line_naming_the_path():
    import errno

    from cephalo.cli import os_error_message

    e = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/data/results/index.parquet")
    assert os_error_message(e) == "/data/results/index.parquet: No space left on device [ENOSPC]"
    e = OSError(errno.EXDEV, os.strerror(errno.EXDEV), "/a", None, "/b")
    assert os_error_message(e).startswith("/a -> /b: ")


def test_an_oserror_without_a_file_name_in_a_writer_names_the_target(tmp_path):
    import errno

    from cephalo.io import atomic_path

    with pytest.raises(OSError) as e, atomic_path(tmp_path / "metrics.json"):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert e.value.filename == str(tmp_path / "metrics.json") and e.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []
