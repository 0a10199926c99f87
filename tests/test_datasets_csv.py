"""Generic CSV table adapter, split assignment, and the adapter registry."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cephalo.datasets import DATASETS, assign_splits, create_adapter
from cephalo.errors import ConfigError, DataError
from cephalo.index import build_index, landmark_arrays


def _table(tmp_path, rows, header="image_path,landmark,x,y,annotator,split,spacing_x_mm,spacing_y_mm,device"):
    (tmp_path / "img").mkdir(exist_ok=True)
    for n in ("p1", "p2"):
        Image.fromarray(np.zeros((100, 80), np.uint8)).save(tmp_path / "img" / f"{n}.png")
    (tmp_path / "landmarks.csv").write_text(header + "\n" + "\n".join(rows) + "\n")


def test_csv_table(tmp_path):
    _table(
        tmp_path,
        [
            "img/p1.png,sella,10,20,senior,train,0.1,0.12,Dev A",
            "img/p1.png,N,30.5,40,senior,train,0.1,0.12,Dev A",
            "img/p2.png,sella,11,21,senior,test,0.1,0.1,Dev B",
            "img/p2.png,nasion,,,senior,test,0.1,0.1,Dev B",
        ],
    )
    res = create_adapter("csv").parse(tmp_path, catalogue="isbi19")
    df = build_index(res, tmp_path, progress=False)
    assert df["image_id"].nunique() == 2 and len(df) == 2 * 19
    img = df.drop_duplicates("image_id").set_index("image_id")
    assert img.loc["p1", "spacing_y_mm"] == 0.12 and img.loc["p2", "device"] == "Dev B"
    ids, c = landmark_arrays(df, ["sella", "nasion", "orbitale"])
    assert ids == ["p1", "p2"]
    np.testing.assert_array_equal(c[0, :2], [[10, 20], [30.5, 40]])
    assert np.isnan(c[1, 1]).all() and np.isnan(c[:, 2]).all()


def test_csv_custom_catalogue_and_split_option(tmp_path):
    _table(
        tmp_path,
        [f"img/p{i}.png,{lm},{5 + i},{30 + j}" for i in (1, 2) for j, lm in enumerate(["tip", "apex", "base"])],
        header="image_path,landmark,x,y",
    )
    with pytest.raises(ConfigError, match="spacing_mm"):
        create_adapter("csv").parse(tmp_path / "landmarks.csv", default_split="train")
    res = create_adapter("csv").parse(
        tmp_path / "landmarks.csv", spacing_mm=0.2, splits={"train": ["p1"], "test": ["p2"]}
    )
    assert res.catalogue.names == ["tip", "apex", "base"]
    df = build_index(res, progress=False)
    assert set(df["annotator"]) == {"default"} and (df["spacing_x_mm"] == 0.2).all()
    assert df.drop_duplicates("image_id")["split"].tolist() == ["train", "test"]


def test_csv_bad_rows(tmp_path):
    _table(tmp_path, ["img/p1.png,sella,ten,20,a,train,0.1,0.1,D"])
    with pytest.raises(DataError, match="row 2.*'x'"):
        create_adapter("csv").parse(tmp_path, catalogue="isbi19")
    _table(tmp_path, ["img/p1.png,nose,1,2,a,train,0.1,0.1,D"])
    with pytest.raises(DataError, match="'nose'"):
        create_adapter("csv").parse(tmp_path, catalogue="isbi19")
    (tmp_path / "landmarks.csv").write_text("image_path,x,y\n")
    with pytest.raises(DataError, match="landmark"):
        create_adapter("csv").parse(tmp_path)


def test_assign_splits():
    ids = [f"{i:03d}" for i in range(1, 11)]
    s = assign_splits(ids, {"train": "1-6", "valid": "007,008", "test": ["9", "010"]})
    assert [s[i] for i in ids] == ["train"] * 6 + ["valid"] * 2 + ["test"] * 2
    with pytest.raises(ConfigError, match="several splits"):
        assign_splits(ids, {"train": "1-6", "test": "6-10"})
    assert assign_splits(ids, {"test": "9-10"}, default="train")["001"] == "train"


def test_registry():
    assert set(DATASETS) == {"aariz", "isbi2015", "cldetection2023", "labelme", "csv"}
    for name in DATASETS:
        assert create_adapter(name).name == name
    with pytest.raises(ValueError, match="valid:.*aariz"):
        create_adapter("nope")
