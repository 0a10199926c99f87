"""ISBI 2015 adapter: a tiny release in the official layout, and the real images 001-300."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cephalo.datasets import create_adapter
from cephalo.errors import DataError
from cephalo.index import build_index, ground_truth, landmark_arrays
from cephalo.landmarks import ISBI19


def _pts(base: int) -> list[tuple[int, int]]:
    return [(base + 4 * k, base + 3 * k) for k in range(19)]


def _txt(path: Path, pts, trailing: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{x},{y}" for x, y in pts]
    if trailing:
        lines += ["1", "3", "2", "1", "2", "1", "2", "3"]  # classification lines, ignored
    path.write_text("\n".join(lines) + "\n")


def make_isbi(root: Path, wrapper: bool = True) -> Path:
    raw = root / "RawImage" / ("RawImage" if wrapper else "")
    for split, ids in (("TrainingData", ["001", "002"]), ("Test1Data", ["151"]), ("Test2Data", ["301"])):
        for i in ids:
            (raw / split).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.zeros((160, 150), np.uint8)).save(raw / split / f"{i}.bmp")
    ann = root / "AnnotationsByMD"
    for i in ("001", "002", "151", "301"):
        _txt(ann / "400_senior" / f"{i}.txt", _pts(10))
        _txt(ann / "400_junior" / f"{i}.txt", _pts(13))
        _txt(ann / "400_mean" / f"{i}.txt", _pts(11), trailing=False)
    # a malformed junior file: line 7 is not x,y
    bad = ann / "400_junior" / "002.txt"
    lines = bad.read_text().splitlines()
    lines[6] = "12 ; oops"
    bad.write_text("\n".join(lines))
    return root


def test_isbi_layout_wrapper_bmp_annotators(tmp_path):
    make_isbi(tmp_path)
    res = create_adapter("isbi2015").parse(tmp_path)
    df = build_index(res, tmp_path, progress=False)
    assert df["image_id"].nunique() == 4
    assert set(df["annotator"]) == {"senior", "junior", "mean"}
    split = df.drop_duplicates("image_id").set_index("image_id")["split"].to_dict()
    assert split == {"001": "train", "002": "train", "151": "test1", "301": "test2"}
    assert (df["spacing_x_mm"] == 0.1).all() and (df["device"] == "ISBI2015").all()
    assert (df["width"] == 150).all() and (df["height"] == 160).all()
    s = df[(df.image_id == "151") & (df.annotator == "senior")]
    np.testing.assert_array_equal(s[["x", "y"]].to_numpy(), np.array(_pts(10), float))
    assert list(s["landmark_symbol"]) == ISBI19.symbols
    # malformed junior 002: excluded with a reason naming the line, senior/mean kept
    (ex,) = res.exclusions
    assert ex.image_id == "002" and ex.annotator == "junior" and "line 7" in ex.reason
    assert set(df.loc[df.image_id == "002", "annotator"]) == {"senior", "mean"}


def test_isbi_without_wrapper_and_policies(tmp_path):
    make_isbi(tmp_path, wrapper=False)
    df = build_index(create_adapter("isbi2015").parse(tmp_path), progress=False)
    ids, sen = landmark_arrays(ground_truth(df, "senior"))
    _, mean = landmark_arrays(ground_truth(df, "mean"))
    np.testing.assert_array_equal(sen[0], np.array(_pts(10), float))
    np.testing.assert_array_equal(mean[0], np.array(_pts(11), float))  # the ready 400_mean is used
    with pytest.raises(DataError, match="no 'junior' annotation"):
        ground_truth(df, "junior")  # 002 lacks junior
    assert len(landmark_arrays(ground_truth(df, "junior", on_missing="drop"))[0]) == 3


def test_isbi_computed_mean_when_no_ready_mean(tmp_path):
    make_isbi(tmp_path)
    import shutil

    shutil.rmtree(tmp_path / "AnnotationsByMD" / "400_mean")
    df = build_index(create_adapter("isbi2015").parse(tmp_path), progress=False)
    ids, mean = landmark_arrays(ground_truth(df, "mean"))
    assert ids == ["001", "002", "151", "301"]
    np.testing.assert_array_equal(mean[0], np.array(_pts(10), float) + 1.5)  # (10 + 13) / 2, not rounded
    np.testing.assert_array_equal(mean[1], np.array(_pts(10), float))  # 002: senior only


def test_isbi_not_a_release(tmp_path):
    with pytest.raises(DataError, match="RawImage"):
        create_adapter("isbi2015").parse(tmp_path)


@pytest.mark.shared_data
def test_isbi_real_300_images(shared_data):
    res = create_adapter("isbi2015").parse(shared_data / "isbi2015")
    df = build_index(res, shared_data / "isbi2015", policy="mean", progress=False)
    assert df["image_id"].nunique() == 300
    assert len(df) == 300 * 19
    assert set(df["annotator"]) == {"mean"}
    img = df.drop_duplicates("image_id")
    assert img["split"].value_counts().to_dict() == {"train": 150, "test1": 150}
    assert (img["spacing_x_mm"] == 0.1).all() and (img["spacing_y_mm"] == 0.1).all()
    assert ((img["width"] == 1935) & (img["height"] == 2400)).all()
    assert not res.exclusions


def test_isbi_split_overrides_hold_out_a_validation_split(tmp_path):
    make_isbi(tmp_path)
    res = create_adapter("isbi2015").parse(tmp_path, split_overrides={"valid": "2-2"})
    df = build_index(res, tmp_path, progress=False)
    split = df.drop_duplicates("image_id").set_index("image_id")["split"].to_dict()
    assert split == {"001": "train", "002": "valid", "151": "test1", "301": "test2"}
    with pytest.raises(Exception, match="unknown option"):
        create_adapter("isbi2015").parse(tmp_path, split_override={"valid": "2"})
