"""The picture of a diagnosis: predictions as given and after correction, one row per group."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..plots import _plt

__all__ = ["corrections_figure"]


def _rows_of(label: str, n: int, groups: Mapping[str, Sequence]) -> np.ndarray:
    if "=" not in label:
        return np.arange(n)
    col, val = label.split("=", 1)
    return np.flatnonzero(np.asarray([str(v) for v in groups.get(col, [])], dtype=object) == val)


def corrections_figure(
    pred: np.ndarray,
    undone: np.ndarray,
    gt: np.ndarray,
    group_rows: Sequence[Mapping],
    groups: Mapping[str, Sequence],
    path: str | Path,
    title: str = "",
    max_groups: int = 7,
) -> Path:
    """Two panels per group: the file's coordinates as given, and once corrected, over the truth.

    Each panel draws the ground truth (grey) and the predictions (red) of the group's images in
    their own coordinates (xy, y down), joined by a line per landmark; the as-given panel has its
    own axes (a heatmap frame is tiny, mm are small numbers).

    Args:
        pred, undone, gt: (N, K, 2) float64 xy: as given, corrected (original px), truth (px).
        group_rows: :attr:`PredictionsReport.groups` rows (``group``, ``mre_mm``, ``mre_after_mm``,
            ``mistakes``); groups: ``{column: (N,) labels}`` to find each group's images.
        path: PNG to write.

    Returns:
        ``path``.
    """
    plt = _plt()
    rows = list(group_rows)[:max_groups] or [
        {"group": "all images", "mre_mm": np.nan, "mre_after_mm": np.nan, "mistakes": []}
    ]
    fig, axes = plt.subplots(len(rows), 2, figsize=(9, 3.6 * len(rows)), squeeze=False)
    for r, row in enumerate(rows):
        sel = _rows_of(row["group"], len(gt), groups)
        for c, (arr, what, mre) in enumerate(
            ((pred, "as given", row["mre_mm"]), (undone, "corrected", row["mre_after_mm"]))
        ):
            ax = axes[r, c]
            g, p = gt[sel].reshape(-1, 2), arr[sel].reshape(-1, 2)
            ok = np.isfinite(p).all(1) & np.isfinite(g).all(1)
            ax.scatter(g[:, 0], g[:, 1], s=3, c="0.6", label="ground truth")
            ax.scatter(p[ok, 0], p[ok, 1], s=3, c="tab:red", label="predictions")
            if c == 1:
                for a, b in zip(p[ok][:400], g[ok][:400], strict=True):
                    ax.plot([a[0], b[0]], [a[1], b[1]], lw=0.3, c="tab:red", alpha=0.4)
            ax.invert_yaxis()
            ax.set_aspect("equal", adjustable="datalim")
            found = ", ".join(row.get("mistakes") or []) or "no mistake"
            ax.set_title(f"{row['group']}: {what}, MRE {mre:.1f} mm" + (f"\n({found})" if c == 0 else ""), fontsize=8)
            ax.tick_params(labelsize=6)
    axes[0, 0].legend(fontsize=6, loc="best")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
