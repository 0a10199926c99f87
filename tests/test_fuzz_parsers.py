"""Fuzz the annotation parsers: whatever the bytes, only the documented errors (DataError/ConfigError).

Each property writes one generated annotation into a tiny release (one real 50x40 PNG), parses it
with the adapter, and builds the index from what the adapter accepted: a crash (KeyError,
TypeError, IndexError, ...) or an index that fails its own validation with anything but a
DataError is a bug. Bounded (100 examples each, no deadline) so the file runs in seconds.
"""

from __future__ import annotations

import base64
import io
import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from cephalo.datasets import create_adapter
from cephalo.datasets.aariz.adapter import parse_landmark_json
from cephalo.datasets.isbi2015.adapter import parse_isbi_txt
from cephalo.errors import ConfigError, DataError
from cephalo.index import build_index
from cephalo.landmarks import AARIZ29

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)

W, H = 50, 40


def _png_b64(w: int, h: int) -> str:
    buf = io.BytesIO()
    Image.fromarray(np.full((h, w), 90, np.uint8)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


PNG_B64 = _png_b64(W, H)  # embedded imageData (LabelMe's fallback when the image file is not found)
numbers = st.one_of(
    st.integers(-100, 100),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(0, 60),
    st.text(max_size=4),
    st.none(),
    st.booleans(),
)
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(10**6), 10**6), st.floats(), st.text(max_size=8))
json_any = st.recursive(
    json_leaf,
    lambda c: st.one_of(st.lists(c, max_size=4), st.dictionaries(st.text(max_size=6), c, max_size=4)),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def workdir():
    with tempfile.TemporaryDirectory(prefix="cephalo-fuzz-") as d:
        root = Path(d)
        Image.fromarray(np.full((H, W), 90, np.uint8)).save(root / "img.png")
        yield root


def _ok(fn):
    try:
        return fn()
    except (DataError, ConfigError):
        return None


def _index(res) -> None:
    if res is not None and res.rows:
        _ok(lambda: build_index(res, progress=False))


# --------------------------------------------------------------------------- ISBI .txt
isbi_line = st.one_of(
    st.tuples(numbers, numbers).map(lambda t: f"{t[0]},{t[1]}"),
    st.text(alphabet="0123456789.,;- +-eE\t", max_size=12),
    st.text(max_size=10),
)


@FUZZ
@given(lines=st.lists(isbi_line, max_size=24), raw=st.binary(max_size=40), use_raw=st.booleans())
def test_isbi_txt_parser(workdir, lines, raw, use_raw):
    p = workdir / "isbi.txt"
    p.write_bytes(raw if use_raw else "\n".join(lines).encode("utf-8", "surrogatepass"))
    pts = _ok(lambda: parse_isbi_txt(p, 19))
    if pts is not None:
        assert len(pts) == 19 and all(isinstance(v, float) for xy in pts for v in xy)


# --------------------------------------------------------------------------- Aariz JSON
aariz_item = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "landmark_id": st.one_of(st.sampled_from([lm.source_id for lm in AARIZ29]), json_leaf),
            "symbol": st.one_of(st.sampled_from([lm.symbol for lm in AARIZ29]), json_leaf),
            "value": st.one_of(st.fixed_dictionaries({}, optional={"x": numbers, "y": numbers}), json_any),
        },
    ),
    json_any,
)


@FUZZ
@given(
    doc=st.one_of(st.fixed_dictionaries({"landmarks": st.lists(aariz_item, max_size=32)}), json_any),
    raw=st.binary(max_size=30),
    use_raw=st.booleans(),
)
def test_aariz_json_parser(workdir, doc, raw, use_raw):
    p = workdir / "aariz.json"
    if use_raw:
        p.write_bytes(raw)
    else:
        p.write_text(json.dumps(doc))
    out = _ok(lambda: parse_landmark_json(p))
    if out is not None:
        coords, dups, missing, unknown = out
        for name, xy in coords.items():  # a landmark that is not 'missing' has finite pixels
            if not any(lm.name == name and lm.symbol in missing for lm in AARIZ29):
                assert all(math.isfinite(v) for v in xy), (name, xy)


# --------------------------------------------------------------------------- LabelMe JSON
labelme_shape = st.one_of(
    st.fixed_dictionaries(
        {"label": st.one_of(st.sampled_from([f"l{i}" for i in range(1, 21)]), json_leaf)},
        optional={
            "points": st.one_of(st.lists(st.lists(numbers, max_size=3), max_size=2), json_any),
            "shape_type": st.sampled_from(["point", "polygon", None, 3]),
        },
    ),
    json_any,
)


def _mutated_valid_shapes(corrupt: dict) -> list:
    """19 valid ``l1..l19`` points, some replaced by fuzzed shapes (reaches the deeper code)."""
    return [
        corrupt.get(k, {"label": f"l{k + 1}", "points": [[5 + k, 6 + k]], "shape_type": "point"}) for k in range(19)
    ]


@FUZZ
@given(
    doc=st.one_of(
        st.fixed_dictionaries(
            {
                "shapes": st.one_of(
                    st.lists(labelme_shape, max_size=22),
                    st.dictionaries(st.integers(0, 18), labelme_shape, max_size=2).map(_mutated_valid_shapes),
                )
            },
            optional={
                "imagePath": st.one_of(st.just("../../img.png"), json_leaf),
                "imageData": st.one_of(st.just(PNG_B64), st.just("iVBORw0KGgo="), json_leaf),
                "imageWidth": st.one_of(st.just(W), numbers),
                "imageHeight": st.one_of(st.just(H), numbers),
            },
        ),
        json_any,
    ),
    stem=st.sampled_from(["img", "zzz"]),
)  # "zzz": no image by stem -> imagePath / imageData paths
@example(doc={"shapes": _mutated_valid_shapes({}), "imageData": 5}, stem="zzz")  # was a TypeError
@example(doc={"shapes": _mutated_valid_shapes({}), "imageData": PNG_B64, "imageWidth": 99}, stem="zzz")
def test_labelme_adapter(workdir, doc, stem):
    root = workdir / "labelme"
    (root / "ann").mkdir(parents=True, exist_ok=True)
    for old in (root / "ann").glob("*.json"):
        old.unlink()
    (root / "ann" / f"{stem}.json").write_text(json.dumps(doc))
    res = _ok(
        lambda: create_adapter("labelme").parse(
            root,
            images="..",
            labels="l{n}",
            spacing_mm=0.1,
            annotators=["ann"],
            default_split="train",
            image_cache=str(workdir / "cache"),
        )
    )
    _index(res)


# --------------------------------------------------------------------------- CSV table
csv_cell = st.one_of(numbers.map(str), st.just(""), st.text(alphabet='abc,"\n ', max_size=4))


@FUZZ
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["img.png", "nope.png", ""]),
            st.sampled_from(["sella", "nasion", "S", "bogus", ""]),
            csv_cell,
            csv_cell,
            st.sampled_from(["train", "test", ""]),
            st.sampled_from(["0.1", "-0.1", "0", "", "x", "1e9"]),
        ),
        max_size=6,
    ),
    header=st.sampled_from(
        [
            "image_path,landmark,x,y,split,spacing_x_mm",
            "image_path,landmark,x,y,split,spacing_x_mm,spacing_y_mm",
            "landmark,x,y",
        ]
    ),
)
def test_csv_adapter(workdir, rows, header):
    n = header.count(",") + 1
    text = header + "\n" + "\n".join(",".join(r[:n]) if n <= 6 else ",".join(r + (r[5],)) for r in rows)
    (workdir / "t.csv").write_text(text)
    res = _ok(
        lambda: create_adapter("csv").parse(
            workdir / "t.csv", catalogue="isbi19", spacing_mm=0.1, default_split="train"
        )
    )
    _index(res)
