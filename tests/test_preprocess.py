"""Preprocessing steps and variants: matrices that describe the pixels, dtype, normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cephalo import geometry as G
from cephalo.errors import ConfigError, DataError
from cephalo.preprocess import (
    STEPS,
    Pipeline,
    create_step,
    normalise,
    parse_steps,
    preprocess_image,
)
from helpers import centroid, render_dots

SIZES = [(1935, 2400), (1968, 2225), (2400, 1935), (31, 17), (767, 1000), (1340, 1671)]
GEOMETRIC = {
    "letterbox": dict(size=96),
    "stretch": dict(size=96),
    "spacing": dict(spacing_mm=2.5, fov_mm=240.0),  # 96 px canvas
    "letterbox_rect": dict(size=[128, 96]),
}


def _src_spacing(w, h):
    """A source pixel spacing that makes every test image 200 mm tall/wide (fits the 240 mm FOV)."""
    sp = 200.0 / max(w, h)
    return (sp, sp)


def _step(name):
    kw = GEOMETRIC[name]
    return create_step(name.split("_")[0], **kw)


def test_registry_and_unknown_name():
    assert set(STEPS) == {"letterbox", "stretch", "spacing", "clahe", "histogram_match"}
    with pytest.raises(ValueError, match="valid: .*letterbox"):
        create_step("lettrbox")
    with pytest.raises(ConfigError, match="letterbox"):
        create_step("letterbox", sise=3)
    steps = parse_steps(["clahe", {"letterbox": {"size": 64}}, {"step": "stretch", "size": [32, 16]}])
    assert [s.name for s in steps] == ["clahe", "letterbox", "stretch"]
    assert Pipeline(steps).output_wh() == (32, 16)
    with pytest.raises(ConfigError):
        parse_steps([])
    # the {"name": step, **kwargs} form and interpolation aliases
    (lb,) = parse_steps([{"name": "letterbox", "size": [64, 64], "interpolation": "bicubic"}])
    assert lb.to_spec() == {"step": "letterbox", "size": [64, 64], "interpolation": "cubic"}
    with pytest.raises(ValueError, match="valid"):
        create_step("stretch", interpolation="sinc")


@pytest.mark.parametrize("name", list(GEOMETRIC))
@pytest.mark.parametrize("wh", SIZES)
def test_geometric_round_trip_and_frame(name, wh):
    """original -> preprocessed -> original within 1e-3 px; image edges land where the pixels went."""
    w, h = wh
    step = _step(name)
    img = np.zeros((h, w), np.uint8)
    img[:, :] = 200
    out, m = step(img, _src_spacing(w, h))
    ow, oh = step.output_wh()
    assert out.shape == (oh, ow) and out.dtype == np.uint8
    rng = np.random.default_rng(w * 7 + h)
    pts = np.stack([rng.uniform(-0.5, w - 0.5, 40), rng.uniform(-0.5, h - 0.5, 40)], -1)
    back = G.apply_affine(G.invert(m), G.apply_affine(m, pts))
    assert np.abs(back - pts).max() < 1e-3
    # the image rectangle maps onto the bright (non-padded) region of the output
    c0, c1 = G.apply_affine(m, [[-0.5, -0.5], [w - 0.5, h - 0.5]])
    x0, y0 = max(0, int(round(c0[0] + 0.5))), max(0, int(round(c0[1] + 0.5)))
    x1, y1 = min(ow, int(round(c1[0] + 0.5))), min(oh, int(round(c1[1] + 0.5)))
    assert (out[y0:y1, x0:x1] == 200).all()
    assert out.sum() == 200 * (y1 - y0) * (x1 - x0)  # everything else is black padding


@pytest.mark.parametrize("name", list(GEOMETRIC))
@pytest.mark.parametrize("wh", [(1968, 2225), (2400, 1935), (31, 17), (767, 1000)])
def test_rendered_dot_lands_on_transformed_coordinate(name, wh):
    """A dot warped by the variant has its intensity centroid at M @ p (< 0.5 px)."""
    w, h = wh
    step = _step(name)
    m0 = step(np.zeros((h, w), np.uint8), _src_spacing(w, h))[1]
    sx, sy = abs(m0[0, 0]), abs(m0[1, 1])
    sigma = max(2.0 / min(sx, sy), 0.8)  # ~2 output px wide whatever the scale
    margin = 4 * sigma + 3 / min(sx, sy)
    rng = np.random.default_rng(1)
    pts = np.stack([rng.uniform(margin, w - margin, 3), rng.uniform(margin, h - margin, 3)], -1)
    # keep the dots apart
    pts = pts[[0]] if w < 100 or h < 100 else pts
    img = render_dots((h, w), pts, sigma)
    out, m = step(img, _src_spacing(w, h))
    np.testing.assert_allclose(m, m0)
    checked = 0
    for q in G.apply_affine(m, pts):
        r = int(np.ceil(3 * sigma * max(sx, sy))) + 2
        if q[0] - r < 0 or q[1] - r < 0 or q[0] + r >= out.shape[1] or q[1] + r >= out.shape[0]:
            continue  # cropped by a spacing field of view
        assert np.linalg.norm(centroid(out, q, r) - q) < 0.5
        checked += 1
    assert checked >= 1


def test_uint16_kept_through_every_step():
    img = render_dots((300, 240), [(100.0, 120.0)], 6.0, dtype=np.uint16)
    img = img + 1000  # values only 16 bits can hold
    for spec in (
        ["clahe", {"letterbox": {"size": 64}}],
        [{"stretch": {"size": 50}}],
        [{"spacing": {"spacing_mm": 0.5, "fov_mm": 40}}],
    ):
        out, _ = preprocess_image(img, {"steps": spec}, spacing=(0.1, 0.1))
        assert out.dtype == np.uint16 and out.max() > 255


def test_spacing_step_uses_the_images_own_spacing():
    # two images of the same 40 x 60 mm object at 0.1 and 0.2 mm/px map to the same canvas
    step = create_step("spacing", spacing_mm=0.5, fov_mm=[50, 70])
    assert step.output_wh() == (100, 140)
    m1 = step(np.zeros((600, 400), np.uint8), (0.1, 0.1))[1]
    m2 = step(np.zeros((300, 200), np.uint8), (0.2, 0.2))[1]
    # the object's corners (pixel edges) land on the same output coordinates
    np.testing.assert_allclose(
        G.apply_affine(m1, [[-0.5, -0.5], [399.5, 599.5]]), G.apply_affine(m2, [[-0.5, -0.5], [199.5, 299.5]])
    )
    np.testing.assert_allclose(np.diag(m1[:, :2]), [0.2, 0.2])  # 0.1 mm/px -> 0.5 mm/px
    # anisotropic source spacing becomes isotropic
    m3 = step(np.zeros((300, 400), np.uint8), (0.1, 0.2))[1]
    np.testing.assert_allclose(np.diag(m3[:, :2]), [0.2, 0.4])
    with pytest.raises(DataError, match="spacing"):
        step(np.zeros((10, 10), np.uint8), (np.nan, np.nan))
    fb = create_step("spacing", spacing_mm=0.5, fov_mm=10, fallback_spacing_mm=0.25)
    np.testing.assert_allclose(fb(np.zeros((10, 10), np.uint8), None)[1][0, 0], 0.5)


def test_pipeline_propagates_spacing_after_a_geometric_step():
    # letterbox 2000 -> 100 px (x0.05), then resample to 2 mm/px: 0.1 mm/px * 20 = 2 mm/px already
    pipe = Pipeline.from_spec({"steps": [{"stretch": {"size": 100}}, {"spacing": {"spacing_mm": 2.0, "fov_mm": 200}}]})
    _, m = pipe(np.zeros((2000, 2000), np.uint8), (0.1, 0.1))
    np.testing.assert_allclose(np.diag(m[:, :2]), [0.05, 0.05])


def test_clahe_changes_contrast_only():
    rng = np.random.default_rng(0)
    img = np.clip(rng.normal(100, 5, (64, 64)), 0, 255).astype(np.uint8)
    out, m = create_step("clahe", clip_limit=4.0, tile_grid=4)(img)
    np.testing.assert_array_equal(m, G.identity())
    assert out.shape == img.shape and out.dtype == np.uint8 and out.std() > 2 * img.std()


def test_histogram_match_moves_grey_levels_to_the_reference():
    rng = np.random.default_rng(0)
    refs = [np.clip(rng.normal(180, 20, (50, 60)), 0, 255).astype(np.uint8) for _ in range(3)]
    step = create_step("histogram_match", n_quantiles=256)
    with pytest.raises(ConfigError, match="not fitted"):
        step(refs[0])
    q = step.fit(refs)
    assert q.shape == (256,) and np.all(np.diff(q) >= 0)
    np.testing.assert_allclose(np.median(q) * 255, 180, atol=2)
    src = np.clip(rng.normal(60, 10, (70, 40)), 0, 255).astype(np.uint8)
    out, m = step(src)
    assert out.dtype == np.uint8
    np.testing.assert_allclose([out.mean(), out.std()], [180, 20], atol=3)
    # the same reference applies to a 16-bit image on its own scale
    out16, _ = step(src.astype(np.uint16) * 257)
    assert out16.dtype == np.uint16
    np.testing.assert_allclose(out16.mean() / 257, 180, atol=3)
    # spec round trip keeps the fitted reference
    again = parse_steps([step.to_spec()])[0]
    np.testing.assert_array_equal(again(src)[0], out)


def test_normalise_imagenet_unit_zscore_by_hand():
    x8 = np.array([[[0, 255], [51, 102]]], np.uint8)
    t = normalise(x8, "imagenet")
    assert t.shape == (1, 3, 2, 2) and t.dtype == torch.float32
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    for c in range(3):
        np.testing.assert_allclose(t[0, c].numpy(), (np.array([[0, 1], [0.2, 0.4]]) - mean[c]) / std[c], atol=1e-6)
    t16 = normalise(x8.astype(np.uint16) * 257, {"name": "imagenet"})
    np.testing.assert_allclose(t16.numpy(), t.numpy(), atol=1e-6)
    np.testing.assert_allclose(normalise(torch.from_numpy(x8), "unit")[0, 1].numpy(), [[0, 1], [0.2, 0.4]], rtol=1e-6)
    z = normalise(np.stack([x8[0], x8[0] * 0 + 7]).astype(np.uint8), "zscore")
    vals = np.array([0, 255, 51, 102], float)
    np.testing.assert_allclose(z[0, 2].numpy().ravel(), (vals - vals.mean()) / vals.std(), rtol=1e-5)
    assert torch.isfinite(z).all() and z[1].abs().max() == 0  # constant image: no NaN
    with pytest.raises(ValueError, match="max_value"):
        normalise(x8.astype(np.float32), "unit")
    np.testing.assert_allclose(
        normalise(x8.astype(np.float32), "unit", max_value=255).numpy(), normalise(x8, "unit").numpy()
    )
    with pytest.raises(ValueError, match="valid"):
        normalise(x8, "minmax")


def test_read_image_keeps_bit_depth_and_names_bad_files(tmp_path):
    import cv2
    import SimpleITK as sitk

    from cephalo.preprocess import image_bit_depth, read_image

    g16 = (np.arange(12 * 10).reshape(12, 10) * 500).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "a.png"), g16)
    img = read_image(tmp_path / "a.png")
    assert img.dtype == np.uint16 and image_bit_depth(tmp_path / "a.png") == 16
    np.testing.assert_array_equal(img, g16)
    grey3 = np.repeat((g16 // 257).astype(np.uint8)[:, :, None], 3, axis=2)
    cv2.imwrite(str(tmp_path / "b.bmp"), grey3)
    np.testing.assert_array_equal(read_image(tmp_path / "b.bmp"), grey3[:, :, 0])
    assert image_bit_depth(tmp_path / "b.bmp") == 8
    sitk.WriteImage(sitk.GetImageFromArray(g16), str(tmp_path / "c.dcm"))
    np.testing.assert_array_equal(read_image(tmp_path / "c.dcm"), g16)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="bad.png"):
        read_image(tmp_path / "bad.png")
    with pytest.raises(DataError, match="not found"):
        read_image(tmp_path / "missing.png")
