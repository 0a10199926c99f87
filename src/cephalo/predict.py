"""Inference on raw cephalograms: landmarks in *original* pixels (and mm where the spacing is known).

Pipeline per image (the same chain as training/evaluation, in reverse at the end):

1. decode the file (:func:`cephalo.imageio.read_input_image`, the one image reader): PNG/JPEG/BMP/TIFF
   (16-bit stays 16-bit); DICOM through the same decoder for the pixels and ``pydicom`` for the
   header (pixel spacing, bits stored, photometric interpretation);
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
assesses each prediction (calibrated radii, review flags, measurements: :mod:`cephalo.assess`) and
writes ``predictions.json``, ``predictions.csv``, ``images.csv``, ``measurements.csv``, one overlay
PNG per image, ``report.html`` and optionally LabelMe files, atomically.

DICOM pixel spacing: see :func:`cephalo.imageio.dicom_spacing` (``[row, column]`` = ``[y, x]`` in
the file, ``(x, y)`` here; ``PixelSpacing`` over ``ImagerPixelSpacing`` over
``NominalScannedPixelSpacing``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CephaloError, ConfigError, DataError
from .imageio import InputImage, read_input_image

__all__ = [
    "BatchSettings",
    "ImagePrediction",
    "resolve_variant_spec",
    "predict_images",
    "predictions_table",
    "images_table",
    "measurements_table",
    "write_csv",
    "write_predictions",
]

_INTERP_ALIASES = {
    "bicubic": "cubic",
    "bilinear": "linear",
    "inter_cubic": "cubic",
    "inter_linear": "linear",
    "inter_area": "area",
    "inter_nearest": "nearest",
}


# --------------------------------------------------------------------------- inputs


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
                f"(known: {sorted(variants or {})}); pass the variant spec explicitly"
            )
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


# --------------------------------------------------------------------------- predictions


@dataclass(frozen=True)
class BatchSettings:
    """How :func:`predict_images` runs the model.

    Attributes:
        batch_size: images per forward pass (>= 1).
        device: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``.
        progress: show a tqdm bar.
    """

    batch_size: int = 4
    device: str = "cpu"
    progress: bool = True


@dataclass
class ImagePrediction:
    """Landmarks predicted on one image.

    Attributes:
        path: the image file.
        width, height: original image size in pixels.
        spacing: ``(x, y)`` mm/px (from the file, else the caller's fallback), or None.
        spacing_source: ``PixelSpacing`` | ``ImagerPixelSpacing`` | ``NominalScannedPixelSpacing`` |
            ``given`` (the caller's fallback) | None.
        bit_depth: grey-level bits the values use (8, 16, DICOM ``BitsStored``, or 10/12/14 detected in a
            16-bit file, :func:`cephalo.imageio.effective_bits`).
        container_bits: bits per sample of the file; bit_depth_note: the rescale done, in words (or None).
        landmark_names: canonical names, model channel order (K).
        symbols: their symbols (K).
        coords: ``(K, 2)`` float64, xy, **original-image pixels**, origin at the centre of the top-left
            pixel; NaN where ``degenerate``.
        confidence: ``(K,)`` float64, the codec's confidence (decoder-dependent scale).
        degenerate: ``(K,)`` bool, flat/non-finite heatmap (no position).
        affine: ``(2, 3)`` float64, original px -> model-input px (the preprocessing).
        extra: image-level entries added to the JSON record (``review``, ``measurements``, ``overlay``).
        landmark_extra: name -> K values added to each landmark's JSON record (``radius_mm``, ``flags``).
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
    container_bits: int = 8
    bit_depth_note: str | None = None
    extra: dict = field(default_factory=dict)
    landmark_extra: dict = field(default_factory=dict)

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
            lms.append(
                {
                    "name": name,
                    "symbol": self.symbols[k],
                    "x": _num(self.coords[k, 0]),
                    "y": _num(self.coords[k, 1]),
                    "x_mm": None if mm is None else _num(mm[k, 0]),
                    "y_mm": None if mm is None else _num(mm[k, 1]),
                    "confidence": _num(self.confidence[k]),
                    "degenerate": bool(self.degenerate[k]),
                    "in_image": bool(inside[k]),
                }
            )
            for key, arr in (self.landmark_extra or {}).items():  # radius_mm, flags, ... (one value per landmark)
                v = None if arr is None else arr[k]
                lms[-1][key] = v if isinstance(v, (list, str, bool)) or v is None else _num(v)
        d = {
            "file": str(self.path),
            "image_id": self.image_id,
            "width": int(self.width),
            "height": int(self.height),
            "spacing": None if self.spacing is None else [float(self.spacing[0]), float(self.spacing[1])],
            "spacing_source": self.spacing_source,
            "bit_depth": int(self.bit_depth),
            "container_bits": int(self.container_bits),
            "bit_depth_note": self.bit_depth_note,
            "affine": np.asarray(self.affine, dtype=np.float64).tolist(),
            "landmarks": lms,
        }
        d.update(self.extra)
        return d


def _num(v: Any) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def _fallback_spacing(spacing_mm: Any) -> tuple[float, float] | None:
    """The caller's spacing checked as ``cephalo index`` checks spacings (:func:`cephalo.imageio.check_spacing`)."""
    if spacing_mm is None:
        return None
    from .imageio import parse_spacing

    return parse_spacing(spacing_mm, "pixel spacing", error=ConfigError)


def predict_images(
    model: Any,
    meta: Any,
    paths: Sequence[str | Path],
    *,
    variant: Any = None,
    variants: Mapping[str, Any] | None = None,
    spacing_mm: float | tuple[float, float] | None = None,
    batch: BatchSettings | None = None,
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
        batch: images per forward pass, device, progress bar (:class:`BatchSettings`; its defaults
            when None).
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

    b = batch or BatchSettings()
    batch_size, device, progress = b.batch_size, b.device, b.progress
    if int(batch_size) < 1:
        raise ConfigError(f"batch size must be >= 1, got {batch_size}")
    fallback = _fallback_spacing(spacing_mm)
    spec = resolve_variant_spec(variant if variant is not None else meta.variant, variants)
    predictor = Predictor.from_meta(model, meta, normalisation=spec.get("normalisation") or "imagenet", device=device)
    W, H = (int(v) for v in meta.input_size)
    names = list(meta.landmark_names)
    from .landmarks import landmark_symbols

    symbols = landmark_symbols(names)
    results: list[ImagePrediction] = []
    pending: list[tuple[InputImage, np.ndarray, np.ndarray, tuple | None, str | None]] = []

    def flush() -> None:
        if not pending:
            return
        p = predictor.predict(
            [q[1] for q in pending],
            np.stack([q[2] for q in pending]),
            np.array([(q[0].width, q[0].height) for q in pending]),
        )
        for b, (inp, _, m, sp, src) in enumerate(pending):
            results.append(
                ImagePrediction(
                    path=inp.path,
                    width=inp.width,
                    height=inp.height,
                    spacing=sp,
                    spacing_source=src,
                    bit_depth=inp.bit_depth,
                    container_bits=inp.container_bits,
                    bit_depth_note=inp.bit_depth_note,
                    landmark_names=names,
                    symbols=symbols,
                    coords=p.coords[b] if refine is None else refine(inp.image, p.coords[b], sp),
                    confidence=p.confidence[b],
                    degenerate=p.degenerate[b],
                    affine=np.asarray(m, dtype=np.float64),
                )
            )
        pending.clear()

    paths = [Path(p) for p in paths]
    bar = tqdm(total=len(paths), desc="predict", unit="img", disable=not progress)
    try:
        for path in paths:
            try:
                inp = read_input_image(path)
                sp, src = (
                    (inp.spacing, inp.spacing_source)
                    if inp.spacing is not None
                    else ((fallback, "given") if fallback is not None else (None, None))
                )
                try:
                    img, m = preprocess_image(inp.image, spec, sp)
                except CephaloError as e:
                    raise DataError(f"preprocessing failed: {e}", path) from None
                if img.shape != (H, W):
                    raise ConfigError(
                        f"the preprocessing spec gives {img.shape[1]}x{img.shape[0]} images but the model "
                        f"expects {W}x{H} (meta.input_size)"
                    )
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

#: ``predictions.csv``: one row per image x landmark. ``x_px``/``y_px``: original pixels (origin at the
#: centre of the top-left pixel); ``x_mm``/``y_mm``: the same times the pixel spacing (empty without one);
#: ``radius_mm`` and its per-axis pixel size ``radius_x_px``/``radius_y_px`` at the review coverage (empty
#: without calibration or spacing); ``image_flagged``/``image_flags``: the image's review flags.
CSV_COLUMNS = [
    "image_id",
    "file",
    "landmark_index",
    "landmark_name",
    "landmark_symbol",
    "x_px",
    "y_px",
    "x_mm",
    "y_mm",
    "confidence",
    "radius_mm",
    "radius_x_px",
    "radius_y_px",
    "in_image",
    "flagged",
    "flags",
    "image_flagged",
    "image_flags",
]
#: ``images.csv``: one row per image
IMAGE_COLUMNS = [
    "image_id",
    "file",
    "width",
    "height",
    "spacing_x_mm",
    "spacing_y_mm",
    "spacing_source",
    "bit_depth",
    "bit_depth_note",
    "n_landmarks",
    "n_landmarks_flagged",
    "flagged",
    "flags",
    "structure",
    "noise",
    "shape_residual",
    "measurements_reliable",
    "overlay",
]
#: ``measurements.csv``: one row per image x measurement. ``status`` is read against ``normal_lo..hi``
#: of ``norm_reference``; ``class`` is the ``class_reference`` (ISBI 2015) class. Both are empty when
#: ``reliable`` is false (``unreliable_because`` says why: image flags, landmarks not found);
#: ``status_settled``/``class_settled`` are false when ``value +/- half_width`` crosses a band edge.
MEASUREMENT_COLUMNS = [
    "image_id",
    "measurement",
    "value",
    "half_width",
    "unit",
    "normal_lo",
    "normal_hi",
    "norm_reference",
    "status",
    "status_settled",
    "class",
    "class_name",
    "class_reference",
    "class_settled",
    "reliable",
    "unreliable_because",
    "image_flagged",
    "image_flags",
]
_DECIMALS = {
    "x_px": 2,
    "y_px": 2,
    "x_mm": 3,
    "y_mm": 3,
    "confidence": 4,
    "radius_mm": 2,
    "radius_x_px": 1,
    "radius_y_px": 1,
    "spacing_x_mm": 5,
    "spacing_y_mm": 5,
    "structure": 3,
    "noise": 4,
    "shape_residual": 4,
    "value": 3,
    "half_width": 3,
}
#: columns written as text (quoted in the CSV: ``image_id`` "001" stays "001" for readers that honour quotes;
#: with pandas read ``dtype={"image_id": str}``)
TEXT_COLUMNS = ("image_id", "file")


def _tidy(df):
    """Round per column (:data:`_DECIMALS`), write booleans as ``true``/``false``, ids as text."""
    for c in df.columns:
        if df[c].dtype == bool:
            df[c] = df[c].map({True: "true", False: "false"})
        elif c in _DECIMALS:
            df[c] = df[c].astype(float).round(_DECIMALS[c])
        elif c in TEXT_COLUMNS:
            df[c] = df[c].astype(str)
    return df


def write_csv(df, path: str | Path) -> None:
    """Write a table atomically with text columns quoted (``csv.QUOTE_NONNUMERIC``) and NaN as empty."""
    import csv

    from .io import atomic_path

    with atomic_path(Path(path)) as tmp:
        df.to_csv(tmp, index=False, quoting=csv.QUOTE_NONNUMERIC)


def _image_flags(p: ImagePrediction) -> list[str]:
    return list((p.extra.get("review") or {}).get("image", []))


def predictions_table(preds: Sequence[ImagePrediction]):
    """Long table (pandas DataFrame), one row per image x landmark, columns :data:`CSV_COLUMNS`.

    ``x_px``, ``y_px``: original-image pixels (origin at the centre of the top-left pixel); ``x_mm``,
    ``y_mm``: times the image's spacing (NaN without); ``radius_mm``: the calibrated prediction radius
    (NaN without calibration or spacing), ``radius_x_px``/``radius_y_px`` the same in pixels per axis;
    ``flags``: the landmark's review flags joined by ``;`` (:mod:`cephalo.flags`); ``image_flags``: the
    image's."""
    import pandas as pd

    rows = []
    for p in preds:
        inside = p.in_image()
        mm = p.coords_mm
        r = p.landmark_extra.get("radius_mm")
        fl = p.landmark_extra.get("flags")
        img_fl = _image_flags(p)
        for k, name in enumerate(p.landmark_names):
            f = list(fl[k]) if fl is not None else []
            rk = np.nan if r is None or r[k] is None else float(r[k])
            rx, ry = (np.nan, np.nan) if p.spacing is None else (rk / p.spacing[0], rk / p.spacing[1])
            rows.append(
                (
                    p.image_id,
                    str(p.path),
                    k,
                    name,
                    p.symbols[k],
                    p.coords[k, 0],
                    p.coords[k, 1],
                    np.nan if mm is None else mm[k, 0],
                    np.nan if mm is None else mm[k, 1],
                    p.confidence[k],
                    rk,
                    rx,
                    ry,
                    bool(inside[k]),
                    bool(f),
                    ";".join(f),
                    bool(img_fl),
                    ";".join(img_fl),
                )
            )
    return _tidy(pd.DataFrame(rows, columns=CSV_COLUMNS))


def images_table(preds: Sequence[ImagePrediction]):
    """One row per image, columns :data:`IMAGE_COLUMNS` (spacing and its source, bit depth, review flags,
    ``measurements_reliable``: false when the image's flags gate its measurements)."""
    import pandas as pd

    from .flags import GEOMETRY_FLAGS

    rows = []
    for p in preds:
        rev = p.extra.get("review") or {}
        vals = rev.get("values") or {}
        sx, sy = p.spacing if p.spacing is not None else (np.nan, np.nan)
        fl = list(rev.get("image", []))
        rows.append(
            (
                p.image_id,
                str(p.path),
                p.width,
                p.height,
                sx,
                sy,
                p.spacing_source or "",
                int(p.bit_depth),
                p.bit_depth_note or "",
                len(p.landmark_names),
                int(rev.get("n_landmarks_flagged", 0)),
                bool(fl),
                ";".join(fl),
                np.nan if vals.get("structure") is None else vals["structure"],
                np.nan if vals.get("noise") is None else vals["noise"],
                np.nan if vals.get("shape_residual") is None else vals["shape_residual"],
                not any(f in GEOMETRY_FLAGS for f in fl),
                p.extra.get("overlay", ""),
            )
        )
    return _tidy(pd.DataFrame(rows, columns=IMAGE_COLUMNS))


def measurements_table(preds: Sequence[ImagePrediction]):
    """One row per image x measurement, columns :data:`MEASUREMENT_COLUMNS`."""
    import pandas as pd

    rows = []
    for p in preds:
        img_fl = _image_flags(p)
        for k, m in (p.extra.get("measurements") or {}).items():
            rows.append(
                (
                    p.image_id,
                    k,
                    m["value"],
                    m["half_width"],
                    m["unit"],
                    m["normal"][0],
                    m["normal"][1],
                    m.get("norm_reference") or "",
                    m["status"] or "",
                    bool(m["status"]) and len(m.get("interval_statuses") or []) <= 1,
                    m["class"],
                    m["class_name"] or "",
                    m.get("class_reference") or "",
                    bool(m["class"]) and len(m.get("interval_classes") or []) <= 1,
                    bool(m.get("reliable", True)),
                    "; ".join(m.get("unreliable_because") or []),
                    bool(img_fl),
                    ";".join(img_fl),
                )
            )
    df = pd.DataFrame(rows, columns=MEASUREMENT_COLUMNS)
    df["class"] = df["class"].astype("Int64")
    return _tidy(df)


def write_predictions(
    preds: Sequence[ImagePrediction],
    out_dir: str | Path,
    *,
    overlays: bool = True,
    info: Mapping[str, Any] | None = None,
    skipped: Sequence[Mapping[str, str]] = (),
    progress: bool = True,
    calibration: Mapping | None = None,
    review_cfg: Any = None,
    report: bool = True,
    labelme_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Assess each prediction and write the run's outputs in ``out_dir``.

    Per image (:func:`cephalo.assess.assess`): calibrated radii (when ``calibration`` is given),
    review flags, cephalometric measurements. Files (each atomic; ``overlays/`` replaced whole;
    ``predictions.json``, listing the run, written last):

    * ``predictions.json``: ``info``, ``coordinate_frame``, ``images`` (landmarks with radius and
      flags, ``review``, ``measurements``), ``skipped``, ``flags`` summary;
    * ``predictions.csv`` (:data:`CSV_COLUMNS`), ``images.csv`` (:data:`IMAGE_COLUMNS`),
      ``measurements.csv`` (:data:`MEASUREMENT_COLUMNS`);
    * ``overlays/<image_id>.png`` (:func:`cephalo.evaluate.plots.prediction_overlay`);
    * ``report.html`` (:func:`cephalo.report_html.write_report`, self-contained);
    * with ``labelme_dir``: ``<labelme_dir>/<image_id>.json`` per image
      (:func:`cephalo.datasets.labelme.adapter.write_labelme`), to correct in LabelMe and index back with the
      ``labelme`` adapter.

    Returns:
        paths ``{"json", "csv", "images_csv", "measurements_csv", "overlays", "report", "labelme"}``
        (those written) and ``"flags"``: ``{"images": n flagged, "landmarks": n flagged, "by_flag": {...}}``.

    Raises:
        DataError: an image can no longer be read.
    """
    from collections import Counter

    from tqdm import tqdm

    from .assess import assess, shape_model_of
    from .flags import GEOMETRY_FLAGS, ReviewConfig
    from .io import atomic_dir, write_json

    cfg = review_cfg if review_cfg is not None else ReviewConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Any] = {}
    sm = shape_model_of(calibration)
    overlay_files: dict[str, Path] = {}
    by_flag: Counter = Counter()

    radius_note = (
        ""
        if not calibration
        else ("per landmark" if calibration.get("pooling") == "landmark" else "over all landmarks, not each")
    )

    def run(tmp_overlays: Path | None) -> None:
        from .evaluate.plots import OverlayRadii, prediction_overlay

        for p in tqdm(preds, desc="assess", unit="img", disable=not progress):
            img = read_input_image(p.path).image
            a = assess(p, img, calibration, cfg, sm)
            rev = a["review"]
            p.landmark_extra = {
                "radius_mm": None if a["radius_mm"] is None else list(a["radius_mm"]),
                "flags": rev["landmarks"],
            }
            p.extra.update(
                review={**rev, "landmarks": None}, measurements=a["measurements"], radius_coverage=a["coverage"]
            )
            p.extra["review"].pop("landmarks")
            by_flag.update(rev["image"])
            by_flag.update(f for fl in rev["landmarks"] for f in fl)
            if tmp_overlays is not None:
                flagged = [bool(f) for f in rev["landmarks"]]
                n_ok = int((~p.degenerate).sum())
                title = (
                    f"{p.path.name}: {n_ok}/{len(p.landmark_names)} landmarks"
                    + (f", {sum(flagged)} flagged" if any(flagged) else "")
                    + (f"; image flags: {', '.join(rev['image'])}" if rev["image"] else "")
                )
                notes = []
                gated = [f for f in rev["image"] if f in GEOMETRY_FLAGS]
                if gated:
                    notes.append(f"MEASUREMENTS NOT RELIABLE: image flagged ({', '.join(gated)})")
                if p.spacing is None:
                    notes.append("no pixel spacing: positions in px only, no prediction radius drawn")
                if p.bit_depth_note:
                    notes.append(p.bit_depth_note)
                prediction_overlay(
                    img,
                    p.coords,
                    tmp_overlays / f"{p.image_id}.png",
                    labels=p.symbols,
                    radii=OverlayRadii(px=a["radius_px"], coverage=a["coverage"], note=radius_note),
                    flagged=flagged,
                    title=title,
                    notes=notes,
                )
                p.extra["overlay"] = f"overlays/{p.image_id}.png"
                overlay_files[p.image_id] = out_dir / "overlays" / f"{p.image_id}.png"

    if overlays:
        with atomic_dir(out_dir / "overlays") as tmp:
            run(tmp)
        paths["overlays"] = out_dir / "overlays"
    else:
        run(None)
    for name, key, table in (
        ("predictions.csv", "csv", predictions_table),
        ("images.csv", "images_csv", images_table),
        ("measurements.csv", "measurements_csv", measurements_table),
    ):
        write_csv(table(preds), out_dir / name)
        paths[key] = out_dir / name
    if labelme_dir is not None:
        from .datasets.labelme.adapter import write_labelme

        ldir = Path(labelme_dir)
        ldir.mkdir(parents=True, exist_ok=True)
        for p in preds:
            write_labelme(ldir / f"{p.image_id}.json", p.path, list(p.landmark_names), p.coords, p.width, p.height)
        paths["labelme"] = ldir
    records = [p.to_dict() for p in preds]
    n_img = sum(1 for p in preds if p.extra["review"]["image"])
    n_lm = sum(int(p.extra["review"]["n_landmarks_flagged"]) for p in preds)
    flags_summary = {"images": n_img, "landmarks": n_lm, "by_flag": dict(sorted(by_flag.items()))}
    run_info = {
        **dict(info or {}),
        "review": dict(cfg.__dict__),
        "calibration": None
        if not calibration
        else {
            k: calibration.get(k)
            for k in (
                "method",
                "scale",
                "pooling",
                "split",
                "n_images",
                "variant",
                "coverages",
                "difficulty_split",
                "difficulty_n_images",
                "loo_coverage",
                "loo_coverage_per_landmark",
                "landmarks",
                "guarantee",
            )
        },
    }
    if calibration:
        from .uncertainty import guarantee_text

        run_info["calibration"]["guarantee"] = (
            "per_landmark" if calibration.get("pooling") == "landmark" else "marginal"
        )
        run_info["calibration"]["guarantee_text"] = guarantee_text(calibration.get("pooling", "landmark"))
    if report:
        from .report_html import write_report

        paths["report"] = write_report(out_dir / "report.html", records, run_info, overlay_files, skipped)
    doc = {
        "format": "cephalo-predictions",
        "format_version": 2,
        "coordinate_frame": "original image pixels, xy, origin at the centre of the top-left pixel, x right, "
        "y down; x_mm/y_mm = x/y times the pixel spacing (mm from that origin)",
        **run_info,
        "n_images": len(records),
        "flags": flags_summary,
        "images": records,
        "skipped": [dict(s) for s in skipped],
    }
    json.dumps(doc, allow_nan=False, default=str)  # fail before writing if anything is not strict JSON
    write_json(out_dir / "predictions.json", doc)
    paths["json"] = out_dir / "predictions.json"
    paths["flags"] = flags_summary
    return paths
