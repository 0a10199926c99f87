"""Aariz adapter on a tiny release built here in the official layout."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from cephalo.datasets import create_adapter
from cephalo.errors import DataError
from cephalo.index import build_index, ground_truth, landmark_arrays
from cephalo.landmarks import AARIZ29
from helpers import AARIZ_CSV, make_aariz


def test_aariz_official_layout(tmp_path):
    make_aariz(tmp_path)
    res = create_adapter("aariz").parse(tmp_path)
    df = build_index(res, tmp_path, progress=False)
    assert df["image_id"].nunique() == 3
    assert len(df) == 3 * 29 * 2
    assert set(df["annotator"]) == {"senior", "junior"}
    img = df.drop_duplicates("image_id").set_index("image_id")
    assert img.loc["idb", "spacing_x_mm"] == img.loc["idb", "spacing_y_mm"] == 0.139
    assert img.loc["idb", "device"] == "ProMax 2D"
    assert (img.loc["idb", "width"], img.loc["idb", "height"]) == (240, 180)
    assert img.loc["ida", "split"] == "train" and img.loc["idc", "split"] == "test"
    assert [int(img.loc[i, "cvm_stage"]) for i in ("ida", "idb", "idc")] == [2, 3, 4]
    # landmark k of the senior file has x = 5 + 3k, y = 5 + 2k regardless of file order
    s = df[(df["annotator"] == "senior") & (df["image_id"] == "ida")].sort_values("landmark_index")
    np.testing.assert_array_equal(s["x"], 5 + 3 * np.arange(29))
    np.testing.assert_array_equal(s["y"], 5 + 2 * np.arange(29))
    assert list(s["landmark_name"]) == AARIZ29.names
    # format mismatch reported (CSV png, file jpg), not excluded
    probs = [p.problem for p in res.problems if p.image_id == "idb"]
    assert any("image_format mismatch" in p and "'png'" in p and "'jpg'" in p for p in probs), probs
    assert not res.exclusions


def test_aariz_shuffled_order_and_root_variants_give_identical_rows(tmp_path):
    make_aariz(tmp_path / "a")
    make_aariz(tmp_path / "b", split_case=("Train", "VALID", "Test"), bom=False)
    # shuffle differently in b and match by symbol only
    for p in (tmp_path / "b").rglob("Senior Orthodontists/*.json"):
        d = json.loads(p.read_text())
        random.Random(42).shuffle(d["landmarks"])
        for it in d["landmarks"]:
            it.pop("landmark_id")
        p.write_text(json.dumps(d))
    cols = ["image_id", "split", "annotator", "landmark_index", "x", "y", "spacing_x_mm", "device", "cvm_stage"]
    da = build_index(create_adapter("aariz").parse(tmp_path / "a"), progress=False)[cols]
    db = build_index(create_adapter("aariz").parse(tmp_path / "b" / "Aariz"), progress=False)[cols]
    assert da.equals(db)


def test_aariz_mean_policy_is_float_mean(tmp_path):
    make_aariz(tmp_path)
    df = build_index(create_adapter("aariz").parse(tmp_path), progress=False)
    g = ground_truth(df, "mean")
    ids, c = landmark_arrays(g, AARIZ29.names)
    assert ids == ["ida", "idb", "idc"]
    # senior 5 + 3k, junior 6 + 3k -> 5.5 + 3k, never rounded up
    np.testing.assert_array_equal(c[0, :, 0], 5.5 + 3 * np.arange(29))
    assert (g["annotator"] == "mean").all()


def test_aariz_duplicate_landmark_excludes_that_file(tmp_path):
    make_aariz(tmp_path)
    p = tmp_path / "Aariz/train/Annotations/Cephalometric Landmarks/Junior Orthodontists/ida.json"
    d = json.loads(p.read_text())
    d["landmarks"][1] = dict(d["landmarks"][0])
    p.write_text(json.dumps(d))
    res = create_adapter("aariz").parse(tmp_path)
    ex = [e for e in res.exclusions if e.image_id == "ida"]
    assert len(ex) == 1 and ex[0].annotator == "junior" and "duplicated" in ex[0].reason and ex[0].labels
    df = build_index(res, progress=False)
    assert set(df.loc[df["image_id"] == "ida", "annotator"]) == {"senior"}


def test_aariz_missing_layout_is_data_error(tmp_path):
    with pytest.raises(DataError, match="not an Aariz release"):
        create_adapter("aariz").parse(tmp_path)


def test_aariz_missing_csv_row_is_an_error_or_an_exclusion_when_asked(tmp_path):
    make_aariz(tmp_path)
    csv = tmp_path / "Aariz" / AARIZ_CSV
    csv.write_text(
        "\n".join(line for line in csv.read_text(encoding="utf-8-sig").splitlines() if not line.startswith("idc"))
    )
    with pytest.raises(DataError, match=r"idc\.bmp: no row in .*cephalogram_machine_mappings\.csv"):
        create_adapter("aariz").parse(tmp_path)
    res = create_adapter("aariz").parse(tmp_path, missing_spacing="exclude")
    assert any(e.image_id == "idc" and AARIZ_CSV in e.reason for e in res.exclusions)
    assert "idc" not in {r["image_id"] for r in res.rows}


def test_aariz_capitalised_split_folder_accepted_by_index_and_download_check(tmp_path):
    """`Train` instead of `train`: one layout check (the release spec's) for both commands."""
    from click.testing import CliRunner

    from cephalo.cli import main
    from cephalo.datasets import get_release
    from cephalo.datasets.fetch.layout import check_release_layout, validate_layout
    from cephalo.index import read_index

    make_aariz(tmp_path / "src", split_case=("Train", "valid", "test"))
    root = tmp_path / "src"
    assert (root / "Aariz" / "Train").is_dir() and not (root / "Aariz" / "train").exists()
    # the download's check on the folder it made, and the adapter's check on the release folder
    validate_layout(root, get_release("aariz").layout, source=str(root))
    check_release_layout("aariz", root)
    check_release_layout("aariz", root / "Aariz")
    params = tmp_path / "params.yaml"
    params.write_text("data:\n  datasets:\n    aariz:\n      adapter: aariz\n      policy: senior\n")
    out = tmp_path / "out" / "index.parquet"
    r = CliRunner().invoke(
        main,
        [
            "index",
            "--dataset",
            "aariz",
            "--root",
            str(root),
            "--out",
            str(out),
            "--report",
            str(tmp_path / "rep"),
            "--params",
            str(params),
        ],
    )
    assert r.exit_code == 0, r.output
    df = read_index(out)
    assert df["image_id"].nunique() == 3 and "train" in set(df["split"])
