"""CL-Detection 2023 adapter on a tiny zero-padded .mha stack made here with SimpleITK."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from cephalo.datasets import create_adapter
from cephalo.datasets.cldetection2023.adapter import strip_zero_padding
from cephalo.index import build_index, ground_truth, landmark_arrays


def make_cl(root, sizes=((50, 40), (60, 45))):
    h_pad, w_pad = 64, 72
    stack = np.zeros((len(sizes), h_pad, w_pad, 3), np.uint8)
    rng = np.random.default_rng(0)
    for i, (w, h) in enumerate(sizes):
        img = rng.integers(1, 255, (h, w), dtype=np.uint8)
        stack[i, :h, :w] = img[..., None]
    im = sitk.GetImageFromArray(stack, isVector=True)  # size (W, H, N), 3 components
    sitk.WriteImage(im, str(root / "train_stack.mha"))
    points = []
    for i, (w, h) in enumerate(sizes):
        for k in range(38):
            points.append(
                {"name": str(k + 1), "point": [1 + k % w, 2 + k % (h - 2), i + 1], "scale": 0.1 if i == 0 else 0.125}
            )
    (root / "train-gt.json").write_text(json.dumps({"points": points}))
    return stack


def test_strip_zero_padding():
    a = np.zeros((5, 6), np.uint8)
    a[:3, :4] = 1
    a[1, 1] = 0
    assert strip_zero_padding(a).shape == (3, 4)
    b = np.zeros((5, 6, 3), np.uint8)
    b[3, 4, 2] = 9
    assert strip_zero_padding(b).shape == (4, 5, 3)


def test_cldetection_mha(tmp_path):
    stack = make_cl(tmp_path)
    res = create_adapter("cldetection2023").parse(
        tmp_path, images_dir=tmp_path / "png", splits={"train": "1", "test": "2"}
    )
    df = build_index(res, tmp_path, progress=False)
    img = df.drop_duplicates("image_id").set_index("image_id")
    assert img["width"].tolist() == [50, 60] and img["height"].tolist() == [40, 45]
    assert img["spacing_x_mm"].tolist() == [0.1, 0.125]
    assert img["split"].tolist() == ["train", "test"]
    png = np.asarray(Image.open(img.loc["002", "image_path"]))
    np.testing.assert_array_equal(png, stack[1, :45, :60, 0])  # greyscale, padding stripped, pixels intact
    ids, c = landmark_arrays(ground_truth(df, "default"))
    assert c.shape == (2, 38, 2)
    assert c[1, 5].tolist() == [6.0, 7.0]
    # written once: a second run leaves the PNGs alone
    t0 = (tmp_path / "png" / "001.png").stat().st_mtime_ns
    create_adapter("cldetection2023").parse(tmp_path, images_dir="png", default_split="train")
    assert (tmp_path / "png" / "001.png").stat().st_mtime_ns == t0


def test_cldetection_requires_images_dir(tmp_path):
    from cephalo.errors import ConfigError

    make_cl(tmp_path)
    with pytest.raises(ConfigError, match="images_dir"):
        create_adapter("cldetection2023").parse(tmp_path, default_split="train")
