"""Review flags (cephalo.flags): not-a-cephalogram inputs, implausible constellations, landmark radii."""

from __future__ import annotations

import numpy as np
import pytest

from cephalo import flags as F
from cephalo.errors import ConfigError
from cephalo.landmarks import ISBI19


def _isbi_shapes(root, n):
    files = sorted((root / "isbi2015/AnnotationsByMD/400_mean").glob("*.txt"))[:n]
    return np.array(
        [[[float(v) for v in ln.split(",")[:2]] for ln in f.read_text().splitlines()[:19]] for f in files]
    ), files


def _synthetic_shapes(n=40, k=8, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.uniform(0, 100, size=(k, 2))
    return base[None] + rng.normal(0, 1.0, size=(n, k, 2))


def test_noise_tiny_and_extreme_aspect_are_flagged():
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, size=(300, 4000), dtype=np.uint8)
    f, v = F.image_flags(noise)
    assert "aspect" in f and "no_structure" in f and v["aspect_ratio"] == pytest.approx(4000 / 300)
    f, _ = F.image_flags(rng.integers(0, 256, size=(20, 20), dtype=np.uint8))
    assert "tiny" in f and "no_structure" in f
    assert "no_structure" in F.image_flags(np.zeros((600, 500), np.uint8))[0]  # blank
    smooth = np.tile(np.linspace(0, 255, 500, dtype=np.float32), (600, 1)).astype(np.uint8)
    assert F.image_flags(smooth)[0] == []


def test_shape_model_flags_implausible_constellation_not_similar_copies():
    shapes = _synthetic_shapes()
    names = [f"l{i}" for i in range(8)]
    sm = F.ShapeModel.fit(shapes, names)
    # a similarity transform (rotate 20 deg, scale 3, shift) of a training shape is as plausible as it
    t = np.radians(20)
    R = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    moved = 3 * shapes[0] @ R.T + [500, -40]
    assert sm.residuals(moved[None])[0] == pytest.approx(sm.residuals(shapes[:1])[0], rel=1e-6)
    assert sm.residuals(moved[None])[0] <= sm.threshold
    scrambled = shapes[0][::-1]
    assert sm.residuals(scrambled[None])[0] > sm.threshold
    sm2 = F.ShapeModel.from_dict(sm.to_dict())
    assert sm2.threshold == sm.threshold and np.allclose(sm2.mean, sm.mean)


def test_landmark_flags_and_review_counts():
    lm = F.landmark_flags(np.array([1.0, 2.5, np.nan]), np.array([True, False, True]), np.array([False, False, True]))
    assert lm == [[], ["outside", "radius"], ["no_position"]]
    assert F.landmark_flags(None, np.array([True]), np.array([False])) == [[]]
    with pytest.raises(
        ConfigError, match=r"predict\.review\.radius.*radius_mm"
    ):  # names the key, suggests the right one
        F.ReviewConfig.from_dict({"radius": 2}, "predict.review")
    with pytest.raises(ConfigError, match=r"predict\.review\.coverage"):
        F.ReviewConfig.from_dict({"coverage": 1.5}, "predict.review")
    assert F.ReviewConfig.from_dict({"radius_mm": 3}).radius_mm == 3.0


def test_real_cephalogram_is_not_flagged_and_noise_is(shared_data):
    import cv2

    shapes, files = _isbi_shapes(shared_data, 150)
    from cephalo.measurements import patient_frame_mm

    sm = F.ShapeModel.fit(patient_frame_mm(shapes[:140], ISBI19.names, np.array([0.1, 0.1])), ISBI19.names)
    img_path = shared_data / "isbi2015/RawImage/TrainingData" / (files[145].stem + ".jpg")
    img = cv2.imread(str(img_path), cv2.IMREAD_GRAYSCALE)
    k = len(ISBI19)
    ok = np.ones(k, bool)
    r = F.review(img, shapes[145], ISBI19.names, (0.1, 0.1), ok, ~ok, np.full(k, 1.2), sm)
    assert r["image"] == [] and r["n_landmarks_flagged"] == 0
    # the same landmarks on a noise image of extreme aspect: flagged; a scrambled constellation: flagged
    noise = np.random.default_rng(0).integers(0, 256, size=(300, 4000), dtype=np.uint8)
    r = F.review(noise, shapes[145], ISBI19.names, None, ok, ~ok, None, sm)
    assert {"aspect", "no_structure"} <= set(r["image"])
    r = F.review(img, shapes[145][np.random.default_rng(1).permutation(k)], ISBI19.names, (0.1, 0.1), ok, ~ok, None, sm)
    assert "shape" in r["image"]
    # Hamedan (another clinic and device): not flagged either
    ham = sorted((shared_data / "hamedan/pictures").glob("*.png"))[0]
    assert F.image_flags(cv2.imread(str(ham), cv2.IMREAD_GRAYSCALE))[0] == []


def test_image_flag_counts_landmarks_not_found_not_wide_radii():
    """Three landmarks with radii over the threshold flag those landmarks only; three outside the image
    (or without a position) flag the image: 'landmarks' means the model did not find the anatomy."""
    img = np.zeros((600, 500), np.uint8)
    img[100:500, 100:400] = 200  # one large smooth structure: not "no_structure"
    coords = np.array([[150.0 + 20 * i, 150.0 + 15 * i] for i in range(5)])
    names = [f"l{i}" for i in range(5)]
    ok = np.ones(5, bool)
    wide = np.array([3.0, 3.0, 3.0, 1.0, 1.0])
    r = F.review(img, coords, names, (0.1, 0.1), ok, ~ok, wide, None)
    assert r["image"] == [] and r["n_landmarks_flagged"] == 3
    assert [f for f in r["landmarks"]] == [["radius"]] * 3 + [[], []]
    out = ok.copy()
    out[:2] = False
    deg = ~ok
    deg[4] = True
    r = F.review(img, coords, names, (0.1, 0.1), out, deg, None, None)
    assert r["image"] == ["landmarks"] and r["landmarks"][0] == ["outside"] and r["landmarks"][4] == ["no_position"]
