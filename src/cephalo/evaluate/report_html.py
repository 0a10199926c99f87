"""The comparison as figures: PNG plots and one self-contained HTML page (opens offline).

The page embeds its images as ``data:`` URIs and uses no script, font or style sheet from the
network, so it renders the same from a laptop without a connection, an e-mail attachment or
``snakemake --report``. Content: the provenance warnings, the SDR curves of every compared run on
one chart (over the landmarks all runs share), per-landmark MRE of every run side by side with
the human limit (annotator vs annotator) drawn per landmark, and the Markdown tables of
:func:`cephalo.evaluate.compare.to_markdown` rendered as HTML.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..io import atomic_path
from .compare import per_landmark_table, shared_landmarks
from .metrics import DEFAULT_THRESHOLDS_MM
from .plots import _plt, _save, sdr_curve_table

__all__ = ["sdr_curves_png", "per_landmark_png", "write_html"]


def sdr_curves_png(rows: Sequence[Mapping], path: str | Path, max_mm: float = 6.0) -> Path:
    """SDR (%) vs threshold (mm) of every run over the shared landmarks, one chart.

    The human limit (annotator vs annotator, same landmarks) is drawn as a dotted vertical line
    at its MRE per run that has one (one line per distinct value).
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    shared = _shared(rows)
    humans: dict[float, list[str]] = {}
    for r in rows:
        run = r["_run"]
        idx = [run["landmarks"].index(n) for n in shared]
        tab = sdr_curve_table(run["errors"][:, idx], max_mm, 0.05)
        ax.plot([t["threshold_mm"] for t in tab], [100 * t["sdr"] for t in tab], label=r["run"], lw=1.6)
        h = r.get("human_mre_mm/shared")
        if h is not None:
            humans.setdefault(round(float(h), 3), []).append(r["run"])
    for h in humans:
        ax.axvline(h, color="k", ls=":", lw=1.0)
        ax.text(h, 3, f" human MRE {h:.2f} mm", rotation=90, va="bottom", fontsize=7)
    for t in DEFAULT_THRESHOLDS_MM:
        ax.axvline(t, color="0.85", lw=0.8, zorder=0)
    n = rows[0].get("n_landmarks/shared") if rows else 0
    ax.set_title(f"SDR over the {n} landmarks all runs share", fontsize=10)
    ax.set_xlabel("threshold (mm)")
    ax.set_ylabel("SDR (% of landmarks within threshold)")
    ax.set_xlim(0, max_mm)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def _shared(rows: Sequence[Mapping]) -> list[str]:
    return shared_landmarks([r["_run"] for r in rows])


def per_landmark_png(rows: Sequence[Mapping], path: str | Path) -> Path:
    """Per-landmark MRE of every run as a heat map (runs x landmarks, mm, log colour scale), values
    written in the cells, the human limit (annotator vs annotator, on the images of the first run that
    records one) as the last row.

    A map rather than grouped bars: with a dozen runs bars cannot be told apart, and one failed run
    (tens of mm) flattens every other bar. Landmarks and values: :func:`cephalo.evaluate.compare.
    per_landmark_table` (shared landmarks first; a run that does not score a landmark has an empty cell).
    """
    from matplotlib.colors import LogNorm

    plt = _plt()
    names, table, human, human_run = per_landmark_table(rows)
    labels = list(table)
    grid = [table[r] for r in labels]
    if human_run is not None:
        labels.append(f"human (annotator vs annotator,\nimages of {human_run})")
        grid.append(human)
    z = np.array(grid, dtype=np.float64).reshape(len(labels), len(names))
    fin = z[np.isfinite(z) & (z > 0)]
    lo, hi = (float(fin.min()), float(fin.max())) if fin.size else (0.1, 1.0)
    norm = LogNorm(vmin=max(min(lo, 0.5), 1e-3), vmax=max(hi, 1.0))
    fig, ax = plt.subplots(figsize=(max(7.0, 0.55 * len(names) + 3.5), 0.42 * len(labels) + 2.2))
    im = ax.imshow(np.ma.masked_invalid(z), cmap="viridis", norm=norm, aspect="auto")
    for i in range(z.shape[0]):
        for j in range(z.shape[1]):
            v = z[i, j]
            if np.isfinite(v):
                dark = norm(max(v, norm.vmin)) < 0.6
                ax.text(
                    j,
                    i,
                    f"{v:.1f}" if v < 10 else f"{v:.0f}",
                    ha="center",
                    va="center",
                    fontsize=6.5,
                    color="white" if dark else "black",
                )
    ax.set_xticks(np.arange(len(names)))
    ax.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(np.arange(len(labels)))
    ax.set_yticklabels(labels, fontsize=7)
    if len(labels) > len(table):
        ax.axhline(len(table) - 0.5, color="white", lw=2)
    shared = _shared(rows)
    if shared and len(shared) < len(names):
        ax.axvline(len(shared) - 0.5, color="white", lw=1.5, ls="--")
    fig.colorbar(im, ax=ax, label="MRE (mm, log scale)", fraction=0.03, pad=0.01)
    ax.set_title("Per-landmark MRE (mm), runs x landmarks", fontsize=10)
    return _save(fig, path)


def _md_to_html(md: str) -> str:
    """The Markdown subset of :func:`to_markdown` (headings, tables, quotes, paragraphs) as HTML."""
    out, table = [], []

    def flush():
        if not table:
            return
        head, body = table[0], [r for r in table[2:]]
        out.append(
            "<table><thead><tr>"
            + "".join(f"<th>{html.escape(c)}</th>" for c in head)
            + "</tr></thead><tbody>"
            + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in body)
            + "</tbody></table>"
        )
        table.clear()

    for line in md.splitlines():
        s = line.strip()
        if s.startswith("|"):
            table.append([c.strip() for c in s.strip("|").split("|")])
            continue
        flush()
        if s.startswith("## "):
            out.append(f"<h2>{html.escape(s[3:])}</h2>")
        elif s.startswith("> "):
            out.append(f"<p class='warn'>{html.escape(s[2:].replace('**', ''))}</p>")
        elif s:
            out.append(f"<p>{html.escape(s)}</p>")
    flush()
    return "\n".join(out)


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{data}'>"


def write_html(
    rows: Sequence[Mapping],
    markdown: str,
    path: str | Path,
    plot_dir: str | Path,
    title: str = "cephalo: comparison of evaluated runs",
    footer: str = "",
) -> Path:
    """Write the PNGs into ``plot_dir`` and the self-contained HTML page to ``path`` (atomic).

    Args:
        rows: :func:`cephalo.evaluate.compare.compare_runs` rows (with ``_run``).
        markdown: :func:`cephalo.evaluate.compare.to_markdown` of the same rows.
        path: the ``.html`` file.
        plot_dir: folder for ``sdr_curves.png`` and ``per_landmark.png`` (also DVC image plots).
        footer: a line at the bottom (e.g. the machine and versions).

    Returns:
        ``path``.
    """
    plot_dir = Path(plot_dir)
    plot_dir.mkdir(parents=True, exist_ok=True)
    sdr = sdr_curves_png(rows, plot_dir / "sdr_curves.png")
    pl = per_landmark_png(rows, plot_dir / "per_landmark.png")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; max-width: 1400px; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.2em; font-size: 13px; }}
th, td {{ border: 1px solid #bbb; padding: 3px 7px; text-align: right; }}
th {{ background: #eee; }} td:first-child, th:first-child {{ text-align: left; }}
.warn {{ background: #fff3cd; border: 1px solid #e0c060; padding: 6px; }}
img {{ max-width: 100%; border: 1px solid #ddd; margin: 4px 0; }}
.foot {{ color: #666; font-size: 12px; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<div>{_img(sdr, "SDR curves of the compared runs")}</div>
<div>{_img(pl, "Per-landmark MRE of the compared runs with the human limit")}</div>
{_md_to_html(markdown)}
<p class="foot">{html.escape(footer)}</p>
</body></html>
"""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")
    return Path(path)
