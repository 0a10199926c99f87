"""Online augmentation: landmarks follow the pixels, always all of them, in order."""

from __future__ import annotations

import numpy as np
import pytest

from cephalo.augment import DEFAULT_AUGMENT, build_augmentation, invert_displacement
from cephalo.errors import ConfigError
from helpers import centroid

H = W = 96
MARKED = np.array([[24.3, 25.7], [71.1, 24.2], [23.6, 70.4], [70.3, 71.8], [47.5, 48.2]])  # spread apart
_YY, _XX = np.mgrid[0:H, 0:W]


def _blobs(points, sigma=1.5):
    img = np.zeros((H, W))
    for x, y in points:
        img += np.exp(-((_XX - x) ** 2 + (_YY - y) ** 2) / (2 * sigma**2))
    return img / img.max()


STRONG = {
    "affine": {"p": 0.9, "rotate_deg": 25, "scale": [0.85, 1.15], "translate_frac": 0.04, "shear_deg": 5},
    "elastic": {"p": 0.5, "alpha": 20, "sigma": 8},
    "clahe": {"p": 0.2, "clip_limit": [1.0, 3.0], "tile_grid": 4},
    "brightness_contrast": {"p": 0.5, "brightness": 0.15, "contrast": 0.15},
    "gamma": {"p": 0.5, "gamma": [0.8, 1.25]},
    "noise": {"p": 0.0},  # noise moves an intensity centroid by itself; tested separately
}


def test_29_landmarks_follow_their_markers_through_1000_augmentations():
    """Every call returns 29 landmarks in order; 5 marked ones stay on their blob (< 0.5 px)."""
    aug = build_augmentation(STRONG, seed=123)
    rng = np.random.default_rng(0)
    base = _blobs(MARKED)
    worst, n_checked, n_outside = 0.0, 0, 0
    for i in range(1000):
        kp = np.vstack([MARKED, rng.uniform(-20, W + 20, (24, 2))])  # some start outside the frame
        perm = rng.permutation(29)  # marked landmarks at varying positions in the order
        kp = kp[perm]
        dtype = np.uint16 if i % 4 == 0 else np.uint8
        img = np.round(base * (65535 if dtype == np.uint16 else 255)).astype(dtype)
        out, got = aug(img, kp)
        assert got.shape == (29, 2) and out.shape == (H, W) and out.dtype == dtype
        assert np.isfinite(got).all()
        n_outside += int(((got < -0.5) | (got > W - 0.5)).any(axis=1).sum())
        for j in np.flatnonzero(perm < len(MARKED)):
            q = got[j]
            if q.min() < 8 or q.max() > W - 9:
                continue
            worst = max(worst, float(np.linalg.norm(centroid(out, q, 6) - q)))
            n_checked += 1
    assert n_checked > 4000 and n_outside > 100  # out-of-frame landmarks come out too
    assert worst < 0.5, worst


def test_landmark_order_and_nan_preserved_and_identity():
    aug = build_augmentation({"enabled": False}, seed=0)
    img = np.zeros((20, 30), np.uint8)
    kp = np.array([[1.0, 2.0], [np.nan, np.nan], [50.0, -3.0]])
    o, k = aug(img, kp)
    np.testing.assert_array_equal(k, kp)
    aug = build_augmentation({"affine": {"p": 1.0, "rotate_deg": [90, 90], "scale": 1.0, "translate_frac": 0}}, seed=0)
    o, k = aug(img, kp)
    assert np.isnan(k[1]).all() and np.isfinite(k[[0, 2]]).all()
    # a 90-degree rotation about the image centre (cx, cy) = ((W-1)/2, (H-1)/2): pixel-centre convention
    cx, cy = (30 - 1) / 2, (20 - 1) / 2
    for p, q in zip(kp[[0, 2]], k[[0, 2]], strict=True):
        r = np.hypot(p[0] - cx, p[1] - cy)
        np.testing.assert_allclose(np.hypot(q[0] - cx, q[1] - cy), r, atol=1e-3)
        np.testing.assert_allclose(abs(np.dot(q - [cx, cy], p - [cx, cy])), 0, atol=1e-3)


def test_same_seed_same_stream_and_reseed():
    img = (np.random.default_rng(0).uniform(0, 255, (40, 40))).astype(np.uint8)
    kp = np.array([[10.0, 10.0], [30.0, 20.0]])
    a, b = build_augmentation(STRONG, seed=7), build_augmentation(STRONG, seed=7)
    for _ in range(3):
        (ia, ka), (ib, kb) = a(img, kp), b(img, kp)
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(ka, kb)
    b.reseed(8)
    assert not np.array_equal(a(img, kp)[1], b(img, kp)[1])


def test_intensity_only_keeps_landmarks_and_16_bits():
    cfg = {
        "affine": {"p": 0},
        "clahe": {"p": 1.0},
        "brightness_contrast": {"p": 1.0},
        "gamma": {"p": 1.0},
        "noise": {"p": 1.0, "std": [0.02, 0.02]},
    }
    aug = build_augmentation(cfg, seed=1)
    ramp = np.tile(np.linspace(1000, 60000, 64), (48, 1)).astype(np.uint16)
    kp = np.array([[3.3, 4.4], [60.0, 40.0]])
    out, k = aug(ramp, kp)
    np.testing.assert_array_equal(k, kp)
    assert out.dtype == np.uint16 and not np.array_equal(out, ramp)
    assert len(np.unique(out)) > 256  # not squeezed through 8 bits


def test_invert_displacement_against_cv2_remap():
    import cv2

    rng = np.random.default_rng(3)
    dx = cv2.GaussianBlur(rng.normal(0, 40, (H, W)).astype(np.float32), (0, 0), 9)
    dy = cv2.GaussianBlur(rng.normal(0, 40, (H, W)).astype(np.float32), (0, 0), 9)
    gx, gy = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
    map_x, map_y = gx + dx, gy + dy
    q = invert_displacement(map_x, map_y, MARKED)
    warped = cv2.remap(_blobs(MARKED).astype(np.float32), map_x, map_y, cv2.INTER_LINEAR)
    for p in q:
        assert np.linalg.norm(centroid(warped, p, 6) - p) < 0.2


def test_config_errors():
    with pytest.raises(ConfigError, match=r"train\.augment\.rotate: unknown key"):
        build_augmentation({"rotate": 3})
    with pytest.raises(ConfigError, match="affine"):
        build_augmentation({"affine": {"rotation": 3}})
    assert DEFAULT_AUGMENT["hflip"]["p"] == 0.0  # no horizontal flip by default
    aug = build_augmentation({}, seed=0)
    with pytest.raises(ValueError, match="uint8/uint16"):
        aug(np.zeros((4, 4), np.float32), np.zeros((1, 2)))


def test_out_of_frame_landmarks_follow_the_same_affine():
    """With an affine-only config, landmarks far outside the frame obey the affine that the
    in-frame ones reveal (nothing clipped or dropped)."""
    cfg = {
        "affine": {"p": 1.0, "rotate_deg": 30, "scale": [0.8, 1.2], "translate_frac": 0.1, "shear_deg": 8},
        "brightness_contrast": {"p": 0},
        "gamma": {"p": 0},
        "noise": {"p": 0},
    }
    aug = build_augmentation(cfg, seed=5)
    inside = np.array([[10.0, 12.0], [80.0, 15.0], [20.0, 85.0]])
    outside = np.array([[-300.0, 40.0], [500.0, -250.0], [48.0, 1000.0]])
    img = np.zeros((H, W), np.uint8)
    for _ in range(50):
        _, got = aug(img, np.vstack([inside, outside]))
        # solve the (2, 3) affine from the three in-frame landmarks
        a = np.hstack([inside, np.ones((3, 1))])
        m = np.linalg.solve(a, got[:3]).T
        np.testing.assert_allclose(got[3:], outside @ m[:, :2].T + m[:, 2], atol=2e-3)
