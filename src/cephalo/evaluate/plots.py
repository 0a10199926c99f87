"""Evaluation figures (matplotlib, Agg backend; PNG files) and the CSV data behind DVC plots.

Every function writes one file atomically and returns its path. Inputs are plain arrays in the
units stated; nothing here computes a metric that :mod:`cephalo.evaluate.metrics` does not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io import atomic_path
from .metrics import DEFAULT_THRESHOLDS_MM, SDR_TOLERANCE_MM

__all__ = [
    "wrap_title",
    "sdr_curve_table",
    "sdr_curve",
    "per_landmark_bars",
    "error_vs_device",
    "overlay",
    "diagnosis_figure",
    "prediction_overlay",
]


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return path


def sdr_curve_table(errors: np.ndarray, max_mm: float = 10.0, step_mm: float = 0.25) -> list[dict]:
    """SDR as a function of the threshold: rows ``{"threshold_mm", "sdr"}`` (DVC plot data).

    Args:
        errors: any-shape float64 mm, NaN excluded.
    """
    e = np.asarray(errors, dtype=np.float64).ravel()
    e = e[np.isfinite(e)]
    ts = np.round(np.arange(0.0, max_mm + 1e-9, step_mm), 6)
    return [
        {"threshold_mm": float(t), "sdr": float(np.mean(e <= t + SDR_TOLERANCE_MM)) if e.size else float("nan")}
        for t in ts
    ]


def wrap_title(title: str, width: int = 90, max_lines: int = 3) -> str:
    """A title that fits its figure: wrapped at ``width`` characters, at most ``max_lines`` lines."""
    import textwrap

    return "\n".join(textwrap.wrap(str(title), width=width, max_lines=max_lines, placeholder=" ..."))


def sdr_curve(
    curves: Mapping[str, np.ndarray],
    path: str | Path,
    max_mm: float = 10.0,
    marks: Sequence[float] = DEFAULT_THRESHOLDS_MM,
    title: str = "",
) -> Path:
    """SDR curve(s): fraction of landmarks within t mm vs t.

    Args:
        curves: label -> errors (any shape, mm); e.g. ``{"model": e, "human (senior vs junior)": h}``.
        path: output PNG.
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for label, e in curves.items():
        rows = sdr_curve_table(e, max_mm, 0.05)
        ax.plot([r["threshold_mm"] for r in rows], [100 * r["sdr"] for r in rows], label=label)
    for t in marks:
        ax.axvline(t, color="0.8", lw=0.8, zorder=0)
    ax.set_xlabel("threshold (mm)")
    ax.set_ylabel("SDR (% of landmarks within threshold)")
    ax.set_ylim(0, 100)
    ax.set_xlim(0, max_mm)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    if title:
        ax.set_title(wrap_title(title, 60), fontsize=9)
    return _save(fig, path)


def per_landmark_bars(
    names: Sequence[str],
    mre_mm: Sequence[float],
    sd_mm: Sequence[float] | None,
    path: str | Path,
    human_mm: Mapping[str, float] | None = None,
    title: str = "",
) -> Path:
    """Per-landmark MRE bars (with SD whiskers), and the human limit (annotator vs annotator) beside.

    Args:
        names: K landmark names; mre_mm, sd_mm: K values in mm.
        human_mm: landmark name -> annotator-vs-annotator MRE (mm), drawn as black markers.
    """
    plt = _plt()
    k = len(names)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.38 * k + 2), 4))
    x = np.arange(k)
    ax.bar(x, mre_mm, yerr=sd_mm, capsize=2, color="#4C72B0", alpha=0.85, label="model MRE (± SD)")
    if human_mm:
        h = [human_mm.get(n, np.nan) for n in names]
        ax.plot(x, h, "k_", markersize=14, mew=2.5, label="human limit (annotator vs annotator)")
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=70, ha="right", fontsize=8)
    ax.set_ylabel("radial error (mm)")
    ax.axhline(2.0, color="r", lw=0.8, ls="--", label="2 mm")
    ax.set_title(wrap_title(title, 100), fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def error_vs_device(devices: Sequence[str], image_mre_mm: Sequence[float], path: str | Path, title: str = "") -> Path:
    """Box plot of per-image MRE (mm) per X-ray device."""
    plt = _plt()
    dev = np.asarray([str(d) for d in devices])
    v = np.asarray(image_mre_mm, dtype=np.float64)
    labels = list(dict.fromkeys(dev.tolist()))
    data = [v[(dev == d) & np.isfinite(v)] for d in labels]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.0 * len(labels) + 2), 4))
    ax.boxplot(data, showmeans=True)
    ax.set_xticks(np.arange(1, len(labels) + 1))
    ax.set_xticklabels([f"{d}\n(n={len(x)})" for d, x in zip(labels, data, strict=True)], fontsize=8)
    ax.set_ylabel("per-image MRE (mm)")
    ax.set_xlabel("device")
    ax.grid(axis="y", alpha=0.3)
    if title:
        ax.set_title(wrap_title(title, 50), fontsize=9)
    return _save(fig, path)


def overlay(
    image: np.ndarray,
    gt: np.ndarray,
    pred: np.ndarray,
    path: str | Path,
    title: str = "",
    names: Sequence[str] | None = None,
) -> Path:
    """Image with ground truth (green) and prediction (red), joined by a line per landmark.

    Args:
        image: (H, W) or (H, W, 3) array (uint8/uint16/float), the frame of ``gt``/``pred``.
        gt, pred: (K, 2) float xy in that image's pixels (pixel-centre convention), NaN skipped.
    """
    plt = _plt()
    img = np.asarray(image)
    h, w = img.shape[:2]
    fig, ax = plt.subplots(figsize=(6, 6 * h / max(w, 1)))
    ax.imshow(img, cmap="gray", interpolation="nearest")
    g = np.asarray(gt, dtype=np.float64)
    p = np.asarray(pred, dtype=np.float64)
    for k in range(g.shape[0]):
        if np.isfinite(g[k]).all() and np.isfinite(p[k]).all():
            ax.plot([g[k, 0], p[k, 0]], [g[k, 1], p[k, 1]], "y-", lw=0.8)
        if names is not None and np.isfinite(g[k]).all():
            ax.annotate(str(names[k]), g[k], fontsize=5, color="w", xytext=(3, 3), textcoords="offset points")
    if np.isfinite(g).any():  # the legend names only what is drawn
        ax.scatter(g[:, 0], g[:, 1], s=12, c="lime", label="ground truth")
    ax.scatter(p[:, 0], p[:, 1], s=12, c="red", marker="x", label="prediction")
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower left")
    ax.axis("off")
    return _save(fig, path)


def diagnosis_figure(
    pred: np.ndarray,
    gt: np.ndarray,
    per_landmark: Sequence[Mapping],
    path: str | Path,
    title: str = "",
    max_labels: int = 10,
) -> Path:
    """Three panels: predicted vs GT x, predicted vs GT y (identity line; collapse is a flat cloud,
    an offset a shifted one), and the per-landmark mean offset (mm) as arrows.

    Arrows are drawn in data units on equal axes (an arrow twice as long is a bias twice as large);
    only the ``max_labels`` largest biases are labelled, each at its arrow's tip pushed outward, so
    labels do not pile up at the origin. The title (the run name and its finding) is wrapped.

    Args:
        pred, gt: (N, K, 2) float xy original pixels.
        per_landmark: rows with ``landmark``, ``bias_dx_mm``, ``bias_dy_mm`` (from the Diagnosis).
    """
    plt = _plt()
    p = np.asarray(pred, dtype=np.float64).reshape(-1, 2)
    g = np.asarray(gt, dtype=np.float64).reshape(-1, 2)
    ok = np.isfinite(p).all(axis=1) & np.isfinite(g).all(axis=1)
    p, g = p[ok], g[ok]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.4))
    for i, ax in enumerate(axes[:2]):
        ax.scatter(g[:, i], p[:, i], s=4, alpha=0.5)
        lo = float(min(g[:, i].min(), p[:, i].min())) if g.size else 0.0
        hi = float(max(g[:, i].max(), p[:, i].max())) if g.size else 1.0
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_xlabel(f"ground-truth {'xy'[i]} (px)")
        ax.set_ylabel(f"predicted {'xy'[i]} (px)")
        ax.set_title(f"predicted vs ground-truth {'xy'[i]}", fontsize=9)
        ax.grid(alpha=0.3)
    ax = axes[2]
    rows = [
        (str(r["landmark"]), float(r.get("bias_dx_mm", np.nan)), float(r.get("bias_dy_mm", np.nan)))
        for r in per_landmark
    ]
    rows = [r for r in rows if np.isfinite(r[1]) and np.isfinite(r[2])]
    if rows:
        b = np.array([[dx, dy] for _, dx, dy in rows])
        ax.quiver(
            np.zeros(len(b)),
            np.zeros(len(b)),
            b[:, 0],
            b[:, 1],
            angles="xy",
            scale_units="xy",
            scale=1,
            width=0.006,
            alpha=0.7,
            color="#4C72B0",
        )
        lim = max(1.0, float(np.abs(b).max()) * 1.3)
        order = np.argsort(-np.hypot(b[:, 0], b[:, 1]))[:max_labels]
        for j in order:
            dx, dy = b[j]
            r = float(np.hypot(dx, dy))
            if r < 0.05 * lim:
                continue
            ux, uy = dx / r, dy / r
            ax.annotate(
                rows[j][0],
                (dx, dy),
                xytext=(6 * ux, 6 * uy),
                textcoords="offset points",
                fontsize=6,
                ha="left" if ux >= 0 else "right",
                va="top" if uy >= 0 else "bottom",
            )
        ax.set_xlim(-lim, lim)
        ax.set_ylim(lim, -lim)  # y down, as in the image
    ax.axhline(0, color="0.7", lw=0.8)
    ax.axvline(0, color="0.7", lw=0.8)
    ax.set_aspect("equal")
    ax.set_xlabel("mean dx (mm)")
    ax.set_ylabel("mean dy (mm, down)")
    ax.set_title(f"per-landmark bias (largest {max_labels} labelled)", fontsize=9)
    fig.suptitle(wrap_title(title, 140), fontsize=9)
    return _save(fig, path)


def overlay_scale(
    w: int, h: int, max_side: int = 1600, min_long: int = 900, min_short: int = 360, cap_long: int = 3200
) -> float:
    """Scale factor of the image area of an overlay: the long side brought into ``[min_long, max_side]``
    (small images are enlarged, large ones reduced), then the short side raised to ``min_short`` for an
    extreme aspect ratio, never beyond ``cap_long`` px on the long side."""
    long_, short = max(w, h, 1), max(min(w, h), 1)
    s = min(max(long_, min_long), max_side) / long_
    if short * s < min_short:
        s = min(min_short / short, cap_long / long_)
    return float(s)


def _place_labels(points: np.ndarray, texts: Sequence[str], fs_px: float, size: tuple[int, int]) -> list:
    """Greedy label placement in output pixels: for each point the first of 8 offsets whose text box hits no
    box already placed (other labels, the markers) and stays inside the image; else the least overlapping.
    Returns per point an ``(dx, dy)`` offset in output pixels (None for a point not drawn)."""
    W, H = size
    boxes: list[tuple[float, float, float, float]] = [
        (x - fs_px * 0.5, y - fs_px * 0.5, x + fs_px * 0.5, y + fs_px * 0.5)
        for x, y in points
        if np.isfinite([x, y]).all()
    ]
    d = fs_px * 0.6
    cands = [(d, -d), (d, d), (-d, -d), (-d, d), (2.2 * d, 0), (-2.2 * d, 0), (0, -2.2 * d), (0, 2.2 * d)]
    out: list = []

    def overlap(b, o):
        return max(0.0, min(b[2], o[2]) - max(b[0], o[0])) * max(0.0, min(b[3], o[3]) - max(b[1], o[1]))

    for (x, y), t in zip(points, texts, strict=False):
        if not np.isfinite([x, y]).all():
            out.append(None)
            continue
        tw, th = 0.62 * fs_px * max(len(str(t)), 1), 1.1 * fs_px
        best, best_cost = None, None
        for dx, dy in cands:
            x0 = x + dx if dx >= 0 else x + dx - tw
            y0 = y + dy - th if dy <= 0 else y + dy
            b = (x0, y0, x0 + tw, y0 + th)
            cost = sum(overlap(b, o) for o in boxes) + (
                0 if (b[0] >= 0 and b[1] >= 0 and b[2] <= W and b[3] <= H) else tw * th * 0.5
            )
            if best_cost is None or cost < best_cost:
                best, best_cost = ((dx, dy), b), cost
            if cost == 0:
                break
        boxes.append(best[1])
        out.append(best[0])
    return out


@dataclass(frozen=True)
class OverlayRadii:
    """The prediction radii :func:`prediction_overlay` draws as ellipses, with what they hold for.

    Attributes:
        px: (K, 2) radius along x and y in original px (NaN/inf: not drawn; None without spacing).
        coverage: level of the radii. note: what the radius level holds for, in the legend
            (``"per landmark"``, ``"over all landmarks"``).
    """

    px: np.ndarray | None = None
    coverage: float | None = None
    note: str = ""


def prediction_overlay(
    image: np.ndarray,
    coords: np.ndarray,
    path: str | Path,
    *,
    labels: Sequence[str],
    radii: OverlayRadii | None = None,
    flagged: Sequence[bool] | None = None,
    title: str = "",
    max_side: int = 1600,
    notes: Sequence[str] = (),
) -> Path:
    """Predicted landmarks on the original image, for a clinician: labels, uncertainty ellipses, flags.

    Layout: a header band above the image (``title`` and ``notes``, one line each, e.g. "measurements
    not reliable"), the image, a legend band below it: no text is drawn over the radiograph except the
    landmark labels, and those are placed so that they do not overlap each other (:func:`_place_labels`).
    The image area is scaled by :func:`overlay_scale` (a small or very wide image is enlarged, a large
    one reduced to ``max_side``); font sizes follow the output size. The legend lists only what is
    drawn: predictions, flagged landmarks (if any), the radius of the given coverage (if any).

    Args:
        image: (H, W) original image (uint8/uint16/float); coords: (K, 2) xy original px (NaN skipped).
        labels: K short labels (symbols). radii: the prediction radii and their level
            (:class:`OverlayRadii`; None: none drawn). flagged: K booleans (drawn in orange).
            notes: extra header lines (warnings).
    """
    r = radii or OverlayRadii()
    radii_px, coverage, radius_note = r.px, r.coverage, r.note
    import matplotlib.patheffects as pe
    from matplotlib.lines import Line2D
    from matplotlib.patches import Ellipse

    plt = _plt()
    img = np.asarray(image)
    h, w = img.shape[:2]
    s = overlay_scale(w, h, max_side)
    ow, oh = max(1, round(w * s)), max(1, round(h * s))
    fs = float(np.clip(min(ow, 1.25 * oh) / 75.0, 8.0, 22.0))  # points at dpi 100 ~ 1.39 px per point
    fs_px = fs * 100 / 72
    lines = [t for t in [title, *notes] if t]
    head = int(round(len(lines) * fs_px * 1.6 + (fs_px * 0.6 if lines else 0)))
    foot = int(round(fs_px * 2.4))
    dpi = 100
    H_tot = oh + head + foot
    fig = plt.figure(figsize=(ow / dpi, H_tot / dpi), dpi=dpi)
    fig.patch.set_facecolor("white")
    ax = fig.add_axes([0, foot / H_tot, 1, oh / H_tot])
    ax.imshow(img, cmap="gray", interpolation="antialiased", extent=(-0.5, w - 0.5, h - 0.5, -0.5))
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.axis("off")
    c = np.asarray(coords, dtype=np.float64)
    fl = np.zeros(len(c), bool) if flagged is None else np.asarray(flagged, dtype=bool)
    outline = [pe.withStroke(linewidth=fs / 4, foreground="black")]
    drawn_radius = False
    offsets = _place_labels((c + 0.5) * s, [str(t) for t in labels], fs_px, (ow, oh))
    for k in range(len(c)):
        if not np.isfinite(c[k]).all():
            continue
        col = "orange" if fl[k] else "red"
        if radii_px is not None and np.isfinite(radii_px[k]).all():
            ax.add_patch(
                Ellipse(
                    tuple(c[k]),
                    2 * radii_px[k][0],
                    2 * radii_px[k][1],
                    fill=False,
                    color="cyan",
                    lw=max(0.8, fs / 10),
                    alpha=0.9,
                )
            )
            drawn_radius = True
        ax.plot(c[k, 0], c[k, 1], marker="+", color=col, ms=fs * 1.3, mew=max(1.0, fs / 7))
        dx, dy = offsets[k]
        ax.annotate(
            str(labels[k]),
            tuple(c[k]),
            xytext=(dx * 72 / 100, -dy * 72 / 100),
            textcoords="offset points",
            fontsize=fs,
            color=col,
            path_effects=outline,
            ha="left" if dx >= 0 else "right",
            va="bottom" if dy <= 0 else "top",
        )
    handles = [Line2D([], [], color="red", marker="+", ls="", ms=fs, label="predicted landmark")]
    if fl.any():
        handles.append(Line2D([], [], color="orange", marker="+", ls="", ms=fs, label="flagged: check"))
    if drawn_radius:
        lvl = f"{100 * coverage:.0f}% " if coverage else ""
        handles.append(
            Line2D(
                [],
                [],
                color="cyan",
                marker="o",
                mfc="none",
                ls="",
                ms=fs,
                label=f"{lvl}prediction radius" + (f" ({radius_note})" if radius_note else ""),
            )
        )
    fig.legend(
        handles=handles,
        loc="lower left",
        bbox_to_anchor=(0, 0),
        fontsize=fs * 0.9,
        frameon=False,
        ncol=len(handles),
        handletextpad=0.3,
        columnspacing=1.0,
        borderaxespad=0.2,
    )
    for i, t in enumerate(lines):
        y = 1 - (fs_px * 0.5 + i * fs_px * 1.6) / H_tot
        warn = i > 0 and t.upper().startswith("MEASUREMENTS")
        fig.text(
            0.005,
            y,
            t,
            va="top",
            ha="left",
            fontsize=fs * (1.0 if i == 0 else 0.9),
            color="#b71c1c" if warn else "black",
            fontweight="bold" if warn or i == 0 else "normal",
        )
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)
    return path
