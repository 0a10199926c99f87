"""The refiner at inference: windows around coarse landmarks -> refined positions in original px.

:func:`refine_predictions` is the one place a refiner is applied (``cephalo evaluate`` and
``cephalo predict`` call it through the bundle, :mod:`cephalo.refine.bundle`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import geometry as G
from ..config.schema import TTAConfig
from ..errors import CheckpointError, DataError
from ..imageio import read_image
from ..inference import Predictions, Predictor
from ..models import load_model
from .crops import apply_gamma, cut_windows, image_spacing, resample_to_spacing

__all__ = ["RefineResult", "Refiner", "load_refiner", "refine_predictions"]


@dataclass
class Refiner:
    """A loaded refiner: network (eval mode), its ``ModelMeta``, codec and window settings.

    Attributes:
        predictor: ``cephalo.inference.Predictor`` of the network (device, normalisation, codec,
            way back to original px: the one inference path of cephalo).
        meta: ``cephalo.models.ModelMeta``; ``meta.variant["refine"]`` holds the window spec.
        spacing_mm: window resolution, mm/px.
        window: window side, px.
        fallback_spacing_mm: for images without a pixel spacing (None = error).
        path: the checkpoint file.
    """

    predictor: Any
    meta: Any
    spacing_mm: float
    window: int
    fallback_spacing_mm: float | None
    path: Path | None = None

    @property
    def landmark_names(self) -> list[str]:
        return list(self.meta.landmark_names)


def load_refiner(path: str | Path, device: Any = "cpu") -> Refiner:
    """Load a refiner checkpoint written by ``cephalo train-refiner``.

    Args:
        device: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` or a ``torch.device`` (``cephalo.inference.resolve_device``).

    Raises:
        CheckpointError: unreadable file, or a checkpoint that is not a refiner (no window spec).
        ConfigError: an unusable device.
    """
    model, meta = load_model(path, "cpu")
    spec = meta.variant.get("refine") if isinstance(meta.variant, dict) else None
    if not isinstance(spec, dict) or "spacing_mm" not in spec or "window" not in spec:
        raise CheckpointError("not a refiner checkpoint (its meta.variant has no 'refine' window spec)", path)
    predictor = Predictor.from_meta(model, meta, device=device, device_key="refiner device")
    return Refiner(
        predictor=predictor,
        meta=meta,
        spacing_mm=float(spec["spacing_mm"]),
        window=int(spec["window"][0]),
        fallback_spacing_mm=spec.get("fallback_spacing_mm"),
        path=Path(path),
    )


@dataclass
class RefineResult:
    """Refined landmarks of one image.

    Attributes:
        coords: ``(K, 2)`` float64 original px (the coarse position where not refined).
        refined: ``(K,)`` bool, True where the refiner gave the position.
        confidence: ``(K,)`` float64 mean decoder confidence over the passes (NaN where not refined).
        spread_px: ``(K,)`` float64 s.d. of the test-time-augmentation passes (original px; 0 with one pass).
    """

    coords: np.ndarray
    refined: np.ndarray
    confidence: np.ndarray
    spread_px: np.ndarray


def refine_predictions(
    refiner: Refiner,
    image: np.ndarray,
    coarse: np.ndarray,
    names: Sequence[str],
    spacing_xy: Sequence[float] | None,
    *,
    tta: TTAConfig | None = None,
    iterations: int = 1,
    batch_size: int = 64,
) -> RefineResult:
    """Refine the coarse landmarks of one image with windows cut from the original image.

    For each landmark ``k`` the refiner knows (by canonical name) and each test-time pass
    ``(scale s, shift, gamma)`` of ``tta``: resample the original image to ``s * spacing_mm``
    mm/px (the image's own spacing per axis), cut a ``window`` px window centred at the coarse
    position (+ shift in window px), apply the gamma, and predict with the refiner's
    ``cephalo.inference.Predictor`` (codec decoding, back to original px through the inverse of
    the window's affine); the position of landmark ``k`` is read on channel ``k``. The
    positions of all passes are averaged (mean, original px). ``iterations > 1`` re-centres the
    windows on the refined positions and repeats. A landmark whose every pass is degenerate (flat
    heatmap), or that the refiner does not know, keeps its coarse position.

    Args:
        refiner: from :func:`load_refiner`.
        image: ``(H, W)`` uint8/uint16 ORIGINAL image.
        coarse: ``(K, 2)`` float xy original px (NaN = not predicted; stays NaN).
        names: K canonical landmark names of ``coarse``.
        spacing_xy: ``(x, y)`` mm/px of ``image`` (None/NaN: ``refiner.fallback_spacing_mm``).
        tta: test-time augmentation (default: one plain pass).
        iterations: refinement rounds.
        batch_size: windows per forward pass.

    Returns:
        :class:`RefineResult`.

    Raises:
        DataError: no pixel spacing and no fallback.
    """
    tta = tta or TTAConfig()
    coarse = np.asarray(coarse, dtype=np.float64)
    pos = {n: i for i, n in enumerate(refiner.landmark_names)}
    ks = [k for k, n in enumerate(names) if n in pos and np.isfinite(coarse[k]).all()]
    chans = np.array([pos[names[k]] for k in ks], dtype=np.int64)
    out = coarse.copy()
    refined = np.zeros(len(coarse), bool)
    conf = np.full(len(coarse), np.nan)
    spread = np.zeros(len(coarse))
    if not ks:
        return RefineResult(out, refined, conf, spread)
    sp = image_spacing(spacing_xy, refiner.fallback_spacing_mm)
    settings = tta.settings()
    resampled = {s: resample_to_spacing(image, sp, refiner.spacing_mm * s) for s in {t[0] for t in settings}}
    win = refiner.window
    centre = out[ks].copy()
    for _ in range(int(iterations)):
        wins, affs, chan, who = [], [], [], []
        for s, dx, dy, g in settings:
            res, m_res = resampled[s]
            # a shift of d window px moves the window centre by d window px in the resampled frame
            inv_lin = G.invert(m_res)[:, :2]
            shift_orig = (inv_lin @ np.array([dx, dy]))[None, :]
            w, a = cut_windows(res, m_res, centre + shift_orig, win)
            wins.append(apply_gamma(w, g))
            affs.append(a)
            chan.append(chans)
            who.append(np.arange(len(ks)))
        wins_a, affs_a = np.concatenate(wins), np.concatenate(affs)
        chan_a, who_a = np.concatenate(chan), np.concatenate(who)
        size = np.tile([image.shape[1], image.shape[0]], (len(wins_a), 1))
        parts = [
            refiner.predictor.predict(
                list(wins_a[b : b + batch_size]), affs_a[b : b + batch_size], size[b : b + batch_size]
            )
            for b in range(0, len(wins_a), batch_size)
        ]
        p = Predictions.concatenate(parts)
        sel = np.arange(len(wins_a))
        c_orig = p.coords[sel, chan_a]  # channel k of the window cut for landmark k, original px
        cf = p.confidence[sel, chan_a]
        dg = p.degenerate[sel, chan_a] | ~np.isfinite(c_orig).all(axis=1)
        new = centre.copy()
        for j in range(len(ks)):
            m = (who_a == j) & ~dg
            if m.any():
                new[j] = c_orig[m].mean(axis=0)
                conf[ks[j]] = float(cf[m].mean())
                spread[ks[j]] = float(np.sqrt(((c_orig[m] - new[j]) ** 2).sum(axis=1).mean()))
                refined[ks[j]] = True
        centre = new
    out[ks] = centre
    return RefineResult(out, refined, conf, spread)


def image_refiner(
    refiner: Refiner, names: Sequence[str], *, tta: TTAConfig | None = None, iterations: int = 1, batch_size: int = 64
):
    """A callable ``(image (H, W) original, coarse (K, 2) original px, spacing (2,) or None) -> (K, 2)``.

    ``names`` are the K canonical names of ``coarse`` (the global model's channels). Used by
    ``cephalo predict`` (one image at a time) and by :func:`variant_refiner`.
    """

    def run(image: np.ndarray, coarse: np.ndarray, spacing_xy) -> np.ndarray:
        return refine_predictions(
            refiner, image, coarse, names, spacing_xy, tta=tta, iterations=iterations, batch_size=batch_size
        ).coords

    return run


def original_image_paths(variant: Any, rows: Sequence[int]) -> list[Path]:
    """The original image file of each of ``rows`` of a preprocessing variant.

    ``variant.parquet``'s ``image_path`` is absolute, or relative to the source index's folder
    (``variant.json`` ``source_index.path``).

    Raises:
        DataError: a file that is not there (refinement reads the original pixels).
    """
    table = getattr(variant, "table", None)
    if table is None or "image_path" not in table:
        raise DataError(
            "the variant records no original image paths; refinement needs the originals",
            getattr(variant, "path", None),
        )
    src = Path(str(((getattr(variant, "meta", {}) or {}).get("source_index") or {}).get("path", "")))
    out = []
    for r in rows:
        p = Path(str(table["image_path"].iloc[int(r)]))
        if not p.is_absolute() and src.name:
            p = src.parent / p
        if not p.is_file():
            raise DataError("original image not found (refinement reads the original pixels)", p)
        out.append(p)
    return out


def variant_refiner(refine_image, variant: Any, progress: bool = False):
    """A callable ``(coords (R, K, 2) original px, rows) -> (R, K, 2)`` refining predictions on a variant.

    ``refine_image`` is from :func:`image_refiner`; the original images are read from
    :func:`original_image_paths` with ``cephalo.imageio.read_image`` (what ``cephalo index`` read).
    """
    from tqdm.auto import tqdm

    def run(coords: np.ndarray, rows: Sequence[int]) -> np.ndarray:
        coords = np.asarray(coords, dtype=np.float64)
        paths = original_image_paths(variant, rows)
        out = coords.copy()
        for j, (r, p) in enumerate(tqdm(list(zip(rows, paths, strict=True)), desc="refine", disable=not progress)):
            out[j] = refine_image(read_image(p), coords[j], np.asarray(variant.spacing, dtype=np.float64)[int(r)])
        return out

    return run
