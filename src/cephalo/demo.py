"""Embedded synthetic demo data: a source-like ISBI 2015 release and a target-like Aariz release.

The demo lets the whole pipeline (index -> preprocess -> train -> zero-shot -> fine-tune ->
evaluate -> compare) run offline on a laptop. Nothing here is real anatomy, but every landmark
sits *on* a drawn, anatomy-like structure (cranial vault, cranial base, sella turcica, orbit,
ear-rod ring, nasal bone, maxilla, mandible, incisors, premolars, molars, soft-tissue profile),
so a heatmap network can learn it, and the target "devices" differ from the source in image
size, aspect ratio (one landscape), field of view, pixel spacing, contrast/gamma, noise and blur,
in where the head sits and how it is tilted, in collimation (bright unexposed borders) and in
the text labels burnt into the image, so the zero-shot failure on the target is produced by the
data, not faked.

How an image is made (:func:`render_cephalogram`)
--------------------------------------------------
1. A canonical skull template (:func:`cephalo.demo_skull.skull_template`) holds polylines/polygons and all 29
   Aariz landmarks (the 19 ISBI landmarks are a subset, matched by canonical name) in
   *anatomical millimetres* of a real adult head, facing right, x right, y down.
2. A random per-image perturbation: a similarity (rotation, isotropic scale, translation) and a
   smooth elastic displacement (a sum of Gaussian radial basis bumps, amplitude ~2-3 mm) is applied
   to every template point; drawn structures and landmarks move together, so landmarks stay on
   their structures.
3. Anatomical mm become detector mm by ``head_scale`` (1.0: the head has its real size, so every
   figure is in real mm), and pixels by the device's pixel spacing (mm/px; the demo devices are
   coarse, 0.65-0.9 mm/px, so images are a few hundred pixels). Coordinates use cephalo's
   convention (``cephalo.geometry``: xy, origin at the centre of the top-left pixel).
4. Layers are rendered with anti-aliasing (OpenCV ``LINE_AA`` with 4 fractional bits), blurred,
   passed through the device's gamma/contrast/brightness, shaded by its collimator (bright,
   unexposed borders) and given Gaussian noise; devices with ``labels`` get white text (machine
   name, patient number, date) burnt in, as real cephalograms have.

Annotations: the senior annotator is the true landmark rounded to integer pixels (as the
releases store it); the junior annotator adds isotropic Gaussian jitter whose mean radial size is
``junior_jitter_mm`` anatomical mm, then rounds.

Everything is drawn from one ``numpy.random.Generator`` seeded by ``demo.seed``: the same params
give byte-identical files (PNG/BMP/JPEG via OpenCV, JSON/CSV/TXT text).

On-disk layouts follow the official releases (see the project's ``DATASETS.md``); each data
set's writer lives beside its adapter: :func:`cephalo.datasets.isbi2015.demo.write_isbi2015` (ISBI
2015 layout) and :func:`cephalo.datasets.aariz.demo.write_aariz` (Aariz layout). This module holds
what they share (config, devices, rendering, annotation jitter, image writing; the skull template
they draw is :mod:`cephalo.demo_skull`); it imports neither: ``cephalo make-demo``
(:func:`cephalo.commands.make_demo.make_demo`) runs both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from .demo_skull import SkullTemplate, skull_template
from .errors import ConfigError
from .landmarks import AARIZ29

__all__ = [
    "DeviceSpec",
    "DemoConfig",
    "perturb_template",
    "render_cephalogram",
    "annotate",
    "write_image",
    "progress_bar",
    "DEFAULT_AARIZ_DEVICES",
    "DEFAULT_ISBI_DEVICE",
]

# ----------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class DeviceSpec:
    """One X-ray "device" of the synthetic data.

    Attributes:
        name: machine name written to the Aariz machine mapping CSV.
        spacing_mm: isotropic pixel spacing, detector mm/px.
        size: image size ``(width, height)`` in pixels.
        gamma, contrast, brightness: intensity response ``out = contrast * in**gamma + brightness``
            on [0, 1] intensities.
        noise_sd: Gaussian noise standard deviation on [0, 1] intensities.
        blur_px: Gaussian blur sigma in pixels (detector unsharpness), 0 for none.
        image_format: file extension (``png``, ``jpg``, ``jpeg``, ``bmp``).
        channels: 1 (greyscale file) or 3 (three equal channels, as many real releases store).
        weight: relative share of the images this device produces.
        head_size: mean scale of the heads imaged on this device (its patients' age/population).
        tilt_deg: mean head rotation (positioning habit of the site), degrees, positive = chin down.
        head_offset_mm: mean ``(dx, dy)`` of the head from the centre of the field of view, mm.
        collimation: width of the collimated (unexposed, bright) border on each side, as a
            fraction of the image width/height; 0 = none.
        labels: burn white text labels (machine name, patient number, date) into the image.
    """

    name: str
    spacing_mm: float
    size: tuple[int, int]
    gamma: float = 1.0
    contrast: float = 1.0
    brightness: float = 0.0
    noise_sd: float = 0.02
    blur_px: float = 0.6
    image_format: str = "png"
    channels: int = 1
    weight: float = 1.0
    head_size: float = 1.0
    tilt_deg: float = 0.0
    head_offset_mm: tuple[float, float] = (0.0, 0.0)
    collimation: float = 0.0
    labels: bool = False


@dataclass(frozen=True)
class DemoConfig:
    """What the renderer and the writers need of the ``demo:`` params section.

    Built from the validated section by :func:`cephalo.commands.make_demo.demo_config`: the checks
    and defaults of ``demo:`` live in its schema (:class:`cephalo.config.schema.DemoConfigSchema`) only.

    Attributes:
        seed: seed of the single random generator (same seed -> byte-identical files).
        head_scale: detector mm per anatomical mm (1.0: real size; the devices' coarse pixel
            spacings keep the images small).
        rotation_deg: s.d. of the per-image rotation, degrees.
        scale_sd: s.d. of the per-image isotropic scale factor around 1.
        shift_mm: s.d. of the per-image translation, anatomical mm.
        elastic_mm: amplitude (s.d.) of each elastic bump, anatomical mm.
        junior_jitter_mm: mean radial junior - senior distance, anatomical mm.
        isbi_counts: images per ISBI split folder (TrainingData, Test1Data, Test2Data).
        isbi_device: the single ISBI device.
        aariz_counts: images per Aariz split (train, valid, test).
        aariz_devices: the Aariz devices (at least one).
        shuffle_json_landmarks: write each Aariz JSON's landmark list in a random order (the
            format must be read by ``landmark_id``/``symbol``, never by position).
    """

    seed: int
    head_scale: float
    rotation_deg: float
    scale_sd: float
    shift_mm: float
    elastic_mm: float
    junior_jitter_mm: float
    isbi_counts: dict
    isbi_device: DeviceSpec
    aariz_counts: dict
    aariz_devices: tuple
    shuffle_json_landmarks: bool


#: The source device (ISBI 2015's Soredex CRANEX 3+ Ceph, at a coarse demo spacing); ``demo.isbi2015``
#: keys replace its attributes.
DEFAULT_ISBI_DEVICE = DeviceSpec("ISBI 2015 (Soredex CRANEX 3+ Ceph)", 0.8, (240, 300), image_format="bmp")

#: Three target devices after Aariz's ART Plus, Hyperion X5 and ProMax 2D, at coarse demo spacings
#: (0.65-0.9 mm/px instead of 0.09-0.14) so a real-size head fits in a few hundred pixels: different
#: size, aspect ratio (ProMax landscape), field of view, spacing, format, intensity response, head
#: position/tilt/size, collimation and burnt-in text labels (the source device has none of these).
DEFAULT_AARIZ_DEVICES = (
    DeviceSpec(
        "ART Plus",
        0.75,
        (280, 320),
        gamma=1.0,
        contrast=0.9,
        brightness=0.05,
        noise_sd=0.025,
        image_format="png",
        head_offset_mm=(8.0, 0.0),
        labels=True,
    ),
    DeviceSpec(
        "Hyperion X5",
        0.65,
        (330, 390),
        gamma=0.6,
        contrast=0.8,
        brightness=0.12,
        noise_sd=0.03,
        blur_px=1.0,
        image_format="jpg",
        channels=3,
        tilt_deg=4.0,
        collimation=0.06,
        labels=True,
    ),
    DeviceSpec(
        "ProMax 2D",
        0.9,
        (300, 240),
        gamma=1.7,
        contrast=1.1,
        brightness=0.0,
        noise_sd=0.015,
        blur_px=0.4,
        image_format="bmp",
        head_size=0.94,
        head_offset_mm=(-10.0, 4.0),
        collimation=0.04,
        labels=True,
    ),
)


# ----------------------------------------------------------------------------------------------
# perturbation and rendering


def perturb_template(
    template: SkullTemplate,
    rng: np.random.Generator,
    cfg: DemoConfig,
    size: float = 1.0,
    tilt_deg: float = 0.0,
    offset_mm: tuple[float, float] = (0.0, 0.0),
):
    """Random similarity + smooth elastic warp of every template point (anatomical mm).

    The elastic part is ``d(p) = sum_j a_j exp(-|p - c_j|^2 / (2 s^2))`` with 6 random centres
    ``c_j`` over the field, ``s`` = 45 mm and amplitudes ``a_j ~ N(0, elastic_mm^2)`` per axis;
    then a rotation (``N(tilt_deg, rotation_deg^2)``) and isotropic scale
    (``size * N(1, scale_sd^2)``) about the field centre and a translation
    (``offset_mm + N(0, shift_mm^2)`` per axis). ``size``, ``tilt_deg`` and ``offset_mm`` are a
    device's :class:`DeviceSpec` ``head_size``, ``tilt_deg`` and ``head_offset_mm``.

    Returns:
        ``(warp, landmarks)``: ``warp`` a function ``(P, 2) mm -> (P, 2) mm``; ``landmarks`` a
        ``(29, 2)`` float64 array of the warped landmarks in AARIZ29 order.
    """
    fw, fh = template.field_mm
    centre = np.array([fw / 2, fh / 2])
    centres = rng.uniform([0, 0], [fw, fh], size=(6, 2))
    amps = rng.normal(0.0, cfg.elastic_mm, size=(6, 2))
    theta = np.deg2rad(tilt_deg + rng.normal(0.0, cfg.rotation_deg))
    scale = size * (1.0 + rng.normal(0.0, cfg.scale_sd))
    shift = np.asarray(offset_mm, dtype=np.float64) + rng.normal(0.0, cfg.shift_mm, size=2)
    rot = scale * np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    s2 = 2.0 * 45.0**2

    def warp(p: np.ndarray) -> np.ndarray:
        p = np.asarray(p, dtype=np.float64)
        d2 = ((p[:, None, :] - centres[None]) ** 2).sum(-1)
        q = p + np.exp(-d2 / s2) @ amps
        return (q - centre) @ rot.T + centre + shift

    lms = warp(np.stack([template.landmarks[n] for n in AARIZ29.names]))
    return warp, lms


def _densify(pts: np.ndarray, step: float, closed: bool = False) -> np.ndarray:
    """Resample a polyline so that consecutive points are <= ``step`` apart (keeps the vertices)."""
    pts = np.asarray(pts, dtype=np.float64)
    if closed:
        pts = np.vstack([pts, pts[:1]])
    out = [pts[:1]]
    for a, b in zip(pts[:-1], pts[1:], strict=False):
        n = max(1, int(math.ceil(np.linalg.norm(b - a) / step)))
        t = np.arange(1, n + 1, dtype=np.float64)[:, None] / n
        out.append(a + t * (b - a))
    res = np.vstack(out)
    return res[:-1] if closed else res


_SHIFT = 4  # OpenCV fractional bits for sub-pixel anti-aliased drawing


def _to_cv(p: np.ndarray) -> np.ndarray:
    """xy pixel-centre coordinates -> int32 fixed point for OpenCV (pixel centre = integer)."""
    return np.round(np.asarray(p) * (1 << _SHIFT)).astype(np.int32).reshape(-1, 1, 2)


def render_cephalogram(
    rng: np.random.Generator, device: DeviceSpec, cfg: DemoConfig, template: SkullTemplate | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one synthetic lateral cephalogram.

    Args:
        rng: the generator (advanced by this call; deterministic for a given state).
        device: image size, pixel spacing and intensity response.
        cfg: perturbation sizes and ``head_scale``.
        template: the skull template (default :func:`cephalo.demo_skull.skull_template`).

    Returns:
        ``(image, landmarks)``: ``image`` ``(H, W)`` uint8 greyscale; ``landmarks`` ``(29, 2)``
        float64 true positions in AARIZ29 order, xy, original-image pixels (pixel-centre origin).
        Every landmark lies at least 3 px inside the image (the pose is redrawn until it does).
    """
    template = template or skull_template()
    w, h = device.size
    px_per_mm = cfg.head_scale / device.spacing_mm  # anatomical mm -> pixels
    fw, fh = template.field_mm
    # the collimator leaves an open window; landmarks must lie inside it (3 px margin)
    cx, cy = int(round(device.collimation * w)), int(round(device.collimation * h))
    for _ in range(100):
        warp, lms_mm = perturb_template(template, rng, cfg, device.head_size, device.tilt_deg, device.head_offset_mm)
        # centre the template field on the image, then the per-image shift from the warp
        offset = np.array([(w - 1) / 2 - fw / 2 * px_per_mm, (h - 1) / 2 - fh / 2 * px_per_mm])
        lms = lms_mm * px_per_mm + offset
        if (lms.min(0) >= [cx + 3, cy + 3]).all() and lms[:, 0].max() <= w - 4 - cx and lms[:, 1].max() <= h - 4 - cy:
            break
    else:  # pragma: no cover - only with absurd sizes
        raise ConfigError(
            f"demo device {device.name!r}: {device.size} px at {device.spacing_mm} mm/px "
            "cannot hold the head; enlarge size or reduce head_scale"
        )

    img = np.full((h, w), 0.04, dtype=np.float32)
    mask = np.zeros((h, w), dtype=np.uint8)
    for kind, pts, value, width_mm in template.shapes:
        q = warp(_densify(pts, 1.5, closed=(kind == "fill"))) * px_per_mm + offset
        mask[:] = 0
        if kind == "fill":
            cv2.fillPoly(mask, [_to_cv(q)], 255, lineType=cv2.LINE_AA, shift=_SHIFT)
        else:
            thick = max(1, int(round(width_mm * px_per_mm)))
            cv2.polylines(mask, [_to_cv(q)], False, 255, thickness=thick, lineType=cv2.LINE_AA, shift=_SHIFT)
        a = mask.astype(np.float32) / 255.0
        img = img * (1.0 - a) + np.float32(value) * a
    if device.blur_px > 0:
        img = cv2.GaussianBlur(img, (0, 0), device.blur_px)
    img = device.contrast * np.clip(img, 0.0, 1.0) ** device.gamma + device.brightness
    if device.collimation > 0:  # unexposed borders are bright, with a soft (penumbra) edge
        window = np.zeros((h, w), dtype=np.float32)
        window[cy : h - cy, cx : w - cx] = 1.0
        window = cv2.GaussianBlur(window, (0, 0), 1.5)
        img = img * window + np.float32(0.92) * (1.0 - window)
    img = img + rng.normal(0.0, device.noise_sd, size=img.shape).astype(np.float32)
    if device.labels:
        img = _burn_labels(img, rng, device, (cx, cy))
    out = np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)
    return out, lms


def _burn_labels(img: np.ndarray, rng: np.random.Generator, device: DeviceSpec, margin: tuple[int, int]) -> np.ndarray:
    """White text burnt into the image (machine name and patient number top left, date bottom right)."""
    h, w = img.shape
    scale = 0.035 * h / 22.0  # FONT_HERSHEY_SIMPLEX is ~22 px tall at scale 1
    mask = np.zeros((h, w), dtype=np.uint8)
    line = int(round(0.05 * h))
    x0, y0 = margin[0] + 4, margin[1] + 4 + line
    date = f"{2015 + int(rng.integers(0, 8))}-{1 + int(rng.integers(0, 12)):02d}-{1 + int(rng.integers(0, 28)):02d}"
    texts = [
        (device.name.upper(), (x0, y0)),
        (f"ID {int(rng.integers(10000, 99999))}", (x0, y0 + line)),
        (date, (w - margin[0] - 4 - int(5.6 * line), h - margin[1] - 6)),
        ("R", (w - margin[0] - 4 - line, y0)),
    ]
    for text, org in texts:
        cv2.putText(mask, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, 255, 1, cv2.LINE_AA)
    a = mask.astype(np.float32) / 255.0
    return img * (1.0 - a) + np.float32(1.0) * a


def annotate(rng: np.random.Generator, lms_px: np.ndarray, device: DeviceSpec, cfg: DemoConfig):
    """Senior = rounded truth; junior = truth + isotropic jitter (mean radial ``junior_jitter_mm``).

    Returns:
        ``(senior, junior)``: two ``(K, 2)`` int64 arrays, xy original pixels (junior clipped to the image).
    """
    w, h = device.size
    senior = np.round(lms_px).astype(np.int64)
    sd_px = cfg.junior_jitter_mm / math.sqrt(math.pi / 2) * cfg.head_scale / device.spacing_mm
    junior = np.round(lms_px + rng.normal(0.0, sd_px, size=lms_px.shape)).astype(np.int64)
    junior[:, 0] = np.clip(junior[:, 0], 0, w - 1)
    junior[:, 1] = np.clip(junior[:, 1], 0, h - 1)
    return senior, junior


def write_image(path: Path, image: np.ndarray, device: DeviceSpec) -> None:
    """Write a rendered ``(H, W)`` uint8 image in the device's format and channels (OpenCV).

    Raises:
        OSError: OpenCV could not write the file.
    """
    if device.channels == 3:
        image = np.repeat(image[:, :, None], 3, axis=2)
    params: list[int] = []
    if device.image_format in ("jpg", "jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, 92]
    elif device.image_format == "png":
        params = [cv2.IMWRITE_PNG_COMPRESSION, 6]
    if not cv2.imwrite(str(path), image, params):
        raise OSError(f"{path}: OpenCV could not write the image")


def progress_bar(total: int, desc: str, enabled: bool):
    """A tqdm bar over ``total`` images (disabled unless ``enabled``)."""
    return tqdm(total=total, desc=desc, unit="img", disable=not enabled, leave=False)
