"""The Parquet landmark index: schema, round trip, hash, validation errors, policies, report, CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image

from cephalo.datasets.base import AdapterResult, annotation_rows
from cephalo.errors import DataError
from cephalo.index import (
    SCHEMA,
    build_index,
    ground_truth,
    images_table,
    index_hash,
    landmark_arrays,
    quality_report,
    read_index,
    read_index_metadata,
    validate_index,
    write_index,
    write_quality_report,
)
from cephalo.landmarks import ISBI19


def _result(
    tmp_path,
    coords_fn=None,
    annotators=("senior", "junior"),
    spacing=(0.1, 0.1),
    n=3,
    size=(200, 240),
    splits=("train", "train", "test"),
) -> AdapterResult:
    """n images 200x240 (W x H); senior landmark k at (20 + 5k, 30 + 6k); junior 3 px right, 4 down."""
    res = AdapterResult("toy", "test", "0", ISBI19)
    for i in range(n):
        p = tmp_path / "img" / f"{i:03d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full(size[::-1], 10 + i, np.uint8)).save(p)
        for j, a in enumerate(annotators):
            coords = {lm.name: (20.0 + 5 * k + 3 * j, 30.0 + 6 * k + 4 * j) for k, lm in enumerate(ISBI19)}
            if coords_fn:
                coords = coords_fn(i, a, coords)
            res.rows += annotation_rows(
                dataset="toy",
                image_id=f"{i:03d}",
                split=splits[i],
                image_path=p.resolve(),
                spacing=spacing,
                device="D1" if i < 2 else "D2",
                annotator=a,
                coords=coords,
                catalogue=ISBI19,
            )
    return res


def test_round_trip_schema_metadata_and_hash(tmp_path):
    df = build_index(_result(tmp_path), tmp_path, policy="senior", progress=False)
    out = tmp_path / "idx" / "index.parquet"
    write_index(df, out)
    t = pq.read_table(out)
    assert t.schema.remove_metadata().equals(SCHEMA.remove_metadata())
    # paths under the root are stored relative to it
    assert t.column("image_path")[0].as_py() == "img/000.png"
    meta = read_index_metadata(out)
    assert meta["schema_version"] == 1 and meta["catalogue"]["key"] == "isbi19"
    assert meta["catalogue"]["names"] == ISBI19.names and meta["source"]["adapter"] == "test"
    assert meta["policy"] == "senior" and meta["checksum"] == index_hash(df)
    back = read_index(out)
    assert back.attrs["cephalo"]["checksum"] == meta["checksum"]
    pd.testing.assert_frame_equal(back, df, check_like=False)
    # hash: independent of row order and image location, sensitive to a coordinate
    assert index_hash(df.sample(frac=1, random_state=0)) == index_hash(df)
    assert index_hash(df.assign(image_path="/elsewhere.png")) == index_hash(df)
    assert index_hash(df.assign(x=df["x"] + np.where(df.index == 7, 0.5, 0.0))) != index_hash(df)
    # moved data: root override
    shutil.copytree(tmp_path / "img", tmp_path / "moved" / "img")
    assert Path(read_index(out, root=tmp_path / "moved")["image_path"][0]).parent == tmp_path / "moved" / "img"


def test_read_index_rejects_tampering_and_garbage(tmp_path):
    df = build_index(_result(tmp_path), tmp_path, progress=False)
    out = tmp_path / "index.parquet"
    write_index(df, out)
    t = pq.read_table(out)
    x = t.column("x").to_numpy().copy()
    x[0] += 1
    pq.write_table(
        t.set_column(t.schema.get_field_index("x"), "x", [x]).replace_schema_metadata(t.schema.metadata),
        tmp_path / "edited.parquet",
    )
    with pytest.raises(DataError, match="checksum"):
        read_index(tmp_path / "edited.parquet")
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(DataError, match="junk.parquet: not a Parquet"):
        read_index(tmp_path / "junk.parquet")
    (tmp_path / "img" / "001.png").unlink()
    with pytest.raises(DataError, match="missing: .*001.png"):
        read_index(out)


def test_validation_errors(tmp_path):
    def shift(i, a, c):
        if i == 1 and a == "junior":
            c["sella"] = (250.0, 10.0)  # outside a 200 px wide image
        return c

    with pytest.raises(DataError, match=r"1 landmark\(s\) outside the image.*001.png.*junior.*sella"):
        build_index(_result(tmp_path, shift), progress=False)
    res = _result(tmp_path, shift)
    df = build_index(res, progress=False, drop_out_of_image=True)
    assert set(df.loc[df.image_id == "001", "annotator"]) == {"senior"}
    assert any("outside the image" in e.reason and e.labels == ("S",) for e in res.exclusions)

    def mm(i, a, c):  # landmarks given in mm (pixel values / 10)
        return {k: (x * 0.1, y * 0.1) for k, (x, y) in c.items()} if i == 2 else c

    with pytest.raises(DataError, match="look like millimetres.*002.png"):
        build_index(_result(tmp_path, mm), progress=False)
    with pytest.raises(DataError, match="missing pixel spacing"):
        build_index(_result(tmp_path, spacing=(None, None)), progress=False)
    assert (
        build_index(_result(tmp_path, spacing=(None, None)), require_spacing=False, progress=False)["spacing_x_mm"]
        .isna()
        .all()
    )

    df = build_index(_result(tmp_path), progress=False)
    with pytest.raises(DataError, match="duplicate keys"):
        validate_index(pd.concat([df, df.iloc[:1]]), catalogue_names=ISBI19.names)
    with pytest.raises(DataError, match="inconsistent landmark counts.*001/junior: 18"):
        validate_index(
            df.drop(index=df.index[(df.image_id == "001") & (df.annotator == "junior")][0]),
            catalogue_names=ISBI19.names,
        )
    (tmp_path / "img" / "000.png").write_bytes(b"GIF-ish garbage")
    from cephalo.datasets.base import _header

    _header.cache_clear()
    with pytest.raises(DataError, match="000.png: cannot read image: a text file"):
        build_index(_unreadable(tmp_path), progress=False)


def _unreadable(tmp_path) -> AdapterResult:
    res = AdapterResult("toy", "test", "0", ISBI19)
    p = (tmp_path / "img" / "000.png").resolve()
    res.rows += annotation_rows(
        dataset="toy",
        image_id="000",
        split="train",
        image_path=p,
        spacing=(0.1, 0.1),
        device="D",
        annotator="a",
        coords={},
        catalogue=ISBI19,
    )
    return res


def test_ground_truth_and_arrays_hand_computed(tmp_path):
    def gap(i, a, c):
        if i == 0 and a == "junior":
            c.pop("nasion")  # junior missed nasion on image 000
        return c

    df = build_index(_result(tmp_path, gap), progress=False)
    g = ground_truth(df, "mean")
    ids, c = landmark_arrays(g, ["sella", "nasion", "not_in_table"])
    assert ids == ["000", "001", "002"] and c.shape == (3, 3, 2) and c.dtype == np.float64
    np.testing.assert_array_equal(c[1, 0], [21.5, 32.0])  # (20 + 23) / 2, (30 + 34) / 2: float, not rounded
    np.testing.assert_array_equal(c[0, 1], [25.0, 36.0])  # senior only where junior is missing
    assert np.isnan(c[:, 2]).all()
    j = ground_truth(df, "junior")
    assert not j.loc[(j.image_id == "000") & (j.landmark_name == "nasion"), "visible"].item()
    with pytest.raises(DataError, match="matches no annotator"):
        ground_truth(df, "resident")
    with pytest.raises(ValueError, match="ground_truth"):
        landmark_arrays(df)
    it = images_table(g)
    assert list(it["image_id"]) == ids
    assert list(it.columns) == [
        "image_id",
        "split",
        "image_path",
        "width",
        "height",
        "spacing_x_mm",
        "spacing_y_mm",
        "device",
        "dataset",
    ]


def test_quality_report_hand_computed(tmp_path):
    res = _result(tmp_path)
    shutil.copy(tmp_path / "img" / "000.png", tmp_path / "img" / "002.png")  # train/test leak
    df = build_index(res, progress=False)
    r = quality_report(df, res.exclusions, progress=False)
    assert r["counts"]["per_split"] == {"test": 1, "train": 2}
    assert r["counts"]["per_device"] == {"D1": 2, "D2": 1}
    assert r["image_size"]["values"] == [{"size": "200x240", "images": 3}]
    assert r["spacing_mm"]["values"] == [{"x": 0.1, "y": 0.1, "images": 3}]
    (grp,) = r["identical_images"]
    assert grp["image_ids"] == ["000", "002"] and grp["cross_split"] and r["identical_cross_split"] == 1
    (d,) = r["annotator_disagreement"]
    # junior is (3, 4) px = 5 px from senior everywhere: 0.5 mm at 0.1 mm/px
    assert d["mre_mm"] == pytest.approx(0.5) and d["per_landmark"][0]["max_mm"] == pytest.approx(0.5)
    assert d["per_device"] == pytest.approx({"D1": 0.5, "D2": 0.5})
    j, m = write_quality_report(r, tmp_path / "rep")
    assert json.loads(j.read_text())["counts"]["images"] == 3
    md = m.read_text()
    assert "| **yes**" in md and "MRE 0.500 mm" in md


def _make_isbi(root: Path):
    for split, ids in (("TrainingData", ["001"]), ("Test1Data", ["151"])):
        d = root / "RawImage" / split
        d.mkdir(parents=True)
        for i in ids:
            Image.fromarray(np.zeros((240, 200), np.uint8)).save(d / f"{i}.png")
            for a in ("senior", "junior"):
                t = root / "AnnotationsByMD" / f"400_{a}" / f"{i}.txt"
                t.parent.mkdir(parents=True, exist_ok=True)
                t.write_text("\n".join(f"{20 + 5 * k},{30 + 6 * k}" for k in range(19)) + "\n")


def test_cli_index_end_to_end(tmp_path):
    from click.testing import CliRunner

    from cephalo.cli import main

    _make_isbi(tmp_path / "isbi")
    params = tmp_path / "params.yaml"
    params.write_text("data:\n  datasets:\n    isbi:\n      adapter: isbi2015\n      policy: senior\n")
    out = tmp_path / "out" / "index.parquet"
    r = CliRunner().invoke(
        main,
        [
            "index",
            "--dataset",
            "isbi",
            "--root",
            str(tmp_path / "isbi"),
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
    assert df["image_id"].nunique() == 2 and set(df["split"]) == {"train", "test1"}
    rep = json.loads((tmp_path / "rep" / "quality.json").read_text())
    assert rep["annotator_disagreement"][0]["mre_mm"] == 0.0
    assert (tmp_path / "rep" / "quality.md").is_file()


def test_cli_data_error_one_line_exit_1_nothing_written(tmp_path):
    _make_isbi(tmp_path / "isbi")
    (tmp_path / "isbi" / "AnnotationsByMD" / "400_senior" / "001.txt").write_text(
        "\n".join("900,30" for _ in range(19))
    )  # outside the 200 px image
    params = tmp_path / "params.yaml"
    params.write_text("data:\n  datasets:\n    isbi: {adapter: isbi2015, policy: senior}\n")
    out = tmp_path / "index.parquet"
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "cephalo",
            "index",
            "--dataset",
            "isbi",
            "--root",
            str(tmp_path / "isbi"),
            "--out",
            str(out),
            "--params",
            str(params),
        ],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 1
    err = [line for line in p.stderr.splitlines() if line.startswith("cephalo: error")]
    assert len(err) == 1 and "outside the image" in err[0] and "001" in err[0]
    assert not out.exists() and not list(tmp_path.glob(".index.parquet*"))
