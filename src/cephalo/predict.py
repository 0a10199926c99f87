"""Inference on raw cephalograms: landmarks in *original* pixels (and mm where the spacing is known).

Pipeline per image (the same chain as training/evaluation, in reverse at the end):

1. decode the file (:func:`read_input_image`): PNG/JPEG/BMP/TIFF through
   :func:`cephalo.preprocess.read_image` (16-bit stays 16-bit); DICOM through the same decoder for
   the pixels and ``pydicom`` for the header (pixel spacing, bits stored, photometric
   interpretation);
2. preprocess with the model's variant spec (:func:`cephalo.preprocess.preprocess_image`), which
   returns the ``(2, 3)`` affine ``M`` original -> model-input pixels;
3. run the model in batches and map its output back to original pixels (xy, origin at the centre
   of the top-left pixel, :mod:`cephalo.geometry`) through :class:`cephalo.inference.Predictor`:
   normalisation (white level from the image's bit depth), the model's codec (``meta.codec``),
   and the inverse of the label frame / preprocessing affine ``M`` -- the same path as training
   validation and ``cephalo evaluate``;
4. to mm with the image's pixel spacing (:func:`cephalo.evaluate.metrics.offsets_mm` from the
   origin, i.e. ``x_mm = x * spacing_x``).

:func:`predict_images` is the library entry point (no CLI logic); :func:`write_predictions`
writes ``predictions.json``, ``predictions.csv`` and one overlay PNG per image, atomically.

DICOM pixel spacing (DICOM PS3.3 C.7.6.2 / C.8.11.7): ``PixelSpacing`` (and
``ImagerPixelSpacing``, ``NominalScannedPixelSpacing``) is ``[row spacing, column spacing]`` =
``[y, x]`` mm/px; it is read in that order and stored here as ``(x, y)``. ``PixelSpacing`` (calibrated
to the patient plane where the modality provides it) wins over ``ImagerPixelSpacing`` (detector plane),
which wins over ``NominalScannedPixelSpacing``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from .errors import CephaloError, ConfigError, DataError
from .inference import resolve_device

__all__ = [
    "IMAGE_SUFFIXES",
    "DICOM_SUFFIXES",
    "InputImage",
    "ImagePrediction",
    "find_images",
    "read_input_image",
    "dicom_spacing",
    "resolve_variant_spec",
    "resolve_device",
    "landmark_symbols",
    "predict_images",
    "predictions_table",
    "write_predictions",
]

#: raster formats read through OpenCV (``cephalo.preprocess.read_image``)
RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
DICOM_SUFFIXES = (".dcm", ".dicom")
#: every suffix a folder INPUT is searched for (case-insensitive)
IMAGE_SUFFIXES = RASTER_SUFFIXES + DICOM_SUFFIXES

_SPACING_TAGS = ("PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing")
_INTERP_ALIASES = {"bicubic": "cubic", "bilinear": "linear", "inter_cubic": "cubic", "inter_linear": "linear",
                   "inter_area": "area", "inter_nearest": "nearest"}


# --------------------------------------------------------------------------- inputs


def find_images(inputs: Iterable[str | Path]) -> list[Path]:
    """Expand INPUT arguments into image files.

    A file is taken as is (any suffix: a DICOM file may have none); a folder contributes its files
    whose suffix is in :data:`IMAGE_SUFFIXES` (case-insensitive, not recursive, sorted by name).
    Duplicates (same resolved path) are dropped, first occurrence kept.

    Raises:
        DataError: an INPUT that does not exist, or a folder without images.
    """
    out: list[Path] = []
    seen: set[Path] = set()
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in this folder", p)
        elif p.is_file():
            files = [p]
        else:
            raise DataError("input not found", p)
        for f in files:
            r = f.resolve()
            if r not in seen:
                seen.add(r)
                out.append(f)
    return out


@dataclass
class InputImage:
    """One decoded input image.

    Attributes:
        path: the file.
        image: ``(H, W)`` uint8 or uint16 greyscale, original pixels (a DICOM image stored with
            ``BitsStored < 16`` is rescaled to the full 16-bit range; MONOCHROME1 arrives inverted
            to MONOCHROME2 by the decoder, SimpleITK/GDCM).
        spacing: ``(x, y)`` mm/px from the file (DICOM), or None.
        spacing_source: the DICOM attribute the spacing came from, or None.
        bit_depth: bits per pixel of the file's grey values (8, 16, or DICOM ``BitsStored``).
    """

    path: Path
    image: np.ndarray
    spacing: tuple[float, float] | None = None
    spacing_source: str | None = None
    bit_depth: int = 8

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])


def _is_dicom(path: Path) -> bool:
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    if path.suffix.lower() in RASTER_SUFFIXES:
        return False
    try:  # DICOM Part 10: 128-byte preamble + "DICM"
        with open(path, "rb") as f:
            head = f.read(132)
        return len(head) == 132 and head[128:132] == b"DICM"
    except OSError:
        return False


def dicom_spacing(ds: Any, path: str | Path | None = None) -> tuple[tuple[float, float] | None, str | None]:
    """Pixel spacing of a pydicom dataset as ``((x, y) mm/px, attribute name)``, or ``(None, None)``.

    DICOM stores ``[row spacing, column spacing]``, i.e. ``[y, x]``; the result is ``(x, y)``.
    Attributes tried in order: ``PixelSpacing``, ``ImagerPixelSpacing``, ``NominalScannedPixelSpacing``.

    Raises:
        DataError: an attribute that is present but not two positive finite numbers.
    """
    for tag in _SPACING_TAGS:
        value = getattr(ds, tag, None)
        if value is None or value == "" or (hasattr(value, "__len__") and len(value) == 0):
            continue
        try:
            vals = [float(v) for v in value]
        except (TypeError, ValueError):
            raise DataError(f"DICOM {tag} is not numeric: {value!r}", path) from None
        if len(vals) != 2 or not all(math.isfinite(v) and v > 0 for v in vals):
            raise DataError(f"DICOM {tag} must be two positive numbers [row (y), column (x)], got {vals}", path)
        row_y, col_x = vals
        return (col_x, row_y), tag
    return None, None


def read_input_image(path: str | Path) -> InputImage:
    """Decode one image file for inference (see :class:`InputImage`).

    PNG/JPEG/BMP/TIFF: :func:`cephalo.preprocess.read_image` (OpenCV, ``IMREAD_UNCHANGED``: 16-bit
    PNG/TIFF stay uint16; colour -> grey). DICOM (``.dcm``/``.dicom`` or a ``DICM`` preamble): pixels
    through the same decoder (SimpleITK/GDCM), header through ``pydicom`` (spacing via
    :func:`dicom_spacing`; ``BitsStored`` < 16 rescaled to 0..65535 so that the white level is the
    stored one, not 65535). ``MONOCHROME1`` images come out of SimpleITK/GDCM already inverted to
    MONOCHROME2 (bone bright); the tests check this.

    Raises:
        DataError: missing/unreadable/undecodable file, unsupported pixel format, bad DICOM header.
    """
    from .preprocess import read_image

    path = Path(path)
    if not path.is_file():
        raise DataError("image file not found", path)
    if not _is_dicom(path):
        img = read_image(path)
        return InputImage(path, img, None, None, 16 if img.dtype == np.uint16 else 8)

    import pydicom

    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
    except Exception as e:  # noqa: BLE001 - any header failure is bad input
        raise DataError(f"cannot read DICOM header ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})",
                        path) from None
    spacing, source = dicom_spacing(ds, path)
    img = read_image(path)
    bits = 16 if img.dtype == np.uint16 else 8
    stored = getattr(ds, "BitsStored", None)
    if img.dtype == np.uint16 and stored is not None and 8 <= int(stored) < 16:
        top = (1 << int(stored)) - 1
        if int(img.max()) <= top:  # values fit the stored depth: stretch to the 16-bit range
            bits = int(stored)
            img = np.round(img.astype(np.float64) * (65535.0 / top)).astype(np.uint16)
    return InputImage(path, img, spacing, source, bits)


# --------------------------------------------------------------------------- model context


def _normalise_step(step: Any) -> Any:
    """Accept the ``{"name": step, **kwargs}`` form (public HRNet meta) besides the preprocess forms."""
    if isinstance(step, Mapping) and "name" in step and "step" not in step and len(step) > 1:
        kw = {k: v for k, v in step.items() if k != "name"}
        if "interpolation" in kw:
            kw["interpolation"] = _INTERP_ALIASES.get(str(kw["interpolation"]).lower(), kw["interpolation"])
        fill = kw.pop("fill", 0)
        if fill not in (0, 0.0, None):
            raise ConfigError(f"preprocessing step {step!r}: only a fill of 0 is supported")
        return {"step": str(step["name"]), **kw}
    return step


def resolve_variant_spec(variant: Any, variants: Mapping[str, Any] | None = None) -> dict:
    """The preprocessing spec to run before the model: ``{"steps": [...], ...}``.

    Args:
        variant: a spec dict (``variant.json["spec"]``, ``ModelMeta.variant``), a bare step list,
            or a variant name looked up in ``variants`` (the params ``variants:`` section).
        variants: name -> spec.

    Raises:
        ConfigError: no spec, an unknown name, or an unreadable step list.
    """
    name = None
    if isinstance(variant, str):
        name = variant
        if not variants or variant not in variants:
            raise ConfigError(
                f"the model's preprocessing variant {variant!r} is not defined in params variants "
                f"(known: {sorted(variants or {})}); pass the variant spec explicitly")
        variant = variants[variant]
    if variant is None:
        raise ConfigError("the model has no preprocessing variant (meta.variant); give one explicitly")
    if isinstance(variant, (list, tuple)):
        spec: dict = {"steps": list(variant)}
    elif isinstance(variant, Mapping):
        spec = dict(variant)
    else:
        raise ConfigError(f"cannot read preprocessing variant {variant!r}")
    if "steps" not in spec:
        raise ConfigError(f"preprocessing variant {name or spec!r} has no 'steps'")
    spec["steps"] = [_normalise_step(s) for s in spec["steps"]]
    from .preprocess.steps import Pipeline

    Pipeline.from_spec(spec)  # validates now (ConfigError / ValueError), not after the first image
    return spec


def landmark_symbols(names: Sequence[str]) -> list[str]:
    """Symbols (``"S"``, ``"N"``) of canonical landmark names, from the catalogue that holds them all
    (an exact catalogue first, then ISBI-19, Aariz-29, CL-Detection-38 per name); ``""`` if unknown."""
    from .landmarks import CATALOGUES

    names = list(names)
    for cat in CATALOGUES.values():
        if cat.names == names:
            return cat.symbols
    for cat in CATALOGUES.values():
        if all(n in cat.names for n in names):
            return [cat[cat.index(n)].symbol for n in names]
    out = []
    for n in names:
        sym = ""
        for cat in CATALOGUES.values():
            if n in cat.names:
                sym = cat[cat.index(n)].symbol
                break
        out.append(sym)
    return out


# --------------------------------------------------------------------------- predictions


@dataclass
class ImagePrediction:
    """Landmarks predicted on one image.

    Attributes:
        path: the image file.
        width, height: original image size in pixels.
        spacing: ``(x, y)`` mm/px (from the file, else the caller's fallback), or None.
        spacing_source: ``PixelSpacing`` | ``ImagerPixelSpacing`` | ``NominalScannedPixelSpacing`` |
            ``given`` (the caller's fallback) | None.
        bit_depth: grey-level bits of the file (8, 16, or DICOM ``BitsStored``).
        landmark_names: canonical names, model channel order (K).
        symbols: their symbols (K).
        coords: ``(K, 2)`` float64, xy, **original-image pixels**, origin at the centre of the top-left
            pixel; NaN where ``degenerate``.
        confidence: ``(K,)`` float64, the codec's confidence (decoder-dependent scale).
        degenerate: ``(K,)`` bool, flat/non-finite heatmap (no position).
        affine: ``(2, 3)`` float64, original px -> model-input px (the preprocessing).
    """

    path: Path
    width: int
    height: int
    spacing: tuple[float, float] | None
    spacing_source: str | None
    bit_depth: int
    landmark_names: list[str]
    symbols: list[str]
    coords: np.ndarray
    confidence: np.ndarray
    degenerate: np.ndarray
    affine: np.ndarray
    image_id: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def coords_mm(self) -> np.ndarray | None:
        """``(K, 2)`` float64 mm from the centre of the top-left pixel (``x * spacing_x``, ``y * spacing_y``),
        or None without a spacing. Computed by :func:`cephalo.evaluate.metrics.offsets_mm`."""
        if self.spacing is None:
            return None
        from .evaluate.metrics import offsets_mm

        c = self.coords[None]
        return offsets_mm(c, np.zeros_like(c), np.asarray(self.spacing, dtype=np.float64))[0]

    def in_image(self) -> np.ndarray:
        """``(K,)`` bool: the landmark lies inside the original image ``[-0.5, W - 0.5] x [-0.5, H - 0.5]``."""
        x, y = self.coords[:, 0], self.coords[:, 1]
        with np.errstate(invalid="ignore"):
            return (x >= -0.5) & (x <= self.width - 0.5) & (y >= -0.5) & (y <= self.height - 0.5)

    def to_dict(self) -> dict:
        """JSON record: ``file, image_id, width, height, spacing [x, y] | null, spacing_source, bit_depth,
        affine, landmarks [{name, symbol, x, y, x_mm, y_mm, confidence, degenerate, in_image}]`` (NaN -> null;
        ``in_image`` is False for a position outside the original image, e.g. in letterbox padding)."""
        mm = self.coords_mm
        inside = self.in_image()
        lms = []
        for k, name in enumerate(self.landmark_names):
            lms.append({
                "name": name,
                "symbol": self.symbols[k],
                "x": _num(self.coords[k, 0]),
                "y": _num(self.coords[k, 1]),
                "x_mm": None if mm is None else _num(mm[k, 0]),
                "y_mm": None if mm is None else _num(mm[k, 1]),
                "confidence": _num(self.confidence[k]),
                "degenerate": bool(self.degenerate[k]),
                "in_image": bool(inside[k]),
            })
        d = {
            "file": str(self.path),
            "image_id": self.image_id,
            "width": int(self.width),
            "height": int(self.height),
            "spacing": None if self.spacing is None else [float(self.spacing[0]), float(self.spacing[1])],
            "spacing_source": self.spacing_source,
            "bit_depth": int(self.bit_depth),
            "affine": np.asarray(self.affine, dtype=np.float64).tolist(),
            "landmarks": lms,
        }
        d.update(self.extra)
        return d


def _num(v: Any) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def _fallback_spacing(spacing_mm: Any) -> tuple[float, float] | None:
    if spacing_mm is None:
        return None
    vals = [spacing_mm, spacing_mm] if np.isscalar(spacing_mm) else list(spacing_mm)
    try:
        sx, sy = (float(v) for v in vals)
    except (TypeError, ValueError):
        raise ConfigError(f"pixel spacing must be a number or (x, y) mm/px, got {spacing_mm!r}") from None
    if not (math.isfinite(sx) and math.isfinite(sy) and sx > 0 and sy > 0):
        raise ConfigError(f"pixel spacing must be > 0 mm/px, got {spacing_mm!r}")
    return sx, sy


def predict_images(
    model: Any,
    meta: Any,
    paths: Sequence[str | Path],
    *,
    variant: Any = None,
    variants: Mapping[str, Any] | None = None,
    spacing_mm: float | tuple[float, float] | None = None,
    batch_size: int = 4,
    device: str = "cpu",
    progress: bool = True,
    on_error: Callable[[Path, CephaloError], None] | None = None,
    refine: Callable[[np.ndarray, np.ndarray, Any], np.ndarray] | None = None,
) -> list[ImagePrediction]:
    """Predict landmarks on image files, in original pixels.

    Args:
        model: ``nn.Module``, ``(B, 3, H, W) float32 -> (B, K, H/4, W/4)`` heatmaps/logits
            (``cephalo.models.load_model``).
        meta: its :class:`cephalo.models.ModelMeta` (``landmark_names``, ``input_size``, ``variant``,
            ``normalisation``, ``codec``).
        paths: image files (see :func:`read_input_image` for the formats).
        variant: preprocessing spec/name overriding ``meta.variant`` (:func:`resolve_variant_spec`).
        variants: params ``variants:`` section, to resolve a variant *name*.
        spacing_mm: fallback pixel spacing (mm/px, scalar or ``(x, y)``) for images that carry none;
            a DICOM file's own spacing wins.
        batch_size: images per forward pass (>= 1).
        device: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``.
        progress: show a tqdm bar.
        on_error: called with ``(path, error)`` for an image that cannot be read or preprocessed,
            which is then skipped; None = raise.
        refine: ``(original image, coords (K, 2) original px, spacing (x, y) or None) -> (K, 2)``
            applied to each image's predictions (``cephalo.refine.image_refiner`` of a bundle).

    Returns:
        one :class:`ImagePrediction` per readable image, in ``paths`` order.

    Raises:
        DataError: an unreadable image (when ``on_error`` is None).
        ConfigError: bad batch size/device/spacing, no usable preprocessing spec, a spec whose output
            size differs from ``meta.input_size``, or a codec that does not fit the model output.
    """
    from tqdm import tqdm

    from .inference import Predictor
    from .preprocess import preprocess_image

    if int(batch_size) < 1:
        raise ConfigError(f"batch size must be >= 1, got {batch_size}")
    fallback = _fallback_spacing(spacing_mm)
    spec = resolve_variant_spec(variant if variant is not None else meta.variant, variants)
    predictor = Predictor.from_meta(model, meta, normalisation=spec.get("normalisation") or "imagenet",
                                    device=device)
    W, H = (int(v) for v in meta.input_size)
    names = list(meta.landmark_names)
    symbols = landmark_symbols(names)
    results: list[ImagePrediction] = []
    pending: list[tuple[InputImage, np.ndarray, np.ndarray, tuple | None, str | None]] = []

    def flush() -> None:
        if not pending:
            return
        p = predictor.predict([q[1] for q in pending], np.stack([q[2] for q in pending]),
                              np.array([(q[0].width, q[0].height) for q in pending]))
        for b, (inp, _, m, sp, src) in enumerate(pending):
            results.append(ImagePrediction(
                path=inp.path, width=inp.width, height=inp.height, spacing=sp, spacing_source=src,
                bit_depth=inp.bit_depth, landmark_names=names, symbols=symbols,
                coords=p.coords[b] if refine is None else refine(inp.image, p.coords[b], sp),
                confidence=p.confidence[b], degenerate=p.degenerate[b], affine=np.asarray(m, dtype=np.float64)))
        pending.clear()

    paths = [Path(p) for p in paths]
    bar = tqdm(total=len(paths), desc="predict", unit="img", disable=not progress)
    try:
        for path in paths:
            try:
                inp = read_input_image(path)
                sp, src = (inp.spacing, inp.spacing_source) if inp.spacing is not None else (
                    (fallback, "given") if fallback is not None else (None, None))
                try:
                    img, m = preprocess_image(inp.image, spec, sp)
                except CephaloError as e:
                    raise DataError(f"preprocessing failed: {e}", path) from None
                if img.shape != (H, W):
                    raise ConfigError(
                        f"the preprocessing spec gives {img.shape[1]}x{img.shape[0]} images but the model "
                        f"expects {W}x{H} (meta.input_size)")
            except DataError as e:
                if on_error is None:
                    raise
                on_error(path, e)
                bar.update(1)
                continue
            pending.append((inp, img, m, sp, src))
            if len(pending) >= int(batch_size):
                n = len(pending)
                flush()
                bar.update(n)
        n = len(pending)
        flush()
        bar.update(n)
    finally:
        bar.close()
    _assign_ids(results)
    return results


def _assign_ids(preds: list[ImagePrediction]) -> None:
    """``image_id`` = file stem, made unique with ``_2``, ``_3`` ... (overlay file names)."""
    used: set[str] = set()
    for p in preds:
        base = p.path.stem or "image"
        cand, i = base, 1
        while cand in used:
            i += 1
            cand = f"{base}_{i}"
        used.add(cand)
        p.image_id = cand


# --------------------------------------------------------------------------- outputs

CSV_COLUMNS = ["file", "image_id", "width", "height", "spacing_x_mm", "spacing_y_mm", "landmark_index",
               "landmark_name", "landmark_symbol", "x", "y", "x_mm", "y_mm", "confidence", "degenerate", "in_image"]


def predictions_table(preds: Sequence[ImagePrediction]):
    """Long table (pandas DataFrame), one row per image x landmark, columns :data:`CSV_COLUMNS`
    (x, y original px; x_mm, y_mm mm from the top-left pixel centre, NaN without spacing)."""
    import pandas as pd

    rows = []
    for p in preds:
        mm = p.coords_mm
        sx, sy = p.spacing if p.spacing is not None else (np.nan, np.nan)
        inside = p.in_image()
        for k, name in enumerate(p.landmark_names):
            rows.append((str(p.path), p.image_id, p.width, p.height, sx, sy, k, name, p.symbols[k],
                         p.coords[k, 0], p.coords[k, 1], np.nan if mm is None else mm[k, 0],
                         np.nan if mm is None else mm[k, 1], p.confidence[k], bool(p.degenerate[k]),
                         bool(inside[k])))
    return pd.DataFrame(rows, columns=CSV_COLUMNS)


def write_predictions(
    preds: Sequence[ImagePrediction],
    out_dir: str | Path,
    *,
    overlays: bool = True,
    info: Mapping[str, Any] | None = None,
    skipped: Sequence[Mapping[str, str]] = (),
    progress: bool = True,
) -> dict[str, Path]:
    """Write ``predictions.json``, ``predictions.csv`` and ``overlays/<image_id>.png`` in ``out_dir``.

    Each file is written atomically (``overlays/`` is replaced whole; ``predictions.json``, written
    last, lists the run: ``info``, ``coordinate_frame``, ``images``, ``skipped``). Overlays are drawn
    with :func:`cephalo.evaluate.plots.overlay` on the original image (predictions only).

    Returns:
        ``{"json": ..., "csv": ..., "overlays": ...}`` paths.

    Raises:
        DataError: an image can no longer be read for its overlay.
    """
    from tqdm import tqdm

    from .io import atomic_dir, atomic_path, write_json

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    records = [p.to_dict() for p in preds]
    if overlays:
        from .evaluate.plots import overlay

        with atomic_dir(out_dir / "overlays") as tmp:
            for p, rec in zip(tqdm(preds, desc="overlays", unit="img", disable=not progress), records):
                img = read_input_image(p.path).image
                nan = np.full_like(p.coords, np.nan)
                conf = np.nanmean(p.confidence) if np.isfinite(p.confidence).any() else float("nan")
                overlay(img, nan, p.coords, tmp / f"{p.image_id}.png",
                        title=f"{p.path.name}: {int((~p.degenerate).sum())}/{len(p.landmark_names)} landmarks, "
                              f"mean confidence {conf:.2f}")
                rec["overlay"] = f"overlays/{p.image_id}.png"
        paths["overlays"] = out_dir / "overlays"
    with atomic_path(out_dir / "predictions.csv") as tmp:
        predictions_table(preds).to_csv(tmp, index=False)
    paths["csv"] = out_dir / "predictions.csv"
    doc = {
        "format": "cephalo-predictions",
        "format_version": 1,
        "coordinate_frame": "original image pixels, xy, origin at the centre of the top-left pixel, x right, "
                            "y down; x_mm/y_mm = x/y times the pixel spacing (mm from that origin)",
        **dict(info or {}),
        "n_images": len(records),
        "images": records,
        "skipped": [dict(s) for s in skipped],
    }
    json.dumps(doc, allow_nan=False, default=str)  # fail before writing if anything is not strict JSON
    write_json(out_dir / "predictions.json", doc)
    paths["json"] = out_dir / "predictions.json"
    return paths
