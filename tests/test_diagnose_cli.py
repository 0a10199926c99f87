"""`cephalo diagnose`: prediction files with each classic mistake, built from the demo's ground truth,
are diagnosed by name and the MRE after undoing the mistake matches the correct predictions'."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from cephalo.cli import main
from cephalo.commands.make_demo import make_demo
from cephalo.evaluate.metrics import radial_errors_mm
from cephalo.geometry import apply_affine, compose, letterbox_geometry, resize_affine, scale_translate
from cephalo.index import ground_truth, images_table, index_dataset, landmark_arrays
from cephalo.landmarks import AARIZ29, ISBI19

NOISE_MM = 1.5  # scatter of the "correct" predictions (a decent model)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A small demo Aariz release (3 devices, spacings 0.65-0.9 mm/px), indexed; GT of its test split."""
    root = tmp_path_factory.mktemp("diagdemo")
    make_demo(
        root / "demo",
        {"seed": 11, "isbi2015": {"n_train": 1, "n_test1": 0}, "aariz": {"n_train": 1, "n_valid": 1, "n_test": 9}},
    )
    index = root / "aariz.parquet"
    index_dataset(
        "aariz",
        {"adapter": "aariz", "policy": "mean", "options": {"annotators": ["senior", "junior"]}},
        root / "demo" / "aariz",
        index,
        progress=False,
    )
    import cephalo.index as ci

    df = ci.read_index(index)
    gt_df = ground_truth(df[df["split"] == "test"], "mean")
    ids, gt = landmark_arrays(gt_df, AARIZ29.names)
    imgs = images_table(gt_df)
    sp = imgs[["spacing_x_mm", "spacing_y_mm"]].to_numpy(float)
    sizes = imgs[["width", "height"]].to_numpy(int)
    rng = np.random.default_rng(0)
    good = gt + rng.normal(0, NOISE_MM / np.sqrt(np.pi / 2), gt.shape) / sp[:, None, :]
    good_mre = float(np.nanmean(radial_errors_mm(good, gt, sp)))
    return {
        "root": root,
        "index": index,
        "ids": ids,
        "gt": gt,
        "good": good,
        "sp": sp,
        "sizes": sizes,
        "good_mre": good_mre,
    }


def _write_csv(path: Path, ids, coords, names=AARIZ29.names, by_index=False, cols=("x", "y")) -> Path:
    rows = []
    for i, iid in enumerate(ids):
        for k, nm in enumerate(names):
            lm = {"landmark_index": k} if by_index else {"landmark": nm}
            rows.append({"image_id": iid, **lm, cols[0]: coords[i, k, 0], cols[1]: coords[i, k, 1]})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _diagnose(demo, pred_file: Path, out: Path, *extra) -> dict:
    r = CliRunner().invoke(
        main,
        [
            "diagnose",
            "--predictions",
            str(pred_file),
            "--index",
            str(demo["index"]),
            "--split",
            "test",
            "--out",
            str(out),
            *extra,
        ],
    )
    assert r.exit_code == 0, r.output
    assert (out / "diagnosis.md").is_file() and (out / "plots" / "diagnosis.png").is_file()
    return json.loads((out / "diagnosis.json").read_text())


def _per_image(demo, fn):
    return np.stack(
        [fn(tuple(int(v) for v in demo["sizes"][i]), demo["sp"][i], demo["good"][i]) for i in range(len(demo["ids"]))]
    )


MISTAKES = {
    # name: (function (w, h), spacing, correct px -> what the file holds, expected code)
    "letterbox_256": (lambda wh, sp, p: apply_affine(letterbox_geometry(wh, 256).affine(), p), "letterbox_frame"),
    "letterbox_768": (lambda wh, sp, p: apply_affine(letterbox_geometry(wh, 768).affine(), p), "letterbox_frame"),
    "stretch_512": (lambda wh, sp, p: apply_affine(resize_affine(wh, (512, 512)), p), "stretch_frame"),
    "heatmap_stride4": (
        lambda wh, sp, p: apply_affine(
            compose(letterbox_geometry(wh, 256).affine(), resize_affine((256, 256), (64, 64))), p
        ),
        "heatmap_frame",
    ),
    "normalised": (lambda wh, sp, p: apply_affine(scale_translate(1 / wh[0], 1 / wh[1]), p), "normalised"),
    "swapped_axes": (lambda wh, sp, p: p[:, ::-1], "swapped_axes"),
    "mirror": (lambda wh, sp, p: apply_affine(scale_translate(-1, 1, wh[0] - 1, 0), p), "mirror"),
    "mm_not_px": (lambda wh, sp, p: apply_affine(scale_translate(sp[0], sp[1]), p), "mm_not_px"),
    "offset": (lambda wh, sp, p: p + np.array([9.0, -6.0]), "residual_offset"),
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_each_mistake_is_named_and_undone(demo, tmp_path, mistake):
    fn, code = MISTAKES[mistake]
    wrong = _per_image(demo, fn)
    f = _write_csv(tmp_path / "pred.csv", demo["ids"], wrong)
    d = _diagnose(demo, f, tmp_path / "out")
    assert d["mistakes"], d["summary"]
    assert d["mistakes"][0]["code"] == code, d["summary"]
    assert d["mre_mm"] > d["mre_after_mm"] + 1.0
    assert d["mre_after_mm"] == pytest.approx(demo["good_mre"], abs=0.05)
    md = (tmp_path / "out" / "diagnosis.md").read_text()
    assert d["mistakes"][0]["title"] in md and "MRE" in md


def test_letterbox_size_scale_and_pads_are_reported(demo, tmp_path):
    wrong = _per_image(demo, MISTAKES["letterbox_768"][0])
    d = _diagnose(demo, _write_csv(tmp_path / "p.csv", demo["ids"], wrong), tmp_path / "out")
    m = d["mistakes"][0]
    w, h = demo["sizes"][0]
    lb = letterbox_geometry((int(w), int(h)), 768)
    assert m["details"]["size"] == [768, 768]
    assert m["details"]["scale_example"] == pytest.approx(lb.scale) and m["details"]["pads_example"] == list(lb.pad)


def test_constant_spacing_instead_of_each_images(demo, tmp_path):
    """The file holds mm made with one spacing (0.1 mm/px) for every image; read as mm with each image's."""
    mm_const = demo["good"] * 0.1
    f = _write_csv(tmp_path / "p.csv", demo["ids"], mm_const, cols=("x_mm", "y_mm"))
    d = _diagnose(demo, f, tmp_path / "out")
    assert d["units"] == "mm"
    assert d["mistakes"][0]["code"] == "constant_spacing" and d["mistakes"][0]["details"]["spacing_mm"] == 0.1
    assert d["mre_after_mm"] == pytest.approx(demo["good_mre"], abs=0.05)


def test_isbi_order_in_an_aariz_file_is_named(demo, tmp_path):
    """Indices declared in the Aariz catalogue but written in ISBI 2015 order (19 landmarks)."""
    pos = [AARIZ29.names.index(n) for n in ISBI19.names]
    f = _write_csv(tmp_path / "p.csv", demo["ids"], demo["good"][:, pos], names=ISBI19.names, by_index=True)
    d = _diagnose(demo, f, tmp_path / "out", "--catalogue", "aariz29")
    assert d["mistakes"][0]["code"] == "landmark_order" and d["mistakes"][0]["details"]["catalogue"] == "isbi19"
    correct = float(np.nanmean(radial_errors_mm(demo["good"][:, pos], demo["gt"][:, pos], demo["sp"])))
    assert d["mre_after_mm"] == pytest.approx(correct, abs=0.05)


def test_collapse_toward_the_centre_is_named_and_not_undone(demo, tmp_path):
    """Soft-argmax over flat heatmaps: every landmark near the image centre, slightly pulled to its truth."""
    centre = (demo["sizes"] - 1) / 2.0
    wrong = centre[:, None, :] + 0.08 * (demo["good"] - centre[:, None, :])
    d = _diagnose(demo, _write_csv(tmp_path / "p.csv", demo["ids"], wrong), tmp_path / "out")
    assert d["mistakes"][0]["code"] == "collapse" and "toward the image centre" in d["mistakes"][0]["title"]
    assert d["mistakes"][0]["mre_after_mm"] is None and d["mre_mm"] > 20
    assert "cannot be undone" in d["summary"]


def test_correct_predictions_no_mistake_and_per_landmark_picture(demo, tmp_path):
    d = _diagnose(demo, _write_csv(tmp_path / "p.csv", demo["ids"], demo["good"]), tmp_path / "out")
    assert d["mistakes"] == [] and d["mre_mm"] == pytest.approx(demo["good_mre"], abs=1e-9)
    assert "No frame, unit, axis or landmark-order mistake" in d["summary"]
    per = pd.read_csv(tmp_path / "out" / "per_landmark.csv")
    assert len(per) == 29 and {"landmark", "mre_mm", "mre_after_mm"} <= set(per.columns)


def test_cephalo_predict_json_and_id_mapping_json(demo, tmp_path):
    wrong = _per_image(demo, MISTAKES["swapped_axes"][0])
    doc = {
        "format": "cephalo-predictions",
        "images": [
            {
                "image_id": iid,
                "file": f"/x/{iid}.png",
                "landmarks": [
                    {"name": n, "symbol": AARIZ29[k].symbol, "x": float(wrong[i, k, 0]), "y": float(wrong[i, k, 1])}
                    for k, n in enumerate(AARIZ29.names)
                ],
            }
            for i, iid in enumerate(demo["ids"])
        ],
    }
    (tmp_path / "p.json").write_text(json.dumps(doc))
    d = _diagnose(demo, tmp_path / "p.json", tmp_path / "o1")
    assert d["mistakes"][0]["code"] == "swapped_axes"
    # {file name: [[x, y], ...]} in catalogue order, symbols not needed
    doc2 = {f"{iid}.png": wrong[i].tolist() for i, iid in enumerate(demo["ids"])}
    (tmp_path / "q.json").write_text(json.dumps(doc2))
    d2 = _diagnose(demo, tmp_path / "q.json", tmp_path / "o2")
    assert d2["mistakes"][0]["code"] == "swapped_axes"
    assert d2["mre_after_mm"] == pytest.approx(demo["good_mre"], abs=0.05)


def test_bad_files_are_one_line_errors_and_write_nothing(demo, tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "bad.csv"
    bad.write_text("image_id,foo,x,y\na,b,1,2\n")
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "cephalo",
            "diagnose",
            "--predictions",
            str(bad),
            "--index",
            str(demo["index"]),
            "--split",
            "test",
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 1 and "no landmark column" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert str(bad) in p.stderr and not (tmp_path / "o").exists()
    unknown = _write_csv(tmp_path / "u.csv", ["nope"] * 1, demo["good"][:1])
    r = CliRunner().invoke(
        main,
        [
            "diagnose",
            "--predictions",
            str(unknown),
            "--index",
            str(demo["index"]),
            "--split",
            "test",
            "--out",
            str(tmp_path / "o2"),
        ],
    )
    assert r.exit_code != 0 and "no image of the file is in split" in str(r.exception)


def test_ids_are_text_and_file_names_or_numbers_match_the_index(tmp_path):
    from cephalo.commands.diagnose import match_ids, read_predictions

    f = tmp_path / "p.csv"
    f.write_text("image_id,landmark,x,y\n076,sella,1,2\n001,sella,3,4\n")
    table, units = read_predictions(f)
    assert list(table["image_id"]) == ["076", "001"] and units == "px"
    mapped, how = match_ids(["076", "x/001.png", "76", "2", "abc"], ["076", "001", "002", "abc"])
    assert mapped == ["076", "001", "076", "002", "abc"]
    assert how == {"by_file_name": 1, "by_number": 2}


def test_messy_rows_are_counted_not_dropped_silently(demo, tmp_path):
    f = _write_csv(tmp_path / "p.csv", demo["ids"], demo["good"])
    df = pd.read_csv(f, dtype=str)
    dup = df.iloc[:3].copy()
    dup["x"] = "9999"  # a landmark given twice: the first row counts, the second is counted
    nan = df.iloc[3:5].copy()
    df = df.drop(index=[3, 4])
    nan["x"] = "nan"
    extra = df.iloc[:2].copy()
    extra["image_id"] = "not-in-the-index"
    pd.concat([df, dup, nan, extra]).to_csv(f, index=False)
    d = _diagnose(demo, f, tmp_path / "out")
    assert d["mistakes"] == []
    inp = d["input"]
    assert inp["duplicated_rows_first_used"] == 3 and inp["rows_with_nan_coordinates"] == 2
    assert inp["images_not_in_split"] == 1 and inp["images_diagnosed"] == len(demo["ids"])
    assert "3 duplicated rows first used" in d["summary"] and "2 rows with nan coordinates" in d["summary"]
    assert (tmp_path / "out" / "plots" / "corrections.png").is_file()
    md = (tmp_path / "out" / "diagnosis.md").read_text()
    assert "## Input" in md and "duplicated rows first used: 3" in md


def test_a_mirror_on_one_device_is_named_for_that_device_only(demo, tmp_path):
    import cephalo.index as ci

    imgs = images_table(ground_truth(ci.read_index(demo["index"]).query("split == 'test'"), "mean"))
    dev = imgs["device"].astype(str).to_numpy()
    one = sorted(set(dev))[0]
    wrong = demo["good"].copy()
    for i in np.flatnonzero(dev == one):  # x -> width - 1 - x, written by hand
        wrong[i, :, 0] = demo["sizes"][i, 0] - 1 - wrong[i, :, 0]
    d = _diagnose(demo, _write_csv(tmp_path / "p.csv", demo["ids"], wrong), tmp_path / "out")
    assert [(m["code"], m["group"]) for m in d["mistakes"]] == [("mirror", f"device={one}")], d["summary"]
    assert d["mre_after_mm"] == pytest.approx(demo["good_mre"], abs=0.02)
