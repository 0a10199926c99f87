"""The coordinate convention and affine maths, and the image warps that return their matrix."""

from __future__ import annotations

import numpy as np
import pytest

from cephalo import geometry as G
from helpers import centroid, render_dots


def test_resize_affine_hand_values():
    m = G.resize_affine((4, 2), (8, 1))
    # x' = (x + 0.5) * 2 - 0.5 ; y' = (y + 0.5) * 0.5 - 0.5
    np.testing.assert_allclose(
        G.apply_affine(m, [[0, 0], [3, 1], [-0.5, -0.5]]), [[0.5, -0.25], [6.5, 0.25], [-0.5, -0.5]]
    )


def test_invert_compose_round_trip_and_nan():
    rng = np.random.default_rng(0)
    a = np.hstack([rng.normal(size=(2, 2)) + 2 * np.eye(2), rng.normal(size=(2, 1))])
    b = G.scale_translate(0.3, 1.7, 5.0, -2.0)
    pts = rng.uniform(-100, 100, (50, 2))
    pts[3] = np.nan
    ab = G.compose(a, b)
    np.testing.assert_allclose(G.apply_affine(ab, pts), G.apply_affine(b, G.apply_affine(a, pts)))
    back = G.apply_affine(G.invert(ab), G.apply_affine(ab, pts))
    np.testing.assert_allclose(back, pts, atol=1e-9)
    assert np.isnan(back[3]).all()
    with pytest.raises(ValueError, match="singular"):
        G.invert(np.zeros((2, 3)))


def test_apply_affine_batched():
    ms = np.stack([G.scale_translate(2, 3, 1, 1), G.translate(-1, 4)])
    pts = np.array([[[1.0, 1.0], [0.0, 2.0]], [[5.0, 5.0], [np.nan, np.nan]]])
    out = G.apply_affine(ms, pts)
    np.testing.assert_allclose(out[0], [[3, 4], [1, 7]])
    np.testing.assert_allclose(out[1, 0], [4, 9])
    assert np.isnan(out[1, 1]).all()


@pytest.mark.parametrize(
    "wh, size, new, pad",
    [
        ((1935, 2400), 768, (619, 768), (74, 0)),  # ISBI portrait
        ((2400, 1935), 768, (768, 619), (0, 74)),  # landscape
        ((1968, 2225), 768, (679, 768), (44, 0)),  # int() truncation: 1968 * 768/2225 = 679.3
        ((1340, 1671), 768, (615, 768), (76, 0)),  # hamedan: odd total padding 153 -> 76 left, 77 right
        ((31, 17), 768, (768, 421), (0, 173)),  # tiny (upsampling)
    ],
)
def test_letterbox_geometry_matches_public_hrnet(wh, size, new, pad):
    lb = G.letterbox_geometry(wh, size)
    w, h = wh
    scale = min(size / w, size / h)
    assert lb.scale == scale
    assert lb.new_wh == new == (int(w * scale), int(h * scale))
    assert lb.pad == pad == ((size - new[0]) // 2, (size - new[1]) // 2)
    m = lb.affine()
    # pixel edges map onto the edges of the resized block inside the canvas
    np.testing.assert_allclose(
        G.apply_affine(m, [[-0.5, -0.5], [w - 0.5, h - 0.5]]),
        [[pad[0] - 0.5, pad[1] - 0.5], [pad[0] + new[0] - 0.5, pad[1] + new[1] - 0.5]],
        atol=1e-9,
    )
    # the public HRNet's label mapping x * scale + pad differs from the pixel-exact one by
    # x * (scale - new/w) - 0.5 * new/w + 0.5 (about -0.3 px for ISBI at 768)
    p = np.array([[w / 3, h / 5]])
    diff = G.apply_affine(lb.hf_label_affine(), p) - G.apply_affine(m, p)
    fx, fy = new[0] / w, new[1] / h
    np.testing.assert_allclose(
        diff[0], [p[0, 0] * (scale - fx) - 0.5 * fx + 0.5, p[0, 1] * (scale - fy) - 0.5 * fy + 0.5]
    )


def test_place_pads_and_crops_with_its_translation():
    img = np.arange(12, dtype=np.uint16).reshape(3, 4)
    out, m = G.place(img, (6, 5), (1, 2))
    assert out.shape == (5, 6) and out.dtype == np.uint16
    assert out[2, 1] == img[0, 0] and out[4, 4] == img[2, 3] and out[0].sum() == 0
    np.testing.assert_allclose(G.apply_affine(m, [[0, 0]]), [[1, 2]])
    crop, m2 = G.place(img, (2, 2), (-1, -1))
    np.testing.assert_array_equal(crop, img[1:3, 1:3])
    np.testing.assert_allclose(G.apply_affine(G.invert(m2), [[0, 0]]), [[1, 1]])
    with pytest.raises(ValueError, match="integers"):
        G.place(img, (2, 2), (0.5, 0))


@pytest.mark.parametrize("interp", ["linear", "cubic", "area"])
def test_resize_image_dot_lands_on_its_coordinate(interp):
    pts = [(40.3, 50.7), (150.8, 30.1), (100.5, 180.25)]
    img = render_dots((220, 200), pts, sigma=5.0)
    out, m = G.resize_image(img, (87, 123), interp)  # anisotropic downscale
    assert out.shape == (123, 87)
    for q in G.apply_affine(m, np.array(pts)):
        assert np.linalg.norm(centroid(out, q, 6) - q) < 0.25


def test_warp_rotation_dot_lands_on_its_coordinate():
    pts = [(60.2, 70.7), (130.6, 90.3), (90.0, 140.45)]
    img = render_dots((200, 200), pts, sigma=2.5, dtype=np.uint16)
    c = np.cos(np.deg2rad(25)), np.sin(np.deg2rad(25))
    m = np.array([[1.2 * c[0], -1.2 * c[1], 40.0], [1.2 * c[1], 1.2 * c[0], -20.3]])
    out = G.warp(img, m, (260, 240), "linear")
    assert out.dtype == np.uint16 and out.shape == (240, 260)
    for q in G.apply_affine(m, np.array(pts)):
        assert np.linalg.norm(centroid(out, q, 8) - q) < 0.1
    with pytest.raises(ValueError, match="unknown interpolation"):
        G.warp(img, m, (10, 10), "bogus")
    with pytest.raises(ValueError, match="resize-only"):
        G.warp(img, m, (10, 10), "area")


def test_crop_affine_hand_values_and_round_trip():
    m = G.crop_affine((100.0, 50.0), (64, 32), (0.5, 0.25))
    # hand computed: x' = 0.5 (x - 100) + 31.5, y' = 0.25 (y - 50) + 15.5
    np.testing.assert_allclose(m, [[0.5, 0, -18.5], [0, 0.25, 3.0]])
    np.testing.assert_allclose(G.apply_affine(m, [[100.0, 50.0]]), [[31.5, 15.5]])
    pts = np.random.default_rng(0).uniform(-50, 500, (200, 2))
    back = G.apply_affine(G.invert(m), G.apply_affine(m, pts))
    assert np.abs(back - pts).max() < 1e-3
    with pytest.raises(ValueError, match="positive"):
        G.crop_affine((0, 0), (0, 4))
    with pytest.raises(ValueError, match="finite"):
        G.crop_affine((np.nan, 0), (4, 4))


def test_crop_affine_warp_dot_lands_on_its_coordinate():
    pts = [(80.3, 60.6)]
    img = render_dots((160, 200), pts, sigma=6.0)
    m = G.crop_affine((78.0, 63.0), (48, 40), (1.5, 1.5))  # an upsampling window
    out = G.warp(img, m, (48, 40), "linear")
    q = G.apply_affine(m, np.array(pts))[0]
    assert np.linalg.norm(centroid(out, q, 12) - q) < 0.1


@pytest.mark.parametrize("center", [(10.2, 7.7), (0.4, 0.6), (38.5, 29.49), (-3.0, 2.0)])
def test_crop_window_copies_pixels_and_round_trips(center):
    img = np.arange(30 * 40, dtype=np.uint16).reshape(30, 40)
    win, m = G.crop_window(img, center, (9, 7), fill=0)
    assert win.shape == (7, 9) and win.dtype == np.uint16 and G.is_axis_aligned(m)
    # the window centre is within half a pixel of the requested centre
    cw = G.apply_affine(G.invert(m), [[4.0, 3.0]])[0]
    assert np.all(np.abs(cw - np.asarray(center)) <= 0.5 + 1e-12)
    # every window pixel is the image pixel its affine points at (or the fill outside the image)
    for r in range(7):
        for c in range(9):
            x, y = G.apply_affine(G.invert(m), [[c, r]])[0]
            inside = 0 <= x < 40 and 0 <= y < 30
            assert win[r, c] == (img[int(y), int(x)] if inside else 0)
    pts = np.array([[3.25, 4.75], [12.1, -2.2]])
    assert np.abs(G.apply_affine(G.invert(m), G.apply_affine(m, pts)) - pts).max() < 1e-3
