"""Preprocessing steps and the pipeline that composes them into a variant.

Every step maps ``(image (H, W) uint8/uint16, spacing (sx, sy) mm/px or None)`` to
``(image, M)`` where ``M`` is the ``(2, 3)`` float64 affine from the step's input
pixels to its output pixels (pixel-centre convention, :mod:`cephalo.geometry`).
Intensity steps return the identity. dtype is preserved (16-bit stays 16-bit).

Registry: :data:`STEPS`; :func:`create_step` builds one from its name and keyword
arguments (unknown name -> ``ValueError`` listing the valid names).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from .. import geometry as G
from ..errors import ConfigError, DataError

__all__ = [
    "Step",
    "Letterbox",
    "Stretch",
    "Spacing",
    "Clahe",
    "HistogramMatch",
    "STEPS",
    "create_step",
    "Pipeline",
    "parse_steps",
]


def _dtype_max(dtype: np.dtype) -> int:
    if dtype == np.uint8:
        return 255
    if dtype == np.uint16:
        return 65535
    raise ValueError(f"expected a uint8 or uint16 image, got dtype {dtype}")


_INTERP_ALIASES = {
    "bicubic": "cubic",
    "bilinear": "linear",
    "inter_cubic": "cubic",
    "inter_linear": "linear",
    "inter_area": "area",
    "inter_nearest": "nearest",
    "lanczos4": "lanczos",
}


def _interp(name: str) -> str:
    name = _INTERP_ALIASES.get(str(name).lower(), str(name).lower())
    G._cv2_flag(name)  # ValueError listing the valid names
    return name


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"expected a (H, W) greyscale image, got shape {image.shape}")
    _dtype_max(image.dtype)
    return image


def _wh(size: Any, what: str) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    try:
        w, h = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ConfigError(f"{what}: size must be an int or [W, H], got {size!r}") from None
    return w, h


class Step:
    """Base class. Subclasses set ``name`` and ``kind`` and implement :meth:`apply`."""

    name: ClassVar[str] = ""
    kind: ClassVar[str] = "intensity"  # or "geometric"

    def apply(self, image: np.ndarray, spacing: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def __call__(self, image: np.ndarray, spacing: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
        return self.apply(_check_image(image), spacing)

    def output_wh(self) -> tuple[int, int] | None:
        """Fixed output ``(W, H)`` of a geometric step, or None (size follows the input)."""
        return None

    def to_spec(self) -> dict:
        """JSON-able ``{"step": name, **kwargs}`` that :func:`create_step` rebuilds exactly."""
        raise NotImplementedError


@dataclass
class Letterbox(Step):
    """Aspect-preserving resize into ``size`` with black integer pads (the public HRNet's letterbox).

    ``scale = min(S/w, S/h)``, ``new = int(w * scale)``, bicubic ``cv2.resize`` to
    ``new``, then pad with 0: ``pad_left = (S - new_w) // 2`` (remainder right),
    same for top. Implemented with ``cv2.resize`` + integer padding, which is
    exactly the returned affine (``geometry.letterbox_geometry(...).affine()``).

    Source: ``cwlachap/hrnet-cephalometric-landmark-detection`` (HF), see
    ``shared/specs/hf_hrnet_w32/README.md``.
    """

    size: Any = 768
    interpolation: str = "cubic"
    name: ClassVar[str] = "letterbox"
    kind: ClassVar[str] = "geometric"

    def __post_init__(self) -> None:
        self.size = _wh(self.size, "letterbox")
        self.interpolation = _interp(self.interpolation)

    def apply(self, image, spacing=None):
        h, w = image.shape
        lb = G.letterbox_geometry((w, h), self.size)
        resized, m1 = G.resize_image(image, lb.new_wh, self.interpolation)
        out, m2 = G.place(resized, lb.size, lb.pad)
        return out, G.compose(m1, m2)

    def output_wh(self):
        return self.size

    def to_spec(self):
        return {"step": self.name, "size": list(self.size), "interpolation": self.interpolation}


@dataclass
class Stretch(Step):
    """Plain resize to ``size`` ignoring the aspect ratio (anisotropic: the classic mistake).

    Kept to measure what it costs: x and y get different scales, so anatomy is
    distorted and a model trained on one aspect ratio sees another. ``cv2.resize``;
    affine ``geometry.resize_affine``.
    """

    size: Any = 768
    interpolation: str = "cubic"
    name: ClassVar[str] = "stretch"
    kind: ClassVar[str] = "geometric"

    def __post_init__(self) -> None:
        self.size = _wh(self.size, "stretch")
        self.interpolation = _interp(self.interpolation)

    def apply(self, image, spacing=None):
        return G.resize_image(image, self.size, self.interpolation)

    def output_wh(self):
        return self.size

    def to_spec(self):
        return {"step": self.name, "size": list(self.size), "interpolation": self.interpolation}


@dataclass
class Spacing(Step):
    """Resample to ``spacing_mm`` mm/px using the image's own pixel spacing, then fit a fixed
    field of view of ``fov_mm`` (mm, scalar or ``[W, H]``) centred, padding with 0 or cropping.

    Every output pixel then covers the same physical size on every device, so one
    pixel error means the same millimetres everywhere. The resampled size is
    ``round(w * sx / spacing_mm)``, so the exact spacing reached is
    ``sx * w / new_w`` (recorded by the affine); the canvas is
    ``round(fov_mm / spacing_mm)`` px and the offset ``(canvas - new) // 2``
    (integer: ``cv2.resize`` + integer pad/crop, exactly the returned affine).

    Args:
        spacing_mm: target mm/px (isotropic).
        fov_mm: field of view in mm.
        interpolation: ``area`` (anti-aliased, default) or any geometry interpolation.
        fallback_spacing_mm: used when an image has no spacing (else DataError).
    """

    spacing_mm: float = 0.3125
    fov_mm: Any = 240.0
    interpolation: str = "area"
    fallback_spacing_mm: float | None = None
    name: ClassVar[str] = "spacing"
    kind: ClassVar[str] = "geometric"

    def __post_init__(self) -> None:
        if not (float(self.spacing_mm) > 0):
            raise ConfigError(f"spacing: spacing_mm must be > 0, got {self.spacing_mm!r}")
        fov = (self.fov_mm, self.fov_mm) if np.isscalar(self.fov_mm) else tuple(self.fov_mm)
        if len(fov) != 2 or min(float(v) for v in fov) <= 0:
            raise ConfigError(f"spacing: fov_mm must be > 0 (scalar or [W, H]), got {self.fov_mm!r}")
        self.spacing_mm = float(self.spacing_mm)
        self.fov_mm = [float(fov[0]), float(fov[1])]
        self.interpolation = _interp(self.interpolation)

    def output_wh(self):
        return (max(1, round(self.fov_mm[0] / self.spacing_mm)), max(1, round(self.fov_mm[1] / self.spacing_mm)))

    def apply(self, image, spacing=None):
        sx = sy = None
        if spacing is not None:
            sx, sy = (float(v) for v in spacing)
        if sx is None or sy is None or not np.isfinite(sx) or not np.isfinite(sy) or sx <= 0 or sy <= 0:
            if self.fallback_spacing_mm is None:
                raise DataError(
                    f"spacing step needs the image's pixel spacing, got {spacing!r} "
                    "(set fallback_spacing_mm to assume one)"
                )
            sx = sy = float(self.fallback_spacing_mm)
        h, w = image.shape
        new_w = max(1, round(w * sx / self.spacing_mm))
        new_h = max(1, round(h * sy / self.spacing_mm))
        resized, m1 = G.resize_image(image, (new_w, new_h), self.interpolation)
        cw, ch = self.output_wh()
        out, m2 = G.place(resized, (cw, ch), ((cw - new_w) // 2, (ch - new_h) // 2))
        return out, G.compose(m1, m2)

    def to_spec(self):
        return {
            "step": self.name,
            "spacing_mm": self.spacing_mm,
            "fov_mm": list(self.fov_mm),
            "interpolation": self.interpolation,
            "fallback_spacing_mm": self.fallback_spacing_mm,
        }


@dataclass
class Clahe(Step):
    """Contrast-limited adaptive histogram equalisation (``cv2.createCLAHE``), uint8 or uint16.

    Source: Zuiderveld, "Contrast Limited Adaptive Histogram Equalization", Graphics Gems IV (1994).
    """

    clip_limit: float = 2.0
    tile_grid: int = 8
    name: ClassVar[str] = "clahe"
    kind: ClassVar[str] = "intensity"

    def apply(self, image, spacing=None):
        import cv2

        clahe = cv2.createCLAHE(clipLimit=float(self.clip_limit), tileGridSize=(int(self.tile_grid),) * 2)
        return clahe.apply(np.ascontiguousarray(image)), G.identity()

    def to_spec(self):
        return {"step": self.name, "clip_limit": float(self.clip_limit), "tile_grid": int(self.tile_grid)}


@dataclass
class HistogramMatch(Step):
    """Match each image's grey-level histogram to a reference (``skimage.exposure.match_histograms``).

    The reference is a set of ``n_quantiles`` grey-level quantiles on a ``[0, 1]``
    scale (value / dtype maximum) pooled over reference images — typically the
    source data set's training images — computed by :meth:`fit` when a variant is
    built and stored in its spec (and the variant dir), so inference reuses it.
    It is scaled to the image's own bit depth at apply time.

    Args (params): ``reference_index`` (index file of the reference data set; default
    the index being preprocessed), ``reference_split`` (default ``train``; all images
    if that split is absent), ``max_images`` (default 20), ``n_quantiles`` (1024),
    ``quantiles`` (filled by :meth:`fit`).

    Source: Gonzalez & Woods, Digital Image Processing, histogram specification.
    """

    reference_index: str | None = None
    reference_split: str | None = "train"
    max_images: int = 20
    n_quantiles: int = 1024
    quantiles: list | None = None
    reference_source: dict | None = None
    name: ClassVar[str] = "histogram_match"
    kind: ClassVar[str] = "intensity"

    @property
    def fitted(self) -> bool:
        return self.quantiles is not None

    def fit(self, images: Iterable[np.ndarray], source: dict | None = None) -> np.ndarray:
        """Pool the normalised grey levels of ``images`` ((H, W) uint8/uint16) into quantiles.

        Returns the ``(n_quantiles,)`` float64 quantiles in ``[0, 1]`` (also stored on the step).

        Raises:
            DataError: no images.
        """
        hist = np.zeros(65536, dtype=np.int64)  # on a 16-bit scale
        n = 0
        for img in images:
            img = _check_image(img)
            vals = img.astype(np.uint32) * (257 if img.dtype == np.uint8 else 1)
            hist += np.bincount(vals.ravel(), minlength=65536)
            n += 1
        if n == 0:
            raise DataError("histogram_match: no reference images")
        cdf = np.cumsum(hist) / hist.sum()
        probs = (np.arange(self.n_quantiles) + 0.5) / self.n_quantiles
        q = np.searchsorted(cdf, probs, side="left").astype(np.float64) / 65535.0
        self.quantiles = q.tolist()
        self.reference_source = dict(source or {}, n_images=n)
        self.hist16 = hist
        return q

    def apply(self, image, spacing=None):
        from skimage.exposure import match_histograms

        if self.quantiles is None:
            raise ConfigError("histogram_match: no reference histogram (the step was not fitted)")
        top = _dtype_max(image.dtype)
        template = np.round(np.asarray(self.quantiles) * top).astype(image.dtype)[None, :]
        matched = match_histograms(image, template)
        return np.clip(np.round(matched), 0, top).astype(image.dtype), G.identity()

    def to_spec(self):
        return {
            "step": self.name,
            "reference_index": self.reference_index,
            "reference_split": self.reference_split,
            "max_images": int(self.max_images),
            "n_quantiles": int(self.n_quantiles),
            "quantiles": self.quantiles,
            "reference_source": self.reference_source,
        }


STEPS: dict[str, type[Step]] = {c.name: c for c in (Letterbox, Stretch, Spacing, Clahe, HistogramMatch)}


def create_step(name: str, **kwargs: Any) -> Step:
    """Build a step by registry name (``letterbox``, ``stretch``, ``spacing``, ``clahe``,
    ``histogram_match``) with its keyword arguments.

    Raises:
        ValueError: unknown name (listing the valid ones).
        ConfigError: an unknown or invalid keyword argument.
    """
    if name not in STEPS:
        raise ValueError(f"unknown preprocessing step {name!r}; valid: {sorted(STEPS)}")
    cls = STEPS[name]
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"preprocessing step {name!r}: {e}") from None


def parse_steps(steps: Any) -> list[Step]:
    """Steps from params: a list whose items are ``"name"``, ``{"name": {kwargs}}``,
    ``{"step": "name", **kwargs}`` or ``{"name": "name", **kwargs}``. Interpolation
    aliases ``bicubic``/``bilinear`` mean ``cubic``/``linear``.

    Raises:
        ConfigError: malformed list or item; ValueError: unknown step name.
    """
    if not isinstance(steps, (list, tuple)) or not steps:
        raise ConfigError(f"variant 'steps' must be a non-empty list, got {steps!r}")
    out = []
    for item in steps:
        if isinstance(item, str):
            out.append(create_step(item))
        elif isinstance(item, Mapping) and "step" in item:
            kw = {k: v for k, v in item.items() if k != "step"}
            out.append(create_step(str(item["step"]), **kw))
        elif isinstance(item, Mapping) and "name" in item and isinstance(item["name"], str):
            kw = {k: v for k, v in item.items() if k != "name"}  # {"name": step, **kwargs} form
            out.append(create_step(item["name"], **kw))
        elif isinstance(item, Mapping) and len(item) == 1:
            ((name, kw),) = item.items()
            out.append(create_step(str(name), **dict(kw or {})))
        else:
            raise ConfigError(f"cannot read preprocessing step {item!r}")
    return out


@dataclass
class Pipeline:
    """An ordered composition of steps; :meth:`__call__` returns ``(image, M)`` with ``M``
    the composed ``(2, 3)`` affine original -> preprocessed px."""

    steps: list[Step] = field(default_factory=list)

    @classmethod
    def from_spec(cls, spec: Mapping | list) -> Pipeline:
        """From a variant spec (``{"steps": [...], ...}``) or a bare step list."""
        steps = spec.get("steps") if isinstance(spec, Mapping) else spec
        return cls(parse_steps(steps))

    def __call__(self, image: np.ndarray, spacing: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
        m = G.identity()
        for step in self.steps:
            image, ms = step(image, spacing)
            m = G.compose(m, ms)
            if spacing is not None and step.kind == "geometric":
                # the pixel spacing of this step's output (axis-aligned steps only)
                spacing = (float(spacing[0]) / abs(ms[0, 0]), float(spacing[1]) / abs(ms[1, 1]))
        return image, m

    def output_wh(self) -> tuple[int, int] | None:
        """``(W, H)`` of the last geometric step with a fixed size, else None."""
        wh = None
        for step in self.steps:
            if step.output_wh() is not None:
                wh = step.output_wh()
        return wh

    def to_spec(self) -> list[dict]:
        return [s.to_spec() for s in self.steps]
