"""Review flags: which predictions a clinician should check before trusting them.

Landmark flags (per image x landmark):

* ``radius``: its calibrated prediction radius (:mod:`cephalo.uncertainty`, at ``coverage``) exceeds
  ``radius_mm`` (default 2 mm, the clinical tolerance of the ISBI challenge's SDR);
* ``outside``: it lies outside the image;
* ``no_position``: the decoder found no position (flat/non-finite heatmap).

Image flags:

* ``tiny``: the shorter side is below ``min_side_px`` (default 256 px; a cephalogram at 0.1-0.2
  mm/px is over 1000 px);
* ``aspect``: the long/short side ratio exceeds ``max_aspect`` (default 2.0; cephalograms are
  about 1.0-1.4);
* ``no_structure``: :func:`structure_score` below ``min_structure`` (default 0.5): the fraction of
  the grey-level variance (image scaled to 512 px on its long side) that survives a Gaussian blur of
  sigma 2 px. Radiographs hold large smooth structures (0.94-0.97 on the ISBI and Hamedan
  images); white noise keeps ~0.02; a blank image scores 0. A screening heuristic, not a classifier;
* ``noisy``: :func:`noise_level` (pixel noise sd / white level, Immerkaer 1996) above ``max_noise``
  (default 0.01; real radiographs: ISBI 2015 training images <= 0.0016, Hamedan <= 0.0026; added
  Gaussian noise of sd 3 grey levels of 255 gives ~0.012). Not raised on top of ``no_structure``;
* ``shape``: the predicted landmark constellation is implausible for a cephalogram: its Procrustes
  residual (:class:`ShapeModel`: similarity-aligned to the mean training shape, root mean square
  distance over landmarks divided by the centroid size of the mean shape) exceeds the model's
  threshold (``margin`` x the ``quantile`` of the training residuals);
* ``landmarks``: at least ``max_flagged_landmarks`` landmarks (default 3) were not found: outside the
  image or without a position. Radius flags alone do not flag the image: a calibrated radius states
  what the calibration split lets one promise for that landmark, and with a small calibration split
  the 90 % radii of some landmarks exceed 2 mm on every image (the real profile's refined model, 15
  calibration images: 59 of 95 landmarks on five Hamedan test images), so counting them would flag
  every image and the image flag would say nothing. They stay on their landmarks.

Generalised Procrustes analysis: Gower, "Generalized Procrustes analysis", Psychometrika 40 (1975);
similarity alignment without reflection: Umeyama, IEEE TPAMI 13 (1991). Shapes are taken in the
patient frame (x anterior, :func:`cephalo.measurements.patient_frame_mm`) so that a left-facing
image is not implausible for its direction alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .config.schema import ReviewConfig

__all__ = [
    "ReviewConfig",
    "ShapeModel",
    "GEOMETRY_FLAGS",
    "structure_score",
    "noise_level",
    "image_flags",
    "landmark_flags",
    "review",
]

#: image flags that invalidate the image's geometry: no measurement or class is reported for such an
#: image (:func:`cephalo.assess.assess`). Every image flag is one today; a future flag that only asks for
#: a look (e.g. exposure) would stay out of this set.
GEOMETRY_FLAGS: tuple[str, ...] = ("tiny", "aspect", "no_structure", "noisy", "shape", "landmarks")


# --------------------------------------------------------------------------- image content


def structure_score(image: np.ndarray) -> float:
    """Fraction of grey-level variance kept by a sigma-2 Gaussian blur at 512 px long side (0..1).

    Args:
        image: (H, W) uint8/uint16/float greyscale.
    """
    import cv2

    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 3:
        img = img.mean(axis=2)
    h, w = img.shape[:2]
    s = 512.0 / max(h, w)
    if s < 1:
        img = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    v = float(img.var())
    if not v > 1e-6:
        return 0.0
    return float(cv2.GaussianBlur(img, (0, 0), 2.0).var() / v)


def noise_level(image: np.ndarray) -> float:
    """Standard deviation of the image's pixel noise as a fraction of its white level (0..~0.3).

    Immerkaer's estimator (J. Immerkaer, "Fast noise variance estimation", Computer Vision and Image
    Understanding 64:300-302, 1996): the image convolved with the difference of two Laplacians
    ``[[1, -2, 1], [-2, 4, -2], [1, -2, 1]]`` cancels smooth structure up to second order; then
    ``sigma = sqrt(pi / 2) * mean(|I * N|) / 6``. Computed at the image's own resolution (noise is a
    per-pixel property), over the interior pixels, divided by the white level of the dtype (255 for
    uint8, 65535 for uint16, the maximum for float). Edges add a little, so the threshold is
    calibrated on real radiographs (:class:`ReviewConfig` ``max_noise``).

    Args:
        image: (H, W) uint8/uint16/float greyscale, H, W >= 3.

    Returns:
        float >= 0 (0 for an image smaller than 3 x 3).
    """
    import cv2

    img = np.asarray(image)
    if img.ndim == 3:
        img = img.mean(axis=2)
    if min(img.shape[:2]) < 3:
        return 0.0
    white = 255.0 if img.dtype == np.uint8 else 65535.0 if img.dtype == np.uint16 else float(np.nanmax(img)) or 1.0
    f = img.astype(np.float32)
    kernel = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)
    r = cv2.filter2D(f, -1, kernel, borderType=cv2.BORDER_REPLICATE)[1:-1, 1:-1]
    sigma = float(np.sqrt(np.pi / 2.0) * np.abs(r).mean() / 6.0)
    return sigma / white


def image_flags(image: np.ndarray, cfg: ReviewConfig | None = None) -> tuple[list[str], dict]:
    """Content flags of one image (``tiny``, ``aspect``, ``no_structure``, ``noisy``) and the values behind them
    (``aspect_ratio``, ``structure``, ``noise``)."""
    cfg = cfg or ReviewConfig()
    h, w = np.asarray(image).shape[:2]
    aspect = max(w, h) / max(min(w, h), 1)
    score = structure_score(image)
    noise = noise_level(image)
    flags = []
    if min(w, h) < cfg.min_side_px:
        flags.append("tiny")
    if aspect > cfg.max_aspect:
        flags.append("aspect")
    if score < cfg.min_structure:
        flags.append("no_structure")
    elif noise > cfg.max_noise:
        flags.append("noisy")
    return flags, {"aspect_ratio": float(aspect), "structure": float(score), "noise": float(noise)}


# --------------------------------------------------------------------------- shape model


def _align(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Similarity-align (K, 2) ``x`` onto ``ref`` (both centred), no reflection (Umeyama 1991)."""
    u, s, vt = np.linalg.svd(ref.T @ x)
    d = np.sign(np.linalg.det(u @ vt)) or 1.0
    D = np.diag([1.0, d])
    R = u @ D @ vt
    scale = (s * np.diag(D)).sum() / (x**2).sum()
    return scale * x @ R.T


def _centre(x: np.ndarray) -> np.ndarray:
    return x - x.mean(axis=0)


@dataclass
class ShapeModel:
    """Mean landmark constellation + residual threshold (see the module doc).

    Attributes:
        names: K canonical landmark names.
        mean: (K, 2) mean shape, centred, unit centroid size, patient frame.
        threshold: residual above which a constellation is implausible.
        train_residuals: quantiles (50, 90, 99, max) of the training residuals.
    """

    names: list[str]
    mean: np.ndarray
    threshold: float
    train_residuals: dict = field(default_factory=dict)

    @classmethod
    def fit(
        cls, shapes: np.ndarray, names: Sequence[str], quantile: float = 0.99, margin: float = 1.5, iterations: int = 10
    ) -> ShapeModel:
        """Generalised Procrustes on (N, K, 2) patient-frame shapes (images with a missing landmark are skipped).

        Raises:
            ValueError: fewer than 3 complete shapes or 3 landmarks.
        """
        x = np.asarray(shapes, dtype=np.float64)
        x = x[np.isfinite(x).all(axis=(1, 2))]
        if x.shape[0] < 3 or x.shape[1] < 3:
            raise ValueError(f"a shape model needs >= 3 complete shapes of >= 3 landmarks, got {x.shape[:2]}")
        x = np.stack([_centre(s) for s in x])
        mean = x[0] / np.linalg.norm(x[0])
        for _ in range(iterations):
            aligned = np.stack([_align(s, mean) for s in x])
            new = _centre(aligned.mean(axis=0))
            new /= np.linalg.norm(new)
            if np.allclose(new, mean, atol=1e-10):
                mean = new
                break
            mean = new
        model = cls([str(n) for n in names], mean, float("inf"))
        r = model.residuals(x)
        model.threshold = float(margin * np.quantile(r, quantile))
        model.train_residuals = {
            "p50": float(np.quantile(r, 0.5)),
            "p90": float(np.quantile(r, 0.9)),
            "p99": float(np.quantile(r, 0.99)),
            "max": float(r.max()),
            "n": int(r.size),
            "quantile": float(quantile),
            "margin": float(margin),
        }
        return model

    def residuals(self, shapes: np.ndarray) -> np.ndarray:
        """(N,) Procrustes residuals of (N, K, 2) patient-frame shapes (NaN where a landmark is missing)."""
        x = np.asarray(shapes, dtype=np.float64)
        out = np.full(x.shape[0], np.nan)
        for i, s in enumerate(x):
            if not np.isfinite(s).all():
                continue
            c = _centre(s)
            if not np.linalg.norm(c) > 0:
                out[i] = np.inf
                continue
            a = _align(c, self.mean)
            out[i] = float(np.sqrt(((a - self.mean) ** 2).sum(axis=1).mean()))
        return out

    def to_dict(self) -> dict:
        return {
            "names": list(self.names),
            "mean": self.mean.tolist(),
            "threshold": self.threshold,
            "train_residuals": dict(self.train_residuals),
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> ShapeModel:
        return cls(
            list(d["names"]),
            np.asarray(d["mean"], dtype=np.float64),
            float(d["threshold"]),
            dict(d.get("train_residuals", {})),
        )

    def select(self, coords: np.ndarray, names: Sequence[str]) -> np.ndarray | None:
        """(N, K_model, 2) columns of ``coords`` (named ``names``) in the model's order; None if any is absent."""
        pos = {n: i for i, n in enumerate(names)}
        if not all(n in pos for n in self.names):
            return None
        return np.asarray(coords)[..., [pos[n] for n in self.names], :]


# --------------------------------------------------------------------------- per prediction


def landmark_flags(
    radius_mm: np.ndarray | None, in_image: np.ndarray, degenerate: np.ndarray, cfg: ReviewConfig | None = None
) -> list[list[str]]:
    """Per landmark, the list of its flags (``radius``, ``outside``, ``no_position``).

    Args:
        radius_mm: (K,) calibrated radii in mm, or None (no calibration / no spacing: no radius flag).
        in_image, degenerate: (K,) bool.
    """
    cfg = cfg or ReviewConfig()
    k = len(in_image)
    r = np.full(k, np.nan) if radius_mm is None else np.asarray(radius_mm, dtype=np.float64)
    out = []
    for j in range(k):
        f = []
        if bool(degenerate[j]):
            f.append("no_position")
        elif not bool(in_image[j]):
            f.append("outside")
        if not np.isnan(r[j]) and r[j] > cfg.radius_mm:
            f.append("radius")
        out.append(f)
    return out


def review(
    image: np.ndarray,
    coords: np.ndarray,
    names: Sequence[str],
    spacing: tuple[float, float] | None,
    in_image: np.ndarray,
    degenerate: np.ndarray,
    radius_mm: np.ndarray | None,
    shape_model: ShapeModel | None,
    cfg: ReviewConfig | None = None,
) -> dict:
    """All flags of one prediction.

    Args:
        image: (H, W) the original image; coords: (K, 2) original px; names: K names;
        spacing: (x, y) mm/px or None (the shape is then compared in pixels: a similarity model
            is scale-free, only anisotropy would matter).

    Returns:
        ``{"image": [flags], "landmarks": [[flags] per landmark], "n_landmarks_flagged", "values":
        {aspect_ratio, structure, shape_residual, shape_threshold}}``.
    """
    from .measurements import patient_frame_mm

    cfg = cfg or ReviewConfig()
    img_flags, values = image_flags(image, cfg)
    lm = landmark_flags(radius_mm, in_image, degenerate, cfg)
    values.update(shape_residual=None, shape_threshold=None)
    if shape_model is not None:
        sel = shape_model.select(np.asarray(coords, dtype=np.float64)[None], list(names))
        if sel is not None:
            frame = patient_frame_mm(sel, shape_model.names, np.asarray(spacing if spacing is not None else (1.0, 1.0)))
            res = float(shape_model.residuals(frame)[0])
            values.update(shape_residual=res if np.isfinite(res) else None, shape_threshold=shape_model.threshold)
            if not res <= shape_model.threshold:  # NaN (missing landmark) or inf counts as implausible
                img_flags.append("shape")
    n_flagged = sum(1 for f in lm if f)
    n_not_found = sum(1 for f in lm if "outside" in f or "no_position" in f)
    if n_not_found >= cfg.max_flagged_landmarks:
        img_flags.append("landmarks")
    return {"image": img_flags, "landmarks": lm, "n_landmarks_flagged": n_flagged, "values": values}
