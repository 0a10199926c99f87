"""LabelMe adapter: stale imagePath -> stem match, imageData fallback, duplicates excluded; hamedan."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cephalo.datasets import create_adapter
from cephalo.errors import ConfigError
from cephalo.index import build_index, ground_truth, landmark_arrays, quality_report


def _png_bytes(w=120, h=140, v=50) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((h, w), v, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _lm_json(pts, labels=None, image_path="1.tif", image_data=None) -> dict:
    labels = labels or [f"l{k + 1}" for k in range(len(pts))]
    return {
        "version": "5.0.1",
        "flags": {},
        "shapes": [
            {"label": lb, "points": [[x, y]], "group_id": None, "shape_type": "point", "flags": {}}
            for lb, (x, y) in zip(labels, pts, strict=True)
        ],
        "imagePath": image_path,
        "imageData": image_data,
        "imageHeight": 140,
        "imageWidth": 120,
    }


def make_labelme(root: Path) -> Path:
    (root / "pictures").mkdir(parents=True)
    for i in ("001", "002", "003"):
        (root / "pictures" / f"{i}.png").write_bytes(_png_bytes())
    a, b = root / "annotated by  Dr.A", root / "annotated by Dr.B"
    a.mkdir(), b.mkdir()
    pts_a = [(10.0 + 5 * k, 20.0 + 4 * k) for k in range(19)]
    pts_b = [(x + 3, y + 4) for x, y in pts_a]  # 5 px apart
    for i in ("001", "002", "003"):
        (a / f"{i}.json").write_text(json.dumps(_lm_json(pts_a, image_path=f"{int(i)}.tif")))
        (b / f"{i}.json").write_text(json.dumps(_lm_json(pts_b, image_path=f"{int(i)}.tif")))
    # Dr.A 002: l11 twice (and so l12 absent)
    labels = [f"l{k + 1}" for k in range(19)]
    labels[11] = "l11"
    (a / "002.json").write_text(json.dumps(_lm_json(pts_a, labels)))
    # Dr.B 004: image only embedded (no file anywhere)
    (b / "004.json").write_text(
        json.dumps(_lm_json(pts_b, image_path="missing/4.tif", image_data=base64.b64encode(_png_bytes(v=77)).decode()))
    )
    return root


OPTS = {
    "images": "pictures",
    "labels": "l{n}",
    "spacing_mm": 0.127,
    "catalogue": "isbi19",
    "annotators": {"annotated by  Dr.A": "Dr.A", "annotated by Dr.B": "Dr.B"},
    "splits": {"train": "001-002", "test": "003-004"},
}


def test_labelme_stem_match_imagedata_and_duplicates(tmp_path):
    make_labelme(tmp_path)
    res = create_adapter("labelme").parse(tmp_path, dataset="clinic", **OPTS)
    df = build_index(res, tmp_path, progress=False)
    paths = df.drop_duplicates("image_id").set_index("image_id")["image_path"]
    assert Path(paths["001"]) == (tmp_path / "pictures" / "001.png").resolve()  # stale imagePath -> stem
    cached = Path(paths["004"])
    assert cached.parent == (tmp_path / ".imagedata").resolve() and cached.read_bytes() == _png_bytes(v=77)
    (ex,) = res.exclusions
    assert ex.image_id == "002" and ex.annotator == "Dr.A" and set(ex.labels) == {"l11", "l12"}
    assert "duplicated labels ['l11']" in ex.reason and "missing labels ['l12']" in ex.reason
    assert set(df.loc[df.image_id == "002", "annotator"]) == {"Dr.B"}
    assert df.drop_duplicates("image_id").set_index("image_id")["split"].to_dict() == {
        "001": "train",
        "002": "train",
        "003": "test",
        "004": "test",
    }
    assert (df["spacing_x_mm"] == 0.127).all()
    # human limit: every landmark 5 px apart -> 5 * 0.127 mm, on the 2 doubly-annotated images
    (d,) = quality_report(df, res.exclusions, hash_images=False, progress=False)["annotator_disagreement"]
    assert d["n_images"] == 2 and d["annotators"] == ["Dr.A", "Dr.B"]
    assert d["mre_mm"] == pytest.approx(5 * 0.127)
    # mean policy: float mean of the two; 002 = Dr.B only
    ids, c = landmark_arrays(ground_truth(df, "mean"))
    np.testing.assert_allclose(c[ids.index("001"), 0], [10 + 1.5, 20 + 2.0])
    np.testing.assert_allclose(c[ids.index("002"), 0], [13, 24])


def test_labelme_second_run_reuses_decoded_image(tmp_path):
    make_labelme(tmp_path)
    create_adapter("labelme").parse(tmp_path, **OPTS)
    p = tmp_path / ".imagedata" / "004.png"
    t0 = p.stat().st_mtime_ns
    create_adapter("labelme").parse(tmp_path, **OPTS)
    assert p.stat().st_mtime_ns == t0


def test_labelme_needs_spacing_and_valid_labels(tmp_path):
    make_labelme(tmp_path)
    with pytest.raises(ConfigError, match="spacing_mm"):
        create_adapter("labelme").parse(tmp_path, **{k: v for k, v in OPTS.items() if k != "spacing_mm"})
    with pytest.raises(ConfigError, match="not_a_landmark"):
        create_adapter("labelme").parse(tmp_path, **(OPTS | {"labels": {"l1": "not_a_landmark"}}))
    with pytest.raises(ConfigError, match="unknown option"):
        create_adapter("labelme").parse(tmp_path, **(OPTS | {"spacing": 0.1}))
    with pytest.raises(ConfigError, match="in no split"):
        create_adapter("labelme").parse(tmp_path, **(OPTS | {"splits": {"train": "001-003"}}))


@pytest.mark.shared_data
def test_hamedan_real(shared_data):
    opts = {
        "images": "pictures",
        "labels": "l{n}",
        "spacing_mm": 0.127,
        "catalogue": "isbi19",
        "annotators": {"annotated by  Dr.mollabashi": "Dr.mollabashi", "annotated by Dr.farhadifar": "Dr.farhadifar"},
        "splits": {"train": "001-060", "valid": "061-075", "test": "076-100"},
    }
    root = shared_data / "hamedan"
    res = create_adapter("labelme").parse(root, dataset="hamedan", **opts)
    df = build_index(res, root, progress=False)
    excluded = sorted((e.annotator, e.image_id) for e in res.exclusions if e.annotator)
    assert excluded == [("Dr.farhadifar", "002")] + [
        ("Dr.mollabashi", i) for i in ("002", "009", "010", "064", "086", "098")
    ]
    assert any(e.image_id == "002" and e.annotator is None for e in res.exclusions)  # image unusable
    assert df["image_id"].nunique() == 99
    assert set(df["annotator"]) == {"Dr.mollabashi", "Dr.farhadifar"}
    assert ((df["width"] == 1340) & (df["height"] == 1671)).all()
    (d,) = quality_report(df, res.exclusions, hash_images=False, progress=False)["annotator_disagreement"]
    assert d["n_images"] == 94
    assert 1.3 < d["mre_mm"] < 1.6  # measured 1.451 mm at 0.127 mm/px
