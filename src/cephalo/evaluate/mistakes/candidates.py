"""The compositions of coordinate mistakes worth confirming for one group of images.

Steps 1-2 of the search (:mod:`cephalo.evaluate.mistakes.search` confirms and chooses):

1. the axis order and mirror from the signs of per-image least-squares slopes of the file's
   coordinates against the ground truth (both axis orders are tried);
2. each frame x unit composition's size (letterbox / heatmap input ``S``, stretch ``Sw x Sh``) or
   constant (spacing, scale) fitted from the magnitudes of those slopes and scored roughly, then
   the best ones refined over nearby sizes and every convention (pad side, pixel centre vs corner,
   ``int`` vs ``round`` of the scaled size, integer vs half pads, integer heatmap cells) on the
   *fit* half of the group's images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .stats import not_worse
from .transforms import FRAMES, HEATMAP_STRIDE, Frame, Structure, complexity, frame_coefficients, undo

__all__ = ["GroupData", "candidates", "slopes", "letterbox_spacings", "prefer", "COMMON_INPUT_SIZES", "COMMON_SPACINGS"]

#: input sizes public landmark models use (tried beside the sizes fitted from the data)
COMMON_INPUT_SIZES = (128, 192, 224, 256, 288, 320, 384, 416, 448, 512, 576, 640, 768, 800, 1024, 1280)
#: pixel spacings (mm/px) a pipeline may have typed for every image
COMMON_SPACINGS = (0.1, 0.125, 0.127, 0.13, 0.15, 0.2)
_SPACING_RANGE = (0.03, 0.5)  # a constant "spacing" outside this is no spacing: a global scale
_SCALE_RANGE = (0.5, 2.0)


@dataclass
class GroupData:
    """One group's data as the search reads it (n images, K landmarks)."""

    pred: dict  # catalogue key -> (n, K, 2) file coordinates
    gt: np.ndarray
    sp: np.ndarray
    wh: np.ndarray
    fit: np.ndarray  # (n, K) bool
    conf: np.ndarray
    integral: bool  # every file value an integer (heatmap cells)


def _mse(s: Structure, d: GroupData, mask: np.ndarray) -> float:
    u = undo(s, d.pred[s.catalogue], d.wh, d.sp)
    sq = (((u - d.gt) * d.sp[:, None, :]) ** 2).sum(-1)
    v = sq[mask & np.isfinite(sq)]
    return float(v.mean()) if v.size else float("inf")


def slopes(p: np.ndarray, g: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(n, 2) least-squares slope (with intercept) of file coordinates on GT, per image and axis."""
    out = np.full((p.shape[0], 2), np.nan)
    for i in range(p.shape[0]):
        m = mask[i] & np.isfinite(p[i]).all(-1)
        if m.sum() < 3:
            continue
        for a in range(2):
            gc = g[i, m, a] - g[i, m, a].mean()
            den = (gc**2).sum()
            if den > 0:
                out[i, a] = (gc * (p[i, m, a] - p[i, m, a].mean())).sum() / den
    return out


def _typed(v: float) -> list[float]:
    """``v`` rounded to 1-2 significant digits, or a common spacing within 1 % (a value someone typed)."""
    if not np.isfinite(v) or v <= 0:
        return []
    return sorted({float(f"{v:.{k}g}") for k in (1, 2)} | {c for c in COMMON_SPACINGS if abs(c / v - 1) < 0.01})


def _unit_factor(unit: str, c: float, sp: np.ndarray) -> np.ndarray | None:
    """(n, 2) multiplicative factor of the unit (None: normalised, which hides the frame size)."""
    return {
        "px": np.ones_like(sp),
        "mm": sp,
        "const": np.full_like(sp, c),
        "scale": np.full_like(sp, c),
        "px_as_mm": 1.0 / sp,
        "const_mm": c / sp,
    }.get(unit)


def _constants(unit: str, frame: str, r: np.ndarray, sp: np.ndarray, wh: np.ndarray) -> list[float]:
    """Candidate constants of a 'const' / 'const_mm' / 'scale' unit (``[1.0]`` for the others)."""
    if unit not in ("const", "const_mm", "scale"):
        return [1.0]
    if frame:  # c x S is one number: only mm made with one spacing and read back with varying ones tell c
        return list(COMMON_SPACINGS) if unit == "const_mm" and np.ptp(sp[:, 0]) > 1e-9 else []
    base = np.ones_like(sp) if unit != "const_mm" else 1.0 / sp
    est = float(np.nanmedian(r / base))
    lo, hi = _SPACING_RANGE if unit != "scale" else _SCALE_RANGE
    out = [c for c in _typed(est) if lo <= c <= hi]
    if unit == "const":  # exact mm of a top-left letterbox input (one image size and spacing: a pure scale)
        same = [c for c in letterbox_spacings(sp, wh) if lo <= c <= hi and abs(c / est - 1) < 0.01]
        return same + [c for c in out if all(abs(c / v - 1) >= 0.01 for v in same)]
    return [c for c in out if unit != "scale" or abs(c - 1) > 0.004]


def letterbox_spacings(sp: np.ndarray, wh: np.ndarray) -> list[float]:
    """``spacing x S / longest side`` for the common input sizes ``S``, where every image of the group
    has one size and one spacing (else ``[]``): mm of a top-left ``x * scale`` letterbox input are
    then millimetres made with that one constant spacing, to the last digit."""
    if len(wh) == 0 or np.ptp(wh, axis=0).max() > 0 or np.ptp(sp, axis=0).max() > 1e-12 or sp[0, 0] != sp[0, 1]:
        return []
    return [float(sp[0, 0] * s / max(wh[0])) for s in COMMON_INPUT_SIZES]


def _size_estimate(frame: str, r: np.ndarray, u: np.ndarray | None, wh: np.ndarray) -> tuple[float, float]:
    if u is None:  # normalised: the slope is 1 / longest side whatever S is
        return float("nan"), float("nan")
    q = r / u
    if frame == "stretch":
        return float(np.nanmedian(q[:, 0] * wh[:, 0])), float(np.nanmedian(q[:, 1] * wh[:, 1]))
    s = float(np.nanmedian(q * wh.max(axis=1, keepdims=True)))
    s = s * HEATMAP_STRIDE if frame == "heatmap" else s
    return s, s


def _sizes(est: float, frame: str) -> list[int]:
    """Candidate input sizes near ``est`` (all near ones, multiples of 4 for a heatmap input)."""
    if not np.isfinite(est):  # normalised coordinates: only the half-pixel terms tell the size
        return [256, 512, 768, 1024]
    if est < 128 or est > (2048 if frame == "heatmap" else 4096):
        return []  # no network takes a smaller input
    step = 16 if frame == "heatmap" else 1  # a heatmap input is a multiple of 16 (stride 4, HRNet-style)
    base = int(round(est / step)) * step
    out = {base + k * step for k in range(-3, 4)}
    out |= {s for s in range(base - int(0.02 * est), base + int(0.02 * est) + 1) if s % 4 == 0}
    out |= {s for s in COMMON_INPUT_SIZES if abs(s - est) <= 0.03 * est and s % step == 0}
    return sorted(s for s in out if s >= 8 and s % step == 0)


def _variants(frame: str, integral: bool) -> list[dict]:
    """Conventions of a frame, the most common first (the first of equally fitting ones is named)."""
    if frame == "stretch":
        return [{"conv": c} for c in ("centre", "corner")]
    if frame == "heatmap":
        return [
            {"pad": p, "conv": c, "rounding": r}
            for r in (("", "floor") if integral else ("",))
            for p in ("centre", "top-left")
            for c in ("centre", "corner")
        ]
    out = [
        {"pad": p, "conv": c, "newsize": n}
        for n in ("int", "round")
        for p in ("centre", "top-left")
        for c in ("centre", "corner")
    ]
    return out + [
        {"pad": "centre", "conv": c, "newsize": n, "padding": "float"}
        for n in ("int", "round")
        for c in ("centre", "corner")
    ]


def prefer(size: int) -> int:
    """Tie-break: an input size a person would choose (multiple of 32, then of 8)."""
    return 0 if size % 32 == 0 else 1 if size % 8 == 0 else 2


def _sq(s: Structure, d: GroupData, axis: int | None = None) -> np.ndarray:
    """Squared errors (mm^2) of the fit half's points (NaN = missing)."""
    u = undo(s, d.pred[s.catalogue], d.wh, d.sp)
    diff = (u - d.gt) * d.sp[:, None, :]
    sq = diff[..., axis] ** 2 if axis is not None else (diff**2).sum(-1)
    return np.where(d.fit, sq, np.nan)


def _means(tried: list) -> list[float]:
    return [float(np.nanmean(e)) if np.isfinite(e).any() else np.inf for _, _, e in tried]


def _pick(tried: list[tuple[tuple, Structure, np.ndarray]], means: list[float] | None = None) -> Structure:
    """The most plausible of the tries not significantly worse than the best (squared errors)."""
    means = _means(tried) if means is None else means
    b = int(np.argmin(means))
    ok = [
        i
        for i in range(len(tried))
        if means[i] <= 1.5 * means[b] + 1e-12 and not_worse(tried[i][2], tried[b][2], 2.0, 0.0)
    ]
    return tried[min(ok or [b], key=lambda i: tried[i][0])][1]


def _refine(s: Structure, d: GroupData, est: tuple[float, float]) -> Structure:
    """Best size and conventions of ``s``'s frame on the fit half (ties: the commonest convention)."""
    kind = s.frame.kind
    tried = []
    if not np.isfinite(est[0]):  # normalised: a square size of the common ones
        for vi, var in enumerate(_variants(kind, d.integral)):
            sub = []
            for v in _sizes(est[0], kind):
                t = s.with_(frame=Frame(kind, (v, v), **var))
                sub.append(((vi, prefer(v), 0), t, _sq(t, d)))
            if kind == "stretch":  # the size shows only in the half-pixel term: fit it, do not default it
                sub = [min(sub, key=lambda x: _means([x])[0])]
            tried += sub
        return _pick(tried)
    for vi, var in enumerate(_variants(kind, d.integral)):
        if kind == "stretch":
            sx = (
                _pick(
                    [
                        (
                            (prefer(v), abs(v - est[0])),
                            s.with_(frame=Frame(kind, (v, max(1, round(est[1]))), **var)),
                            _sq(s.with_(frame=Frame(kind, (v, max(1, round(est[1]))), **var)), d, 0),
                        )
                        for v in _sizes(est[0], kind)
                    ]
                )
                if _sizes(est[0], kind)
                else None
            )
            if sx is None or not _sizes(est[1], kind):
                continue
            sw = sx.frame.size[0]
            sy = _pick(
                [
                    (
                        (prefer(v), abs(v - est[1])),
                        s.with_(frame=Frame(kind, (sw, v), **var)),
                        _sq(s.with_(frame=Frame(kind, (sw, v), **var)), d, 1),
                    )
                    for v in _sizes(est[1], kind)
                ]
            )
            cands = [sy.frame.size]
        else:
            cands = [(v, v) for v in _sizes(est[0], kind)]
        for size in cands:
            t = s.with_(frame=Frame(kind, size, **var))
            tried.append(((vi, prefer(size[0]), abs(size[0] - est[0])), t, _sq(t, d)))
    return _pick(tried) if tried else s


def _refine_square(s: Structure, d: GroupData, est: float) -> Structure:
    """Letterbox / heatmap: conventions at the nearest sizes first, then every size for the 3 best."""
    kind = s.frame.kind
    sizes = _sizes(est, kind)
    if not sizes:
        return s
    near = sorted(sizes, key=lambda v: abs(v - est))[:2] + [v for v in sizes if v % 32 == 0]
    near = list(dict.fromkeys(near))
    first = []
    for vi, var in enumerate(_variants(kind, d.integral)):
        for v in near:
            t = s.with_(frame=Frame(kind, (v, v), **var))
            first.append(((vi, prefer(v), abs(v - est)), t, _sq(t, d)))
    m = _means(first)
    keep = sorted(range(len(first)), key=lambda i: m[i])[:3]
    tried = [first[i] for i in keep]
    for i in keep:
        fr = first[i][1].frame
        for v in sizes:
            if v not in near:
                t = s.with_(frame=Frame(kind, (v, v), fr.pad, fr.conv, fr.newsize, fr.padding, fr.rounding))
                tried.append(((first[i][0][0], prefer(v), abs(v - est)), t, _sq(t, d)))
    return _pick(tried)


def candidates(d: GroupData, units: tuple) -> list[Structure]:
    """Refined compositions worth confirming (a handful per number of mistakes)."""
    rough = []
    for cat, p in d.pred.items():
        for swap in (False, True):
            pp = p[..., ::-1] if swap else p
            k = slopes(pp, d.gt, d.fit)
            if not np.isfinite(k).any():
                continue
            sign = np.nanmedian(k, axis=0)
            mirror = ("x" if sign[0] < 0 else "") + ("y" if sign[1] < 0 else "")
            r = np.abs(k)
            for frame in FRAMES:
                for unit in units:
                    for c in _constants(unit, frame, r, d.sp, d.wh):
                        est = _size_estimate(frame, r, _unit_factor(unit, c, d.sp), d.wh) if frame else (0, 0)
                        s = Structure(swap, mirror, Frame(), unit, c, cat)
                        if frame:
                            sizes = _sizes(est[0], frame)
                            if not sizes:
                                continue
                            for pad in ("centre", "top-left") if frame != "stretch" else ("centre",):
                                size = (round(est[0]), round(est[1])) if np.isfinite(est[0]) else (512, 512)
                                t = s.with_(frame=Frame(frame, size, pad=pad))
                                rough.append((_mse(t, d, d.fit), complexity(t), t, est))
                        else:
                            rough.append((_mse(s, d, d.fit), complexity(s), s, est))
    out = [Structure(catalogue="")]
    floor = min([x[0] for x in rough if np.isfinite(x[0])] or [np.inf])
    for key in sorted({(c, s.frame.kind, s.unit) for _, c, s, _ in rough}):
        best = sorted(
            (x for x in rough if (x[1], x[2].frame.kind, x[2].unit) == key and np.isfinite(x[0])), key=lambda x: x[0]
        )[: 2 if key[1] else 3]
        for m, _, s, est in best:
            if not s.frame.kind:
                out.append(s)
                continue
            if m > 50 * floor + 1.0 or s is not best[0][2]:  # a frame this far off is no explanation
                continue
            t = _refine(s, d, est) if s.frame.kind == "stretch" else _refine_square(s, d, est[0])
            a = np.nanmedian(frame_coefficients(t.frame, d.wh)[0], axis=0)
            if np.any(np.abs(a - 1) > 0.07):  # a frame of about the image's own size is no frame
                out.append(t)
    return out
