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
import warnings
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..io import atomic_path
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
    for h, who in humans.items():
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
    from .compare import shared_landmarks

    return shared_landmarks([r["_run"] for r in rows])


def per_landmark_png(rows: Sequence[Mapping], path: str | Path) -> Path:
    """Per-landmark MRE of every run side by side (grouped bars), human limit as black markers.

    Landmarks: the union of all runs' landmarks (shared ones first); a run that does not score a
    landmark has no bar there. The human limit per landmark is the annotator-vs-annotator MRE
    recorded by the first run that has one for that landmark.
    """
    plt = _plt()
    shared = _shared(rows)
    names = list(shared)
    for r in rows:
        names += [n for n in r["_run"]["landmarks"] if n not in names]
    k, m = len(names), max(len(rows), 1)
    fig, ax = plt.subplots(figsize=(max(7.0, 0.42 * k + 2), 4.4))
    x = np.arange(k)
    width = 0.8 / m
    human = {}
    for j, r in enumerate(rows):
        run = r["_run"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a landmark nobody predicted
            mre = np.nanmean(run["errors"], axis=0)
        vals = [float(mre[run["landmarks"].index(n)]) if n in run["landmarks"] else np.nan for n in names]
        ax.bar(x - 0.4 + width * (j + 0.5), vals, width=width, label=r["run"])
        met = run["metrics"]
        block = (met.get("human_comparison") or {}).get("annotator_vs_annotator") or met.get("human_limit") or {}
        for n, v in (block.get("per_landmark") or {}).items():
            if v is not None and np.isfinite(v):
                human.setdefault(n, float(v))
    if human:
        ax.plot(x, [human.get(n, np.nan) for n in names], "k_", markersize=12, mew=2.2,
                label="human limit (annotator vs annotator)")
    if shared and len(shared) < k:
        ax.axvline(len(shared) - 0.5, color="0.4", lw=0.8, ls="--")
        ax.text(len(shared) - 0.45, ax.get_ylim()[1] * 0.95, "not shared by all runs ->", fontsize=7, va="top")
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=70, ha="right", fontsize=7)
    ax.set_ylabel("MRE (mm)")
    ax.set_title("Per-landmark MRE, runs side by side", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def _md_to_html(md: str) -> str:
    """The Markdown subset of :func:`to_markdown` (headings, tables, quotes, paragraphs) as HTML."""
    out, table = [], []

    def flush():
        if not table:
            return
        head, body = table[0], [r for r in table[2:]]
        out.append("<table><thead><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr></thead><tbody>"
                   + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in body)
                   + "</tbody></table>")
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


def write_html(rows: Sequence[Mapping], markdown: str, path: str | Path, plot_dir: str | Path,
               title: str = "cephalo: comparison of evaluated runs", footer: str = "") -> Path:
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
