"""The refiner at inference: windows around coarse landmarks -> refined positions in original px.

:func:`refine_predictions` is the one place a refiner is applied (``cephalo evaluate`` and
``cephalo predict`` call it through the bundle, :mod:`cephalo.refine.bundle`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import geometry as G
from ..errors import CheckpointError
from .config import TTAConfig
from .crops import apply_gamma, cut_windows, image_spacing, resample_to_spacing

__all__ = ["Refiner", "load_refiner", "refine_predictions", "RefineResult"]


@dataclass
class Refiner:
    """A loaded refiner: network (eval mode), its ``ModelMeta``, codec and window settings.

    Attributes:
        model: ``(B, 3, window, window) -> (B, K, window/4, window/4)`` heatmaps.
        meta: ``cephalo.models.ModelMeta``; ``meta.variant["refine"]`` holds the window spec.
        codec: ``cephalo.codecs`` codec (input = window px).
        spacing_mm: window resolution, mm/px.
        window: window side, px.
        fallback_spacing_mm: for images without a pixel spacing (None = error).
        path: the checkpoint file.
    """

    model: Any
    meta: Any
    codec: Any
    spacing_mm: float
    window: int
    fallback_spacing_mm: float | None
    path: Path | None = None

    @property
    def landmark_names(self) -> list[str]:
        return list(self.meta.landmark_names)


def load_refiner(path: str | Path, device: str = "cpu") -> Refiner:
    """Load a refiner checkpoint written by ``cephalo train-refiner``.

    Raises:
        CheckpointError: unreadable file, or a checkpoint that is not a refiner (no window spec).
    """
    from ..codecs import create_codec
    from ..models import load_model

    model, meta = load_model(path, device)
    spec = meta.variant.get("refine") if isinstance(meta.variant, dict) else None
    if not isinstance(spec, dict) or "spacing_mm" not in spec or "window" not in spec:
        raise CheckpointError("not a refiner checkpoint (its meta.variant has no 'refine' window spec)", path)
    codec = create_codec(**meta.codec)
    return Refiner(model=model, meta=meta, codec=codec, spacing_mm=float(spec["spacing_mm"]),
                   window=int(spec["window"][0]), fallback_spacing_mm=spec.get("fallback_spacing_mm"),
                   path=Path(path))


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


def refine_predictions(refiner: Refiner, image: np.ndarray, coarse: np.ndarray, names: Sequence[str],
                       spacing_xy: Sequence[float] | None, *, tta: TTAConfig | None = None, iterations: int = 1,
                       batch_size: int = 64, device: str = "cpu") -> RefineResult:
    """Refine the coarse landmarks of one image with windows cut from the original image.

    For each landmark ``k`` the refiner knows (by canonical name) and each test-time pass
    ``(scale s, shift, gamma)`` of ``tta``: resample the original image to ``s * spacing_mm``
    mm/px (the image's own spacing per axis), cut a ``window`` px window centred at the coarse
    position (+ shift in window px), apply the gamma, predict, decode channel ``k`` with the
    codec, and map the position back through ``geometry.invert`` of the window's affine. The
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
        device: torch device string.

    Returns:
        :class:`RefineResult`.

    Raises:
        DataError: no pixel spacing and no fallback.
    """
    import torch

    from ..preprocess import normalise

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
    dev = torch.device(device)
    model = refiner.model.to(dev).eval()
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
        coords, cfs, deg = [], [], []
        with torch.no_grad():
            for b in range(0, len(wins_a), batch_size):
                x = normalise(torch.from_numpy(np.ascontiguousarray(wins_a[b:b + batch_size])).to(dev),
                              refiner.meta.normalisation)
                hm = model(x).float()
                idx = torch.as_tensor(chan_a[b:b + batch_size], device=hm.device)
                sel = hm[torch.arange(len(idx), device=hm.device), idx][:, None]  # (B, 1, h, w)
                dec = refiner.codec.decode(sel.cpu().numpy())
                coords.append(np.asarray(dec.coords, np.float64)[:, 0])
                cfs.append(np.asarray(dec.confidence, np.float64)[:, 0])
                deg.append(np.asarray(dec.degenerate, bool)[:, 0])
        c_win = np.concatenate(coords)
        cf = np.concatenate(cfs)
        dg = np.concatenate(deg) | ~np.isfinite(c_win).all(axis=1)
        inv = np.stack([G.invert(a) for a in affs_a])
        c_orig = G.apply_affine(inv, c_win[:, None, :])[:, 0]
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
