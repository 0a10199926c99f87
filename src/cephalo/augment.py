"""Online augmentation that moves landmarks with the pixels (albumentations 2.0.8).

:func:`build_augmentation` turns the ``train.augment`` params sub-dict into a callable
``aug(image (H, W) uint8/uint16, keypoints (K, 2) float xy px) -> (image, keypoints)``:

* every landmark comes out, in its order, always — also when moved out of the frame
  (``KeypointParams(format="xy", remove_invisible=False)`` with the landmark ids carried
  as a label field and checked on the way out); NaN (missing) landmarks stay NaN;
* the image keeps its size and dtype; 16-bit images are processed in float32 at full
  precision (albumentations' own CLAHE would cut them to 8 bits, so CLAHE here is
  OpenCV's at 16 bits) and come back as uint16;
* coordinates follow cephalo's convention (xy, origin at the centre of the top-left
  pixel). albumentations' ``Affine`` uses the same convention (verified by
  ``tests/test_augment.py``). Its ``ElasticTransform`` keypoint mapping truncates to
  integer pixels and clips to the image, so :class:`LandmarkElastic` keeps its image
  warp but maps landmarks by inverting the displacement field to sub-pixel accuracy.
  (albumentations' ``Resize`` maps keypoints as ``x * scale``, a corner convention —
  not used here; resizing belongs to :mod:`cephalo.preprocess`.) albumentations holds
  keypoints as float32 (about 1e-4 px of rounding at 2,400 px); with no geometric
  transform configured the keypoints are returned untouched.

Params keys (``train.augment``; every block optional, ``p`` is its probability):

.. code-block:: yaml

    augment:
      enabled: true
      affine:   {p: 0.8, rotate_deg: 10, scale: [0.9, 1.1], translate_frac: 0.05, shear_deg: 0}
      elastic:  {p: 0.0, alpha: 30, sigma: 10}          # displacement field (px), smoothing (px)
      hflip:    {p: 0.0}                                # off: a flipped cephalogram faces the other way
      clahe:    {p: 0.0, clip_limit: [1.0, 4.0], tile_grid: 8}
      brightness_contrast: {p: 0.5, brightness: 0.2, contrast: 0.2}
      gamma:    {p: 0.3, gamma: [0.8, 1.2]}
      noise:    {p: 0.2, std: [0.01, 0.04]}             # Gaussian noise std, fraction of white

Sources: Simard et al., "Best practices for CNNs applied to visual document analysis"
(ICDAR 2003) for the elastic deformation; albumentations (Buslaev et al., Information
11(2) 2020) for the transforms.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from .config.schema import AugmentConfig

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__all__ = ["DEFAULT_AUGMENT", "AUGMENT_KEYS", "build_augmentation", "Augmenter", "invert_displacement"]

#: the defaults of every block (from the params schema, cephalo.config.schema.AugmentConfig);
#: a block given in params overrides these keys
DEFAULT_AUGMENT: dict[str, dict[str, Any]] = AugmentConfig.default_blocks()
AUGMENT_KEYS = ("enabled", *DEFAULT_AUGMENT)


def _bilinear(field: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Sample a (H, W) field at float pixel positions (clamped to the border)."""
    h, w = field.shape
    x = np.clip(x, 0, w - 1)
    y = np.clip(y, 0, h - 1)
    x0 = np.minimum(np.floor(x).astype(int), w - 2) if w > 1 else np.zeros_like(x, int)
    y0 = np.minimum(np.floor(y).astype(int), h - 2) if h > 1 else np.zeros_like(y, int)
    fx, fy = x - x0, y - y0
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    return (
        field[y0, x0] * (1 - fx) * (1 - fy)
        + field[y0, x1] * fx * (1 - fy)
        + field[y1, x0] * (1 - fx) * fy
        + field[y1, x1] * fx * fy
    )


def invert_displacement(map_x: np.ndarray, map_y: np.ndarray, points: np.ndarray, iterations: int = 30) -> np.ndarray:
    """Where source points land under a ``cv2.remap`` warp.

    ``cv2.remap`` sets output pixel ``q`` from source position ``(map_x[q], map_y[q])
    = q + d(q)``; a source point ``s`` therefore lands on the ``q`` solving
    ``q + d(q) = s``, found by the fixed-point iteration ``q <- s - d(q)`` with ``d``
    bilinearly interpolated (converges when the field's gradient is below 1, i.e. the
    warp folds nothing). Not clipped: points may land outside the frame.

    Args:
        map_x, map_y: ``(H, W)`` float32 source positions per output pixel.
        points: ``(K, 2)`` float xy source px.

    Returns:
        ``(K, 2)`` float64 xy output px.
    """
    h, w = map_x.shape
    gx, gy = np.meshgrid(np.arange(w), np.arange(h))
    dx, dy = map_x - gx, map_y - gy
    s = np.asarray(points, dtype=np.float64)
    q = s.copy()
    for _ in range(iterations):
        qn = np.stack([s[:, 0] - _bilinear(dx, q[:, 0], q[:, 1]), s[:, 1] - _bilinear(dy, q[:, 0], q[:, 1])], -1)
        if np.max(np.abs(qn - q), initial=0.0) < 1e-6:
            q = qn
            break
        q = qn
    return q


def _landmark_elastic_class():
    import albumentations as A

    class LandmarkElastic(A.ElasticTransform):
        """albumentations' ``ElasticTransform`` image warp; keypoints mapped by
        :func:`invert_displacement` (sub-pixel, never clipped)."""

        def apply_to_keypoints(self, keypoints, map_x, map_y, **params):
            if len(keypoints) == 0:
                return keypoints
            out = keypoints.copy()
            out[:, :2] = invert_displacement(map_x, map_y, keypoints[:, :2])
            return out

    return LandmarkElastic


class _Clahe16:
    """Factory of an ImageOnlyTransform applying OpenCV CLAHE to a float32 [0, 1] image at the
    source's bit depth (``bits``, set per call by :class:`Augmenter`): albumentations' CLAHE
    converts floats to 8 bits, which would truncate 16-bit images."""

    @staticmethod
    def make(clip_limit, tile_grid: int, p: float):
        import albumentations as A
        import cv2

        lo, hi = (clip_limit, clip_limit) if np.isscalar(clip_limit) else (float(clip_limit[0]), float(clip_limit[1]))

        class Clahe16(A.ImageOnlyTransform):
            bits = 16

            def get_params(self):
                return {"clip": float(self.py_random.uniform(lo, hi))}

            def apply(self, img, clip=2.0, **params):
                top, dtype = (255.0, np.uint8) if self.bits == 8 else (65535.0, np.uint16)
                u = np.clip(np.round(img * top), 0, top).astype(dtype)
                c = cv2.createCLAHE(clipLimit=clip, tileGridSize=(int(tile_grid),) * 2)
                if u.ndim == 3:
                    out = np.stack([c.apply(np.ascontiguousarray(u[..., i])) for i in range(u.shape[2])], -1)
                else:
                    out = c.apply(u)
                return out.astype(np.float32) / top

        return Clahe16(p=p)


def _pair(v: Any) -> tuple[float, float]:
    """``(lo, hi)`` of a schema-checked ``NumberOrPair`` (a number ``v`` is ``(v, v)``)."""
    if np.isscalar(v):
        return float(v), float(v)
    return float(v[0]), float(v[1])


def _symmetric(v: Any) -> tuple[float, float]:
    """``(lo, hi)`` of a ``NumberOrPair`` where a number ``v`` means ``(-v, v)``."""
    return (-float(v), float(v)) if np.isscalar(v) else _pair(v)


class Augmenter:
    """The callable :func:`build_augmentation` returns (see module doc).

    ``aug(image, keypoints) -> (image, keypoints)``: ``image`` ``(H, W)`` uint8/uint16
    (returned with the same shape and dtype); ``keypoints`` ``(K, 2)`` float xy px in
    the image's frame (returned ``(K, 2)`` float64, same order, NaN kept).
    ``aug.reseed(seed)`` re-seeds (use one seed per DataLoader worker).

    Raises (on call): ValueError for a bad image/keypoint shape or dtype.
    """

    def __init__(self, compose, enabled: bool, geometric: bool = True, clahe=None):
        self.compose = compose
        self.enabled = enabled
        self.geometric = geometric
        self._clahe = clahe

    def reseed(self, seed: int) -> None:
        self.compose.set_random_seed(int(seed))

    def __call__(self, image: np.ndarray, keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        image = np.asarray(image)
        kp = np.asarray(keypoints, dtype=np.float64)
        if image.ndim != 2 or image.dtype not in (np.uint8, np.uint16):
            raise ValueError(f"augment: expected a (H, W) uint8/uint16 image, got {image.shape} {image.dtype}")
        if kp.ndim != 2 or kp.shape[1] != 2:
            raise ValueError(f"augment: expected (K, 2) keypoints, got shape {kp.shape}")
        if not self.enabled:
            return image.copy(), kp.copy()
        top = 255.0 if image.dtype == np.uint8 else 65535.0
        missing = ~np.isfinite(kp).all(axis=1)
        kp_in = np.where(missing[:, None], 0.0, kp)
        ids = np.arange(len(kp))
        if self._clahe is not None:
            self._clahe.bits = 8 if image.dtype == np.uint8 else 16
        if not self.geometric:  # pixels only: landmarks stay exactly where they are
            out = self.compose(image=image.astype(np.float32) / top)
            out["keypoints"], out["landmark_ids"] = kp_in, ids
        else:
            out = self.compose(image=image.astype(np.float32) / top, keypoints=kp_in, landmark_ids=ids)
        got_ids = np.asarray(out["landmark_ids"]).astype(int)
        got = np.asarray(out["keypoints"], dtype=np.float64).reshape(-1, 2)
        if len(got) != len(kp) or not np.array_equal(got_ids, ids):
            raise RuntimeError(  # the contract; guarded so a library change cannot silently reorder
                f"augmentation changed the landmarks: {len(kp)} in, ids {got_ids.tolist()} out"
            )
        got[missing] = np.nan
        img = np.clip(np.round(np.asarray(out["image"], dtype=np.float32) * top), 0, top).astype(image.dtype)
        return img, got


def build_augmentation(cfg: Mapping | None, seed: int | None = None) -> Augmenter:
    """Build the training augmentation from the ``train.augment`` params sub-dict.

    Args:
        cfg: the sub-dict (module doc for keys); None or ``{}`` -> the defaults;
            ``enabled: false`` -> identity.
        seed: seed of albumentations' random generators (reproducible streams).

    Returns:
        an :class:`Augmenter`.

    Raises:
        ConfigError: unknown blocks/keys or malformed values.
    """
    import albumentations as A
    import cv2

    # the checks and defaults of train.augment are its schema's (AugmentConfig); a block given as
    # false is off (p = 0)
    blocks = AugmentConfig.from_dict(cfg, "train.augment").model_dump()
    enabled = bool(blocks.pop("enabled"))
    t: list = []
    b = blocks["hflip"]
    if b["p"] > 0:
        t.append(A.HorizontalFlip(p=b["p"]))
    b = blocks["affine"]
    if b["p"] > 0:
        rot, shear, tr = _symmetric(b["rotate_deg"]), _symmetric(b["shear_deg"]), _symmetric(b["translate_frac"])
        t.append(
            A.Affine(
                rotate=rot,
                scale=_pair(b["scale"]),
                translate_percent={"x": tr, "y": tr},
                shear={"x": shear, "y": shear},
                interpolation=cv2.INTER_LINEAR,
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                p=b["p"],
            )
        )
    b = blocks["elastic"]
    if b["p"] > 0:
        t.append(
            _landmark_elastic_class()(
                alpha=float(b["alpha"]), sigma=float(b["sigma"]), border_mode=cv2.BORDER_CONSTANT, p=b["p"]
            )
        )
    geometric = len(t) > 0
    clahe = None
    b = blocks["clahe"]
    if b["p"] > 0:
        clahe = _Clahe16.make(b["clip_limit"], int(b["tile_grid"]), b["p"])
        t.append(clahe)
    b = blocks["brightness_contrast"]
    if b["p"] > 0:
        t.append(
            A.RandomBrightnessContrast(
                brightness_limit=float(b["brightness"]), contrast_limit=float(b["contrast"]), p=b["p"]
            )
        )
    b = blocks["gamma"]
    if b["p"] > 0:
        lo, hi = _pair(b["gamma"])
        t.append(A.RandomGamma(gamma_limit=(lo * 100.0, hi * 100.0), p=b["p"]))
    b = blocks["noise"]
    if b["p"] > 0:
        t.append(A.GaussNoise(std_range=_pair(b["std"]), p=b["p"]))
    compose = A.Compose(
        t,
        keypoint_params=(
            A.KeypointParams(format="xy", remove_invisible=False, label_fields=["landmark_ids"]) if geometric else None
        ),
        seed=seed,
        strict=True,
    )
    return Augmenter(compose, enabled, geometric, clahe)
