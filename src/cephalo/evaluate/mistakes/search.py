"""Search for the simplest composition of coordinate mistakes that explains a group of images.

For one group (all images, or one device / image size / index value) the search

1. reads the axis order and mirror from the signs of per-image least-squares slopes of the file's
   coordinates against the ground truth (both axis orders are tried);
2. fits each frame x unit composition's size (letterbox / heatmap input ``S``, stretch
   ``Sw x Sh``) or constant (spacing, scale) from the magnitudes of those slopes, scores it
   roughly, then refines the best ones over nearby sizes and every convention (pad side, pixel
   centre vs corner, ``int`` vs ``round`` of the scaled size, integer vs half pads, integer
   heatmap cells) on the *fit* half of the group's images;
3. scores the refined compositions on the *confirm* half, and keeps the one with the fewest
   mistakes that is not significantly worse than the best, when it is significantly better than
   the file as given (``mistake_min_gain_mm``, ``mistake_max_fraction``, 3 standard errors);
4. then looks for a residual offset (or isotropic scale + offset) the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .stats import errors_mm, holdout_masks, mean_se_diff, not_worse, significantly_lower
from .transforms import (
    FRAMES,
    HEATMAP_STRIDE,
    UNITS_MM,
    UNITS_PX,
    Frame,
    Structure,
    complexity,
    forward_coefficients,
    frame_coefficients,
    undo,
)

__all__ = ["Explanation", "explain_group", "COMMON_INPUT_SIZES", "COMMON_SPACINGS"]

#: input sizes public landmark models use (tried beside the sizes fitted from the data)
COMMON_INPUT_SIZES = (128, 192, 224, 256, 288, 320, 384, 416, 448, 512, 576, 640, 768, 800, 1024, 1280)
#: pixel spacings (mm/px) a pipeline may have typed for every image
COMMON_SPACINGS = (0.1, 0.125, 0.127, 0.13, 0.15, 0.2)
_SPACING_RANGE = (0.03, 0.5)  # a constant "spacing" outside this is no spacing: a global scale
_SCALE_RANGE = (0.5, 2.0)


@dataclass
class Explanation:
    """The explanation of one group of images.

    Attributes:
        structure: the accepted composition (:class:`Structure`; identity = nothing found).
        residual: ``None``, ``("offset", [dx, dy])`` or ``("scale", [s, dx, dy])``: after undoing
            ``structure``, ``q = s * q' + (dx, dy)`` px.
        rows: (n,) int indices of the group's images in the file's image order.
        undone: (n, K, 2) float64 predictions with everything undone, original px.
        mre_before_mm, mre_after_mm, mre_structure_mm: MRE of the group as given, after all, after
            ``structure`` only (all points).
        alternatives: other compositions of as many mistakes that fit equally well.
        gain_mm, gain_se_mm: MRE gain of the accepted composition on the confirm half, and its SE.
    """

    structure: Structure
    residual: tuple | None
    rows: np.ndarray
    undone: np.ndarray
    mre_before_mm: float
    mre_after_mm: float
    mre_structure_mm: float
    alternatives: list = field(default_factory=list)
    gain_mm: float = 0.0
    gain_se_mm: float = 0.0
    wh_example: tuple | None = None


@dataclass
class _Data:
    pred: dict  # catalogue key -> (n, K, 2) file coordinates
    gt: np.ndarray
    sp: np.ndarray
    wh: np.ndarray
    fit: np.ndarray  # (n, K) bool
    conf: np.ndarray
    integral: bool  # every file value an integer (heatmap cells)


def _mse(s: Structure, d: _Data, mask: np.ndarray) -> float:
    u = undo(s, d.pred[s.catalogue], d.wh, d.sp)
    sq = (((u - d.gt) * d.sp[:, None, :]) ** 2).sum(-1)
    v = sq[mask & np.isfinite(sq)]
    return float(v.mean()) if v.size else float("inf")


def _slopes(p: np.ndarray, g: np.ndarray, mask: np.ndarray) -> np.ndarray:
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
        same = [c for c in _letterbox_spacings(sp, wh) if lo <= c <= hi and abs(c / est - 1) < 0.01]
        return same + [c for c in out if all(abs(c / v - 1) >= 0.01 for v in same)]
    return [c for c in out if unit != "scale" or abs(c - 1) > 0.004]


def _letterbox_spacings(sp: np.ndarray, wh: np.ndarray) -> list[float]:
    """``spacing x S / longest side`` for the common input sizes ``S``, where every image of the group
    has one size and one spacing (else ``[]``): mm of a top-left ``x * scale`` letterbox input are
    then millimetres made with that one constant spacing, to the last digit."""
    if len(wh) == 0 or np.ptp(wh, axis=0).max() > 0 or np.ptp(sp, axis=0).max() > 1e-12 or sp[0, 0] != sp[0, 1]:
        return []
    return [float(sp[0, 0] * s / max(wh[0])) for s in COMMON_INPUT_SIZES]


def _as_letterbox(s: Structure, d: _Data) -> Structure | None:
    """The top-left ``x * scale`` letterbox + mm reading of ``s`` (mm made with one constant spacing),
    where the two are the same numbers on this group (one image size and spacing), else ``None``."""
    if s.unit != "const" or s.frame.kind:
        return None
    for size, c in zip(COMMON_INPUT_SIZES, _letterbox_spacings(d.sp, d.wh), strict=False):
        if abs(c - s.c) <= 1e-12 * c:
            t = s.with_(frame=Frame("letterbox", (size, size), pad="top-left", conv="corner"), unit="mm", c=1.0)
            a0, b0 = forward_coefficients(s, d.wh, d.sp)
            a1, b1 = forward_coefficients(t, d.wh, d.sp)
            if np.allclose(a0, a1, rtol=1e-9, atol=0) and np.allclose(b0, b1, rtol=0, atol=1e-9):
                return t
    return None


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


def _prefer(size: int) -> int:
    """Tie-break: an input size a person would choose (multiple of 32, then of 8)."""
    return 0 if size % 32 == 0 else 1 if size % 8 == 0 else 2


def _sq(s: Structure, d: _Data, axis: int | None = None) -> np.ndarray:
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


def _refine(s: Structure, d: _Data, est: tuple[float, float]) -> Structure:
    """Best size and conventions of ``s``'s frame on the fit half (ties: the commonest convention)."""
    kind = s.frame.kind
    tried = []
    if not np.isfinite(est[0]):  # normalised: a square size of the common ones
        for vi, var in enumerate(_variants(kind, d.integral)):
            sub = []
            for v in _sizes(est[0], kind):
                t = s.with_(frame=Frame(kind, (v, v), **var))
                sub.append(((vi, _prefer(v), 0), t, _sq(t, d)))
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
                            (_prefer(v), abs(v - est[0])),
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
                        (_prefer(v), abs(v - est[1])),
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
            tried.append(((vi, _prefer(size[0]), abs(size[0] - est[0])), t, _sq(t, d)))
    return _pick(tried) if tried else s


def _refine_square(s: Structure, d: _Data, est: float) -> Structure:
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
            first.append(((vi, _prefer(v), abs(v - est)), t, _sq(t, d)))
    m = _means(first)
    keep = sorted(range(len(first)), key=lambda i: m[i])[:3]
    tried = [first[i] for i in keep]
    for i in keep:
        fr = first[i][1].frame
        for v in sizes:
            if v not in near:
                t = s.with_(frame=Frame(kind, (v, v), fr.pad, fr.conv, fr.newsize, fr.padding, fr.rounding))
                tried.append(((first[i][0][0], _prefer(v), abs(v - est)), t, _sq(t, d)))
    return _pick(tried)


def _candidates(d: _Data, units: tuple) -> list[Structure]:
    """Refined compositions worth confirming (a handful per number of mistakes)."""
    rough = []
    for cat, p in d.pred.items():
        for swap in (False, True):
            pp = p[..., ::-1] if swap else p
            k = _slopes(pp, d.gt, d.fit)
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


def _residuals(u: np.ndarray, d: _Data, th: dict) -> list[tuple[tuple, np.ndarray]]:
    """Residual offset and isotropic scale + offset of undone predictions, fitted on the fit half."""
    ok = np.isfinite(u).all(-1) & np.isfinite(d.gt).all(-1) & d.fit
    if ok.sum() < 3:
        return []
    p, q = u[ok], d.gt[ok]
    big = 0.2 * float(np.median(d.wh.max(axis=1)))  # a crop or pad, not a relocation of the head
    t = (q - p).mean(axis=0)
    out = [(("offset", [float(t[0]), float(t[1])]), u + t)] if np.abs(t).max() <= big else []
    pc, gc = p - p.mean(axis=0), q - q.mean(axis=0)
    if (pc**2).sum() > 0:
        a = float((pc * gc).sum() / (pc**2).sum())
        b = q.mean(axis=0) - a * p.mean(axis=0)
        if th["collapse_ratio"] <= a <= 1 / th["collapse_ratio"] and abs(a - 1) > 0.004 and np.abs(b).max() <= big:
            out.append((("scale", [a, float(b[0]), float(b[1])]), a * u + b))
    return out


def explain_group(pred: dict, gt: np.ndarray, spacing: np.ndarray, wh: np.ndarray, units: str, th: dict) -> Explanation:
    """Explain one group of images (see the module docstring).

    Args:
        pred: ``{catalogue key: (n, K, 2) float64}`` the file's coordinates, ``""`` = as read, other
            keys = the file's landmark indices read in that catalogue.
        gt: (n, K, 2) float64 original px; spacing (n, 2) mm/px; wh (n, 2) int (width, height).
        units: ``"px"`` or ``"mm"`` (the file's columns; mm already divided by each image's spacing).
        th: thresholds (``mistake_*``, ``residual_*``, ``collapse_ratio``).

    Returns:
        :class:`Explanation` (identity structure and no residual when nothing is claimed); its
        ``undone`` is (n, K, 2) float64 original px, xy, origin at the centre of the top-left pixel.
        NaN predictions stay NaN; nothing is raised for missing points.
    """
    p0 = pred[""]
    ok = np.isfinite(p0).all(-1) & np.isfinite(gt).all(-1)
    for v in pred.values():
        ok |= np.isfinite(v).all(-1) & np.isfinite(gt).all(-1)
    fit, conf = holdout_masks(ok)
    raw = np.concatenate([v[np.isfinite(v)] for v in pred.values()])
    integral = bool(raw.size and np.mean(np.abs(raw - np.round(raw)) < 1e-6) > 0.95)
    d = _Data(pred, gt, np.asarray(spacing, float), np.asarray(wh, float), fit, conf, integral)
    structs = _candidates(d, UNITS_MM if units == "mm" else UNITS_PX)
    cands = []  # (structure, residual, undone, number of mistakes)
    for st in structs:
        u = undo(st, pred[st.catalogue], d.wh, d.sp)
        cands.append((st, None, u, complexity(st)))
        iso = np.nanmedian(np.abs(_slopes(u, gt, fit)))
        if np.isfinite(iso) and iso >= th["collapse_ratio"]:  # a collapse is not an offset
            cands += [(st, r, v, complexity(st) + (1 if r[0] == "offset" else 2)) for r, v in _residuals(u, d, th)]
    errs = [np.where(conf, errors_mm(c[2], gt, d.sp), np.nan) for c in cands]
    means = [float(np.nanmean(e)) if np.isfinite(e).any() else np.inf for e in errs]
    chosen = _choose(cands, errs, means)
    accept = (
        chosen != 0
        and significantly_lower(errs[chosen], errs[0], 3.0, th["mistake_min_gain_mm"])
        and means[chosen] <= th["mistake_max_fraction"] * means[0]
    )
    if accept and cands[chosen][1] is not None:  # the residual must earn its place beside the structure
        j = next(i for i, c in enumerate(cands) if c[0] == cands[chosen][0] and c[1] is None)
        if means[chosen] > (1 - th["residual_min_fraction"]) * means[j] or not significantly_lower(
            errs[chosen], errs[j], 3.0, th["residual_min_gain_mm"]
        ):
            chosen = j
            accept = (
                j != 0
                and significantly_lower(errs[j], errs[0], 3.0, th["mistake_min_gain_mm"])
                and means[j] <= th["mistake_max_fraction"] * means[0]
            )
    if not accept:
        chosen = 0
    st, res, u, level = cands[chosen]
    alts = (
        [
            c[0]
            for i, c in enumerate(cands)
            if i != chosen
            and c[3] == level
            and c[1] is None
            and res is None
            and abs(means[i] - means[chosen]) <= 0.02
            and not_worse(errs[i], errs[chosen])
            and _name_key(c[0]) != _name_key(st)
        ]
        if accept
        else []
    )
    lb = _as_letterbox(st, d) if accept else None
    if lb is not None:  # the same numbers: name the reading with a common input size and the device's
        alts, st = [st] + [a for a in alts if _name_key(a) != _name_key(lb)], lb  # spacing, list the other
    gain, se = mean_se_diff(errs[0], errs[chosen]) if accept else (0.0, 0.0)
    e_s = errors_mm(undo(st, pred[st.catalogue], d.wh, d.sp), gt, d.sp)
    return Explanation(
        st,
        res,
        np.arange(len(gt)),
        u,
        _nm(errors_mm(p0, gt, d.sp)),
        _nm(errors_mm(u, gt, d.sp)),
        _nm(e_s),
        alts,
        float(gain),
        float(se),
        tuple(int(v) for v in wh[0]),
    )


def _choose(cands: list, errs: list, means: list) -> int:
    """The fewest mistakes not significantly worse than the best; among equal fits the most plausible."""
    best = int(np.argmin(means))
    for level in sorted({c[3] for c in cands}):
        at = [i for i, c in enumerate(cands) if c[3] == level and np.isfinite(means[i])]
        if not at:
            continue
        i = min(at, key=lambda j: means[j])
        if not_worse(errs[i], errs[best], 2.0, 0.005):
            eq = [j for j in at if means[j] - means[i] <= 0.02 and not_worse(errs[j], errs[i])]
            return min(eq, key=lambda j: (cands[j][1] is not None, _rank(cands[j][0]), means[j]))
    return 0


def _rank(s: Structure) -> tuple:
    """Plausibility order of equally fitting readings (lower first)."""
    units = ("px", "mm", "px_as_mm", "normalised", "normalised_half", "const", "const_mm", "scale")
    fr = s.frame
    kind = {"": 0, "letterbox": 1, "stretch": 2, "heatmap": 3}[fr.kind]
    if fr.kind == "stretch" and s.unit.startswith("normalised"):
        kind = 0  # a convention of normalised coordinates (see transforms.complexity): the fit decides
    if fr.kind == "letterbox" and ((fr.pad == "centre" and fr.padding == "float") or fr.size[0] < 128):
        kind = 4  # half-pixel pads or a tiny input: rarer than the heatmap of a common input
    return (kind, _prefer(int(fr.size[0])) if fr.kind else 0, units.index(s.unit) if s.unit in units else 9)


def _nm(e: np.ndarray) -> float:
    return float(np.nanmean(e)) if np.isfinite(e).any() else float("nan")


def _name_key(s: Structure) -> tuple:
    return (s.swap, s.mirror, s.frame.kind, tuple(s.frame.size), s.unit, s.c, s.catalogue)
