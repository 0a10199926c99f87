"""Search for the simplest composition of coordinate mistakes that explains a group of images.

For one group (all images, or one device / image size / index value) the search

1. reads the axis order and mirror from the signs of per-image least-squares slopes of the file's
   coordinates against the ground truth (both axis orders are tried);
2. fits each frame x unit composition's size (letterbox / heatmap input ``S``, stretch
   ``Sw x Sh``) or constant (spacing, scale) from the magnitudes of those slopes, scores it
   roughly, then refines the best ones over nearby sizes and every convention (pad side, pixel
   centre vs corner, ``int`` vs ``round`` of the scaled size, integer vs half pads, integer
   heatmap cells) on the *fit* half of the group's images (steps 1-2: :mod:`.candidates`);
3. scores the refined compositions on the *confirm* half, and keeps the one with the fewest
   mistakes that is not significantly worse than the best, when it is significantly better than
   the file as given (``mistake_min_gain_mm``, ``mistake_max_fraction``, 3 standard errors);
4. then looks for a residual offset (or isotropic scale + offset) the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .candidates import COMMON_INPUT_SIZES, GroupData, candidates, letterbox_spacings, prefer, slopes
from .stats import errors_mm, holdout_masks, mean_se_diff, not_worse, significantly_lower
from .transforms import UNITS_MM, UNITS_PX, Frame, Structure, complexity, forward_coefficients, undo

__all__ = ["Explanation", "explain_group"]


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


def _as_letterbox(s: Structure, d: GroupData) -> Structure | None:
    """The top-left ``x * scale`` letterbox + mm reading of ``s`` (mm made with one constant spacing),
    where the two are the same numbers on this group (one image size and spacing), else ``None``."""
    if s.unit != "const" or s.frame.kind:
        return None
    for size, c in zip(COMMON_INPUT_SIZES, letterbox_spacings(d.sp, d.wh), strict=False):
        if abs(c - s.c) <= 1e-12 * c:
            t = s.with_(frame=Frame("letterbox", (size, size), pad="top-left", conv="corner"), unit="mm", c=1.0)
            a0, b0 = forward_coefficients(s, d.wh, d.sp)
            a1, b1 = forward_coefficients(t, d.wh, d.sp)
            if np.allclose(a0, a1, rtol=1e-9, atol=0) and np.allclose(b0, b1, rtol=0, atol=1e-9):
                return t
    return None


def _residuals(u: np.ndarray, d: GroupData, th: dict) -> list[tuple[tuple, np.ndarray]]:
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
    d = GroupData(pred, gt, np.asarray(spacing, float), np.asarray(wh, float), fit, conf, integral)
    structs = candidates(d, UNITS_MM if units == "mm" else UNITS_PX)
    cands = []  # (structure, residual, undone, number of mistakes)
    for st in structs:
        u = undo(st, pred[st.catalogue], d.wh, d.sp)
        cands.append((st, None, u, complexity(st)))
        iso = np.nanmedian(np.abs(slopes(u, gt, fit)))
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
    return (kind, prefer(int(fr.size[0])) if fr.kind else 0, units.index(s.unit) if s.unit in units else 9)


def _nm(e: np.ndarray) -> float:
    return float(np.nanmean(e)) if np.isfinite(e).any() else float("nan")


def _name_key(s: Structure) -> tuple:
    return (s.swap, s.mirror, s.frame.kind, tuple(s.frame.size), s.unit, s.c, s.catalogue)
