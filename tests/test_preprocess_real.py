"""Letterbox 768 on real cephalograms (../shared/data): landmarks land on the same anatomy.

Writes overlay PNGs (landmarks drawn on the preprocessed image) under the test's tmp dir.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from cephalo import geometry as G
from cephalo.preprocess import preprocess_image, read_image

pytestmark = pytest.mark.shared_data

SPEC = {"steps": [{"letterbox": {"size": 768}}]}


def _isbi(root, num):
    img = root / "isbi2015" / "RawImage" / "TrainingData" / f"{num}.jpg"
    txt = root / "isbi2015" / "AnnotationsByMD" / "400_mean" / f"{num}.txt"
    pts = np.array([[float(v) for v in line.split(",")[:2]] for line in txt.read_text().splitlines()[:19]])
    return read_image(img), pts


def _hamedan(root, num):
    img = root / "hamedan" / "pictures" / f"{num}.png"
    shapes = json.loads((root / "hamedan" / "annotated by Dr.farhadifar" / f"{num}.json").read_text())["shapes"]
    pts = np.full((19, 2), np.nan)
    for s in shapes:
        k = int(s["label"].lstrip("l")) - 1
        pts[k] = s["points"][0]
    return read_image(img), pts


def _patch_corr(orig, pre, p_orig, q_pre, scale, half=12):
    """Correlation between the preprocessed patch at q and the original patch at p resampled to it."""
    x, y = int(round(q_pre[0])), int(round(q_pre[1]))
    a = pre[y - half : y + half + 1, x - half : x + half + 1].astype(np.float64)
    # the original region covering the same window: anti-alias blur, then resample at the scale
    r = int((half + 4) / scale)
    x0, y0 = int(p_orig[0]) - r, int(p_orig[1]) - r
    crop = orig[y0 : y0 + 2 * r + 1, x0 : x0 + 2 * r + 1].astype(np.float32)
    crop = cv2.GaussianBlur(crop, (0, 0), 0.5 / scale)
    px, py = p_orig[0] - x0, p_orig[1] - y0  # p in crop pixels
    # crop point p -> patch point half + (q - (x, y))
    m = np.array([[scale, 0, half + q_pre[0] - x - px * scale], [0, scale, half + q_pre[1] - y - py * scale]])
    b = cv2.warpAffine(crop, m, (2 * half + 1, 2 * half + 1), flags=cv2.INTER_LINEAR)
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


@pytest.mark.parametrize("source, num", [("isbi", "001"), ("isbi", "002"), ("hamedan", "004")])
def test_letterbox768_landmarks_on_the_same_anatomy(shared_data, tmp_path, source, num):
    img, pts = (_isbi if source == "isbi" else _hamedan)(shared_data, num)
    h, w = img.shape
    pre, m = preprocess_image(img, SPEC)
    assert pre.shape == (768, 768) and pre.dtype == np.uint8
    lb = G.letterbox_geometry((w, h), 768)
    np.testing.assert_allclose(m, lb.affine())
    q = G.apply_affine(m, pts)
    if source == "isbi":  # ISBI 1935 x 2400: new (619, 768), pad_left 74
        assert lb.new_wh == (619, 768) and lb.pad == (74, 0)
        # sella by hand: x' = (x + 0.5) * 619/1935 - 0.5 + 74, y' = (y + 0.5) * 768/2400 - 0.5
        sx, sy = pts[0]
        np.testing.assert_allclose(q[0], [(sx + 0.5) * 619 / 1935 - 0.5 + 74, (sy + 0.5) * 0.32 - 0.5])
    # black pads (public HRNet), image content elsewhere
    assert pre[:, : lb.pad[0]].max() == 0 and pre[:, lb.pad[0] + lb.new_wh[0] :].max() == 0
    # the content around sella, nasion, menton, gonion matches the original's at the original coordinate
    scale = lb.new_wh[0] / w
    for k in (0, 1, 7, 9):
        if not np.isfinite(pts[k]).all():
            continue
        c = _patch_corr(img, pre, pts[k], q[k], scale)
        c_off = _patch_corr(img, pre, pts[k] + 40 / scale, q[k], scale)  # a wrong mapping (40 px off)
        assert c > 0.95, (k, c)
        assert c_off < c - 0.1, (k, c, c_off)
        # and it is the best fit locally: 1.5 preprocessed px off in any direction fits worse
        for d in ((1.5, 0), (-1.5, 0), (0, 1.5), (0, -1.5)):
            assert _patch_corr(img, pre, pts[k] + np.array(d) / scale, q[k], scale) < c, (k, d)
    # overlay for a human check
    over = cv2.cvtColor(pre, cv2.COLOR_GRAY2BGR)
    for k, (x, y) in enumerate(q):
        if np.isfinite(x):
            cv2.circle(over, (int(round(x)), int(round(y))), 4, (0, 0, 255), -1)
            cv2.putText(over, str(k + 1), (int(x) + 5, int(y) - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 255, 255), 1)
    out = tmp_path / "overlays" / f"{source}_{num}_letterbox768.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(out), over) and out.stat().st_size > 10_000
