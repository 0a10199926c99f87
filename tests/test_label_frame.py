"""The public HRNet's label mapping (x * scale + pad) versus the exact pixel mapping."""

import numpy as np
import pytest

from cephalo import geometry as G


def test_pixel_centre_convention_is_the_pixel_affine():
    m = G.letterbox_geometry((1968, 2225), 768).affine()
    np.testing.assert_array_equal(G.label_frame_affine(m, (1968, 2225), (768, 768)), m)


def test_hf_corner_letterbox_is_x_times_scale_plus_pad_hand_computed():
    # ISBI 1935x2400 into 768: scale = 768/2400 = 0.32, new = (int(619.2), 768) = (619, 768),
    # pad_left = (768 - 619) // 2 = 74, pad_top = 0.
    m = G.letterbox_geometry((1935, 2400), 768).affine()
    lab = G.label_frame_affine(m, (1935, 2400), (768, 768), "hf_corner")
    np.testing.assert_allclose(lab, [[0.32, 0, 74], [0, 0.32, 0]], atol=1e-12)
    # Sella at (800, 1000) -> (800*0.32+74, 1000*0.32) = (330, 320) in the model's label frame.
    np.testing.assert_allclose(G.apply_affine(lab, np.array([[800.0, 1000.0]])), [[330.0, 320.0]])
    # Round trip back to original pixels is exact.
    back = G.apply_affine(G.invert(lab), G.apply_affine(lab, np.array([[800.0, 1000.0]])))
    np.testing.assert_allclose(back, [[800.0, 1000.0]], atol=1e-9)
    # The two mappings differ systematically by about a third of an input pixel.
    d = G.apply_affine(m, np.array([[800.0, 1000.0]])) - G.apply_affine(lab, np.array([[800.0, 1000.0]]))
    assert -0.6 < d[0, 0] < -0.2 and d[0, 1] == pytest.approx(-0.34)


def test_hf_corner_plain_resize_drops_the_half_pixel_term():
    r = G.resize_affine((100, 50), (200, 200))  # x' = 2x + 0.5, y' = 4y + 1.5
    np.testing.assert_allclose(
        G.label_frame_affine(r, (100, 50), (200, 200), "hf_corner"), [[2, 0, 0], [0, 4, 0]], atol=1e-12
    )


def test_errors():
    with pytest.raises(ValueError, match="valid"):
        G.label_frame_affine(G.identity(), (10, 10), (10, 10), "nope")
    rot = np.array([[0.0, -1.0, 5.0], [1.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="axis-aligned"):
        G.label_frame_affine(rot, (10, 10), (10, 10), "hf_corner")
