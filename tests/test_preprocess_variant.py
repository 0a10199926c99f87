"""`cephalo preprocess` end to end on a tiny generated index: cache, variant index, fingerprint."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from cephalo import geometry as G
from cephalo.landmarks import ISBI19
from cephalo.preprocess import load_variant, normalise, preprocess_image, read_image

index_mod = pytest.importorskip("cephalo.index")

IMAGES = {  # image_id: (w, h, bit depth, split)
    "a1": (120, 150, 8, "train"),
    "a2": (140, 100, 8, "train"),
    "a3": (90, 131, 16, "test"),
}


def make_index(tmp: Path, *, sizes=IMAGES, corrupt_size: str | None = None) -> Path:
    """Write 3 PNGs (one 16-bit) and a two-annotator index following the cephalo.index schema."""
    rng = np.random.default_rng(0)
    img_dir = tmp / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for iid, (w, h, depth, split) in sizes.items():
        dtype = np.uint16 if depth == 16 else np.uint8
        top = 65535 if depth == 16 else 255
        img = (rng.uniform(0.1, 0.9, (h, w)) * top).astype(dtype)
        cv2.imwrite(str(img_dir / f"{iid}.png"), img)
        truth = np.stack([rng.uniform(5, w - 6, 19), rng.uniform(5, h - 6, 19)], -1)
        for ann, shift in (("senior", -1.0), ("junior", 1.5)):
            for k, lm in enumerate(ISBI19.landmarks):
                x, y = truth[k] + shift
                if iid == "a2" and k == 4 and ann == "junior":
                    x = y = np.nan  # one missing landmark
                rows.append(
                    dict(
                        dataset="demo",
                        image_id=iid,
                        split=split,
                        image_path=str(img_dir / f"{iid}.png"),
                        width=w + (7 if iid == corrupt_size else 0),
                        height=h,
                        spacing_x_mm=0.1,
                        spacing_y_mm=0.1,
                        device="dev",
                        annotator=ann,
                        landmark_index=k,
                        landmark_name=lm.name,
                        landmark_symbol=lm.symbol,
                        x=x,
                        y=y,
                        visible=bool(np.isfinite(x)),
                    )
                )
    df = pd.DataFrame(rows)
    df["cvm_stage"] = pd.array([pd.NA] * len(df), dtype="Int8")
    meta = {
        "catalogue": {"key": ISBI19.key, "names": ISBI19.names},
        "source": {"root": str(tmp), "dataset": "demo"},
        "policy": "mean",
    }
    path = tmp / "index.parquet"
    index_mod.write_index(df, path, meta)
    return path


def write_params(tmp: Path, variants: dict) -> Path:
    p = tmp / "params.yaml"
    p.write_text(yaml.safe_dump({"variants": variants}))
    return p


def run_cli(args, capsys):
    from cephalo.cli import run

    old = sys.argv
    sys.argv = ["cephalo", *args]
    try:
        with pytest.raises(SystemExit) as e:
            run()
    finally:
        sys.argv = old
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def test_preprocess_cli_end_to_end(tmp_path, capsys):
    index = make_index(tmp_path)
    params = write_params(
        tmp_path,
        {
            "lb": {"steps": [{"letterbox": {"size": 64}}], "normalisation": "imagenet"},
            "lb_senior": {"steps": [{"letterbox": {"size": 64}}], "ground_truth": "senior"},
        },
    )
    out = tmp_path / "variants" / "lb"
    code, so, err = run_cli(
        [
            "preprocess",
            "--index",
            str(index),
            "--variant",
            "lb",
            "--out",
            str(out),
            "--params",
            str(params),
            "--no-progress",
        ],
        capsys,
    )
    assert code == 0, err
    assert "3 images preprocessed" in so

    v = load_variant(out)
    assert len(v) == 3 and v.image_ids == ["a1", "a2", "a3"]
    assert v.images.shape == (3, 64, 64) and v.images.dtype == np.uint16  # one 16-bit source -> uint16 cache
    assert isinstance(v.images, np.memmap)
    assert v.input_size == (64, 64) and v.landmark_names == ISBI19.names
    assert list(v.splits) == ["train", "train", "test"]
    np.testing.assert_array_equal(v.orig_sizes, [[120, 150], [140, 100], [90, 131]])
    np.testing.assert_allclose(v.spacing, 0.1)
    # ground truth = float mean of the two annotators (junior missing on a2/landmark 4 -> senior alone)
    _, sen = index_mod.landmark_arrays(index_mod.ground_truth(index_mod.read_index(index), "senior"), ISBI19.names)
    _, jun = index_mod.landmark_arrays(index_mod.ground_truth(index_mod.read_index(index), "junior"), ISBI19.names)
    expected = np.where(np.isnan(jun), sen, (sen + jun) / 2)
    np.testing.assert_allclose(v.landmarks_original, expected)
    np.testing.assert_allclose(v.landmarks, G.apply_affine(v.affines, v.landmarks_original))
    np.testing.assert_allclose(v.annotators["senior"], G.apply_affine(v.affines, sen))
    assert np.isnan(v.annotators["junior"][1, 4]).all() and np.isfinite(v.landmarks[1, 4]).all()
    # round trip back to original pixels
    back = G.apply_affine(np.stack([G.invert(m) for m in v.affines]), v.landmarks)
    assert np.nanmax(np.abs(back - v.landmarks_original)) < 1e-3
    # the cache equals single-image inference preprocessing (8-bit sources scaled by 257)
    for k, iid in enumerate(v.image_ids):
        img = read_image(tmp_path / "images" / f"{iid}.png")
        if img.dtype == np.uint8:
            img = img.astype(np.uint16) * 257
        ref, m = preprocess_image(img, v.spec)
        np.testing.assert_array_equal(v.images[k], ref)
        np.testing.assert_allclose(m, v.affines[k])
        np.testing.assert_allclose(m, G.letterbox_geometry(v.orig_sizes[k], 64).affine())
    meta = json.loads((out / "variant.json").read_text())
    assert meta["normalisation"]["name"] == "imagenet" and meta["ground_truth"] == "mean"
    assert meta["source_index"]["sha256"] and meta["fingerprint"]
    t = normalise(v.images[:2], v.normalisation)
    assert tuple(t.shape) == (2, 3, 64, 64)

    # unchanged -> skipped; changed spec or --force -> recomputed
    mtime = (out / "images.npy").stat().st_mtime_ns
    code, so, _ = run_cli(
        [
            "preprocess",
            "--index",
            str(index),
            "--variant",
            "lb",
            "--out",
            str(out),
            "--params",
            str(params),
            "--no-progress",
        ],
        capsys,
    )
    assert code == 0 and "up to date" in so and (out / "images.npy").stat().st_mtime_ns == mtime
    code, so, _ = run_cli(
        [
            "preprocess",
            "--index",
            str(index),
            "--variant",
            "lb_senior",
            "--out",
            str(out),
            "--params",
            str(params),
            "--no-progress",
        ],
        capsys,
    )
    assert code == 0 and "preprocessed" in so
    np.testing.assert_allclose(load_variant(out).landmarks_original, sen)
    code, so, _ = run_cli(
        [
            "preprocess",
            "--index",
            str(index),
            "--variant",
            "lb_senior",
            "--out",
            str(out),
            "--params",
            str(params),
            "--no-progress",
            "--force",
        ],
        capsys,
    )
    assert code == 0 and "preprocessed" in so


def test_histogram_match_variant_stores_its_reference(tmp_path):
    from cephalo.preprocess import build_variant

    index = make_index(tmp_path)
    res = build_variant(
        index,
        {"steps": [{"histogram_match": {"n_quantiles": 64}}, {"stretch": {"size": 32}}]},
        tmp_path / "hm",
        progress=False,
    )
    v = load_variant(res.out_dir)
    step = v.spec["steps"][0]
    assert step["step"] == "histogram_match" and len(step["quantiles"]) == 64
    assert step["reference_source"]["n_images"] == 2  # the two train images
    ref = np.load(res.out_dir / "histogram_reference.npz")
    assert ref["hist16"].sum() == 120 * 150 + 140 * 100
    # inference reproduces the cache from the stored spec alone
    img = read_image(tmp_path / "images" / "a3.png")
    np.testing.assert_array_equal(preprocess_image(img, v.spec)[0], v.images[2])


def test_bad_inputs_exit_1_with_one_line(tmp_path, capsys):
    index = make_index(tmp_path / "bad", corrupt_size="a2")
    params = write_params(tmp_path, {"lb": {"steps": ["letterbox"]}, "nogeo": {"steps": ["clahe"]}})
    out = tmp_path / "out"
    code, _, err = run_cli(
        [
            "preprocess",
            "--index",
            str(index),
            "--variant",
            "lb",
            "--out",
            str(out),
            "--params",
            str(params),
            "--no-progress",
        ],
        capsys,
    )
    assert code == 1 and "a2.png" in err and "index says 147x100" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()  # nothing half-written
    for variant, msg in (("nogeo", "fixed output size"), ("missing", "variants.missing")):
        code, _, err = run_cli(
            [
                "preprocess",
                "--index",
                str(index),
                "--variant",
                variant,
                "--out",
                str(out),
                "--params",
                str(params),
                "--no-progress",
            ],
            capsys,
        )
        assert code == 1 and msg in err, err
    # a typo anywhere in the params file stops every command (the whole file is validated once)
    (tmp_path / "typo").mkdir()
    typo = write_params(tmp_path / "typo", {"lb": {"steps": ["letterbox"]}, "typo": {"steps": ["lettrbox"]}})
    code, _, err = run_cli(
        [
            "preprocess",
            "--index",
            str(index),
            "--variant",
            "lb",
            "--out",
            str(out),
            "--params",
            str(typo),
            "--no-progress",
        ],
        capsys,
    )
    assert code == 1 and "variants.typo.steps[0]: unknown step 'lettrbox' (did you mean 'letterbox'?)" in err, err


def test_output_independent_of_worker_count_and_help(tmp_path):
    from click.testing import CliRunner

    from cephalo.cli import main
    from cephalo.preprocess import HF_HRNET_SPEC, build_variant

    index = make_index(tmp_path)
    spec = {"steps": ["clahe", {"spacing": {"spacing_mm": 0.5, "fov_mm": 60}}]}
    a = build_variant(index, spec, tmp_path / "w1", workers=1, progress=False)
    b = build_variant(index, spec, tmp_path / "w3", workers=3, progress=False)
    assert a.fingerprint == b.fingerprint
    np.testing.assert_array_equal(load_variant(a.out_dir).images, load_variant(b.out_dir).images)
    # the public HRNet spec is letterbox 768 bicubic
    img = read_image(tmp_path / "images" / "a1.png")
    np.testing.assert_allclose(preprocess_image(img, HF_HRNET_SPEC)[1], G.letterbox_geometry((120, 150), 768).affine())
    res = CliRunner().invoke(main, ["preprocess", "--help"])
    assert res.exit_code == 0 and "--variant" in res.output and "--index" in res.output


def test_variant_pickles_without_copying_the_cache(tmp_path):
    import pickle

    from cephalo.preprocess import build_variant

    res = build_variant(make_index(tmp_path), {"steps": [{"letterbox": {"size": 256}}]}, tmp_path / "v", progress=False)
    v = load_variant(res.out_dir)
    blob = pickle.dumps(v)
    assert len(blob) < v.images.nbytes  # the images are not in the pickle
    w = pickle.loads(blob)
    assert isinstance(w.images, np.memmap)
    np.testing.assert_array_equal(w.images, v.images)
    np.testing.assert_array_equal(w.landmarks, v.landmarks)


def test_write_variant_is_the_one_writer_synthetic_variants_use(tmp_path):
    """Synthetic variants go through preprocess.variant.write_variant: the result loads with
    load_variant, carries the current format, and a table of the wrong length is refused
    before anything is written."""
    from cephalo.errors import ConfigError
    from cephalo.preprocess.variant import (
        FORMAT_VERSION,
        ImagesShape,
        variant_columns,
        variant_meta,
        write_variant,
    )
    from cephalo.train.synthetic import make_synthetic_variant

    out = make_synthetic_variant(tmp_path / "syn", n_images=6, size=32, landmark_names=("a", "b"))
    v = load_variant(out)
    meta = json.loads((out / "variant.json").read_text())
    assert meta["format"] == "cephalo-variant" and meta["format_version"] == FORMAT_VERSION
    assert meta["n_images"] == 6 and meta["landmark_names"] == ["a", "b"]
    assert v.images.shape == (6, 32, 32) and v.landmarks.shape == (6, 2, 2)

    n = 2
    aff = np.tile(np.array([[1.0, 0, 0], [0, 1.0, 0]]), (n, 1, 1))
    lm = np.zeros((n, 1, 2))
    rows = {"image_id": ["x0", "x1"], "split": ["train", "valid"]}
    cols = variant_columns(rows, aff, ["p"], lm, lm)
    assert set(cols) >= {"a00", "a12", "p_x", "p_y", "p_x_orig", "p_y_orig"}
    meta2 = variant_meta(
        name="t",
        spec={},
        ground_truth="mean",
        normalisation={},
        landmark_names=["p"],
        annotators=[],
        images=ImagesShape(n_images=3, input_size=(4, 4), dtype="uint8"),
        source_index={},
        reference_indexes={},
        fingerprint="f",
    )
    with pytest.raises(ConfigError):
        write_variant(tmp_path / "bad", np.zeros((n, 4, 4), np.uint8), cols, meta2)
    assert not (tmp_path / "bad").exists()
