"""One self-contained HTML report per prediction run (opens offline: CSS inline, images embedded).

Content: the run (model, checkpoint, calibration, spacing), a table of the images with their flags,
then per image the overlay, the review flags in words, the cephalometric measurements against
their normal ranges (with source) and ISBI 2015 classes, and the landmark table.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["FLAG_TEXT", "write_report"]

#: plain-words meaning of each flag (image and landmark level)
FLAG_TEXT = {
    "tiny": "image too small to be a cephalogram",
    "aspect": "extreme aspect ratio: not a lateral cephalogram",
    "no_structure": "no radiographic structure (noise, blank or not an X-ray)",
    "noisy": "pixel noise far above that of the radiographs the model was trained on",
    "shape": "implausible landmark constellation for a cephalogram",
    "landmarks": "several landmarks not found (outside the image or no position)",
    "radius": "prediction radius above the review threshold",
    "outside": "landmark outside the image",
    "no_position": "the model found no position",
}

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-top:1px solid #ccc;padding-top:1em}
table{border-collapse:collapse;margin:0.5em 0 1em 0;font-size:0.9em}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}th{background:#f2f2f2}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.flag{display:inline-block;background:#ffe0b2;color:#8a4b00;border-radius:3px;padding:0 5px;margin:1px;font-size:0.85em}
.ok{color:#1b5e20}.warn{color:#b71c1c;font-weight:600}.muted{color:#777}
.below,.above{color:#b71c1c}.normal{color:#1b5e20}
.grid{display:flex;gap:24px;flex-wrap:wrap}.grid img{max-width:720px;width:100%;border:1px solid #ccc}
.note{background:#fff8e1;border-left:4px solid #ffb300;padding:6px 10px;margin:8px 0}
"""


def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x))


def _fmt(v: Any, nd: int = 2) -> str:
    return "&ndash;" if v is None else f"{float(v):.{nd}f}"


def _img_tag(path: Path | None, max_side: int = 1000) -> str:
    """The overlay as an embedded JPEG (long side <= ``max_side``), or a note when absent."""
    if path is None or not Path(path).is_file():
        return '<p class="muted">(no overlay)</p>'
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        return '<p class="muted">(overlay unreadable)</p>'
    h, w = img.shape[:2]
    s = min(1.0, max_side / max(h, w))
    if s < 1:
        img = cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 88])
    data = base64.b64encode(buf.tobytes()).decode("ascii")
    return f'<img alt="overlay" src="data:image/jpeg;base64,{data}">'


def _per_landmark_coverage(cal: Mapping, rv: Mapping) -> str:
    """Leave-one-image-out coverage on the calibration split, pooled beside per landmark (lowest first)."""
    from .uncertainty import coverage_key

    key = coverage_key(float(rv.get("coverage", 0.9)))
    overall = (cal.get("loo_coverage") or {}).get(key)
    per = (cal.get("loo_coverage_per_landmark") or {}).get(key)
    if overall is None or not per:
        return ""
    names = cal.get("landmarks") or [str(i) for i in range(len(per))]
    pairs = sorted(((v, n) for v, n in zip(per, names, strict=False) if v is not None), key=lambda t: t[0])
    low = ", ".join(f"{_e(n)} {100 * v:.0f}%" for v, n in pairs[:5])
    return (
        f"<br>leave-one-image-out coverage on the calibration images at {key}: {100 * overall:.1f}% over all "
        f"landmarks; per landmark lowest: {low}"
    )


def _reliable(r: Mapping) -> bool:
    """True when no measurement of the record is withheld by the gate."""
    return all(m.get("reliable", True) is not False for m in (r.get("measurements") or {}).values())


def _meas_state(r: Mapping) -> str:
    meas = r.get("measurements") or {}
    if not meas:
        return "<span class='muted'>none</span>"
    n_bad = sum(1 for m in meas.values() if m.get("reliable", True) is False)
    if n_bad == len(meas):
        return "<span class='warn'>withheld</span>"
    shown = [m for m in meas.values() if m.get("reliable", True) is not False]
    settled = sum(1 for m in shown if m.get("status") and len(m.get("interval_statuses") or []) <= 1)
    txt = f"{len(shown)} reported" + (f", {n_bad} withheld" if n_bad else "")
    txt += f"; {settled} of {len(shown)} settled vs norm"
    return f"<span class='{'ok' if settled == len(shown) and not n_bad else 'warn'}'>{txt}</span>"


def _landmark_summary(r: Mapping) -> str:
    """Flagged landmarks grouped by flag: ``radius > 2 mm: 19 (all)``, ``outside: Go, Me``."""
    from collections import defaultdict

    by: dict = defaultdict(list)
    for lm in r["landmarks"]:
        for f in lm.get("flags") or []:
            by[f].append(lm.get("symbol") or lm["name"])
    if not by:
        return "<span class='ok'>none</span>"
    n = len(r["landmarks"])
    parts = []
    for f, syms in by.items():
        names = f"all {n}" if len(syms) == n else ", ".join(syms) if len(syms) <= 6 else f"{len(syms)} of {n}"
        parts.append(f"<span class='flag' title='{_e(FLAG_TEXT.get(f, f))}'>{_e(f)}</span> {_e(names)}")
    return "<br>".join(parts)


def _bits(r: Mapping) -> str:
    b = r.get("bit_depth")
    if b is None:
        return ""
    if r.get("bit_depth_note"):
        return (
            f"<span class='warn' title='{_e(r['bit_depth_note'])}'>"
            f"{int(b)}-bit in {int(r.get('container_bits') or 16)}-bit, rescaled</span>"
        )
    return f"{int(b)}-bit"


def _flags(fl: Sequence[str]) -> str:
    if not fl:
        return '<span class="ok">none</span>'
    return " ".join(f'<span class="flag" title="{_e(FLAG_TEXT.get(f, f))}">{_e(f)}</span>' for f in fl)


def write_report(
    path: str | Path,
    records: Sequence[Mapping],
    info: Mapping[str, Any],
    overlay_files: Mapping[str, Path] | None = None,
    skipped: Sequence[Mapping] = (),
) -> Path:
    """Write the report atomically.

    Args:
        path: the ``.html`` file.
        records: image records as in ``predictions.json`` (``image_id``, ``file``, ``width``,
            ``height``, ``spacing``, ``spacing_source``, ``landmarks`` with ``radius_mm``/``flags``,
            ``review``, ``measurements``).
        info: run information (``checkpoint``, ``model``, ``calibration``, ``review``, ``command``).
        overlay_files: image_id -> overlay PNG to embed.
        skipped: ``{"file", "error"}`` per input that could not be read (listed first, in red).
    """
    from .io import atomic_path

    overlay_files = dict(overlay_files or {})
    n_flag = sum(1 for r in records if (r.get("review") or {}).get("image"))
    n_lm = sum((r.get("review") or {}).get("n_landmarks_flagged", 0) for r in records)
    cal = info.get("calibration") or {}
    rv = info.get("review") or {}
    out = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>cephalo predictions</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>cephalo: predicted landmarks and measurements</h1>",
        "<table>",
        f"<tr><th>checkpoint</th><td>{_e(info.get('checkpoint'))}</td></tr>",
        f"<tr><th>model</th><td>{_e((info.get('model') or {}).get('arch'))}, "
        f"{len((info.get('model') or {}).get('landmark_names', []))} landmarks</td></tr>",
    ]
    if cal:
        out.append(
            f"<tr><th>uncertainty</th><td>split-conformal radii at {100 * float(rv.get('coverage', 0.9)):.0f}% "
            f"coverage, calibrated on {_e(cal.get('n_images'))} '{_e(cal.get('split'))}' images of "
            f"{_e(cal.get('variant'))}"
            + (
                f" (one quantile over all landmarks, each weighted by its median error on "
                f"{_e(cal.get('difficulty_n_images'))} '{_e(cal.get('difficulty_split'))}' images)"
                if cal.get("pooling") == "pooled" and cal.get("difficulty_split")
                else ""
            )
            + "</td></tr>"
        )
        out.append(
            f"<tr><th>radius guarantee</th><td><b>{_e(cal.get('guarantee_text'))}</b>"
            + _per_landmark_coverage(cal, rv)
            + "</td></tr>"
        )
    else:
        out.append(
            "<tr><th>uncertainty</th><td class='warn'>the checkpoint carries no calibration: no prediction "
            "radii, no radius flags (run <code>cephalo calibrate</code>)</td></tr>"
        )
    out.append(
        f"<tr><th>review thresholds</th><td>landmark radius &gt; {_e(rv.get('radius_mm'))} mm; image: "
        f"short side &lt; {_e(rv.get('min_side_px'))} px, aspect &gt; {_e(rv.get('max_aspect'))}, "
        f"structure &lt; {_e(rv.get('min_structure'))}, noise &gt; {_e(rv.get('max_noise'))} of white, shape model; "
        "an image flag withholds all of its measurements</td></tr>"
    )
    out.append(
        f"<tr><th>images</th><td>{len(records)}: <b>{n_flag}</b> flagged for review, {n_lm} landmarks "
        f"flagged</td></tr></table>"
    )
    if skipped:
        out.append(
            f"<h2>Not predicted: {len(skipped)} input(s) could not be read</h2><table><tr><th>file</th>"
            "<th>problem</th></tr>"
            + "".join(
                f"<tr><td>{_e(Path(str(sk.get('file'))).name)}</td><td class='warn'>{_e(sk.get('error'))}</td></tr>"
                for sk in skipped
            )
            + "</table>"
        )
    gated = [r["image_id"] for r in records if not _reliable(r)]
    if gated:
        out.append(
            f"<p class='note'><b>Measurements withheld</b> for {len(gated)} image(s) "
            f"({_e(', '.join(gated[:8]))}{' ...' if len(gated) > 8 else ''}): an image flag, a landmark not "
            "found or an impossible value says they cannot be trusted, so no value, norm comparison or "
            "class is shown for them (each image's table gives the reason).</p>"
        )
    no_mm = [r["image_id"] for r in records if not r.get("spacing")]
    if no_mm:
        out.append(
            f"<p class='note'>No pixel spacing for {len(no_mm)} image(s) ({_e(', '.join(no_mm[:5]))}"
            f"{' ...' if len(no_mm) > 5 else ''}): positions in pixels only, no millimetre measurements; "
            "angles and ratios assume square pixels; no prediction radii (they are calibrated in mm). Give "
            "<code>--spacing</code> or use DICOM files with PixelSpacing.</p>"
        )
    out.append(
        "<h2>Images</h2><table><tr><th>#</th><th>image</th><th>size (px)</th><th>pixel spacing (mm/px)</th>"
        "<th>grey levels</th><th>image flags</th><th>measurements</th><th>flagged landmarks</th></tr>"
    )
    for i, r in enumerate(records, 1):
        rev = r.get("review") or {}
        sp = r.get("spacing")
        sp_txt = (
            f"{sp[0]:.4g} x {sp[1]:.4g} ({_e(r.get('spacing_source'))})" if sp else "<span class='warn'>unknown</span>"
        )
        out.append(
            f"<tr><td>{i}</td><td><a href='#img-{_e(r['image_id'])}'>{_e(r['image_id'])}</a></td>"
            f"<td>{r['width']} x {r['height']}</td><td>{sp_txt}</td><td>{_bits(r)}</td>"
            f"<td>{_flags(rev.get('image', []))}</td><td>{_meas_state(r)}</td>"
            f"<td>{_landmark_summary(r)}</td></tr>"
        )
    out.append("</table>")
    for r in records:
        rev = r.get("review") or {}
        out.append(
            f"<h2 id='img-{_e(r['image_id'])}'>{_e(r['image_id'])} <span class='muted'>"
            f"({_e(Path(str(r['file'])).name)})</span></h2>"
        )
        fl = rev.get("image", [])
        out.append(
            "<p>image flags: "
            + _flags(fl)
            + "".join(f"<br><span class='warn'>{_e(f)}</span>: {_e(FLAG_TEXT.get(f, f))}" for f in fl)
            + "</p>"
        )
        if r.get("bit_depth_note"):
            out.append(f"<p class='note'>grey levels: {_e(r['bit_depth_note'])}</p>")
        out.append("<div class='grid'><div>" + _img_tag(overlay_files.get(r["image_id"])) + "</div><div>")
        meas = r.get("measurements") or {}
        if meas:
            out.append(
                "<table><tr><th>measurement</th><th>value</th><th>norm (reference)</th><th>vs norm</th>"
                "<th>ISBI 2015 class</th></tr>"
            )
            for k, m in meas.items():
                unit = {"deg": "&deg;", "mm": " mm", "ratio": ""}.get(m["unit"], "")
                ref = _e(m.get("norm_reference") or m.get("normal_source"))
                norm = f"{m['normal'][0]:g} to {m['normal'][1]:g}{unit} <span class='muted'>({ref})</span>"
                if m.get("reliable", True) is False:
                    why = "; ".join(m.get("unreliable_because") or [])
                    out.append(
                        f"<tr class='withheld'><td title='{_e(m.get('title'))}'>{_e(k)}</td>"
                        f"<td colspan='4' class='muted'>not reported: {_e(why)}</td></tr>"
                    )
                    continue
                hw = f" &plusmn; {m['half_width']:.2f}" if m.get("half_width") is not None else ""
                status = m.get("status") or ""
                sts = m.get("interval_statuses") or []
                cls = f"{m['class']}: {_e(m['class_name'])}" if m.get("class") else ""
                ics = m.get("interval_classes") or []
                st_cell = f"<td class='{_e(status)}'>{_e(status)}</td>"
                if len(sts) > 1:
                    st_cell = f"<td class='muted'>not settled: interval reaches {_e(' / '.join(sts))}</td>"
                if len(ics) > 1:
                    cls = (
                        f"<span class='muted'>not settled: interval spans classes {_e(', '.join(map(str, ics)))}</span>"
                    )
                out.append(
                    f"<tr><td title='{_e(m.get('title'))}'>{_e(k)}</td><td class='num'>"
                    f"{_fmt(m.get('value'))}{hw}{unit}</td><td title='{_e(m.get('normal_source'))}'>{norm}</td>"
                    f"{st_cell}<td>{cls}</td></tr>"
                )
            out.append("</table>")
            out.append(
                "<p class='muted'>vs norm: against the range of the named reference. ISBI 2015 class: the "
                "challenge's classes (Wang et al. 2016), independent of the norm column (an ANB of 2&deg; is "
                "normal after Steiner and ISBI class 3).</p>"
            )
            if any(m.get("half_width") is not None for m in meas.values()):
                out.append(
                    "<p class='muted'>&plusmn;: interval from the landmark radii (first-order worst case "
                    "over the radius disks). Where it crosses a norm or class edge, the status or class is "
                    "shown as not settled.</p>"
                )
        out.append(
            "<details><summary>landmarks</summary><table><tr><th>landmark</th><th>x (px)</th><th>y (px)</th>"
            "<th>confidence</th><th>radius (mm)</th><th>flags</th></tr>"
        )
        for lm in r["landmarks"]:
            out.append(
                f"<tr><td>{_e(lm['symbol'])} {_e(lm['name'])}</td><td class='num'>{_fmt(lm['x'], 1)}</td>"
                f"<td class='num'>{_fmt(lm['y'], 1)}</td><td class='num'>{_fmt(lm['confidence'], 3)}</td>"
                f"<td class='num'>{_fmt(lm.get('radius_mm'))}</td><td>{_flags(lm.get('flags', []))}</td></tr>"
            )
        out.append("</table></details></div></div>")
    out.append(
        "<p class='muted'>Generated by cephalo predict"
        f"{(': <code>' + _e(info.get('command')) + '</code>') if info.get('command') else ''}. "
        "A decision aid: every flagged item needs a clinician's check.</p></body></html>"
    )
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(out), encoding="utf-8")
    return path
