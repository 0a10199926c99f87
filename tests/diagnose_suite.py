"""Seeded suite of prediction files with known coordinate mistakes, for ``cephalo diagnose``.

Every mistake is written here by hand with numpy, the way an outside pipeline would make it (a
letterbox mapped ``x * scale + pad``, a heatmap read ``x_letterbox / 4``, ``x / width``, ...),
never with ``cephalo.geometry``. The ground truth is a demo-like synthetic set (three devices with
different image sizes and spacings) and, where ``../shared/data`` exists, the expert labels of ISBI
2015 and of the Hamedan clinic (labels only, no images). Each file is diagnosed with
:func:`cephalo.evaluate.mistakes.explain` and scored:

* named right: every group with a mistake gets exactly its mistakes (or an equally fitting reading
  that lists them), no other group gets any, and the MRE once undone is within 0.02 mm of the
  correct file's;
* named wrong: something claimed, but not that; missed: nothing claimed where there was a
  mistake; invented: a mistake claimed for a group (or file) that had none.

    python tests/diagnose_suite.py --out docs/diagnose_confusion.md [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
SHARED_DATA = HERE.parent.parent / "shared" / "data"

from cephalo.evaluate.mistakes import explain  # noqa: E402
from cephalo.evaluate.mistakes.search import Explanation  # noqa: E402
from cephalo.evaluate.mistakes.words import components  # noqa: E402

NOISE_MM = 1.5  # MRE of the correct predictions (a decent model)
#: landmark order of "another catalogue": the 19 ISBI landmarks in the order Aariz lists them
OTHER_ORDER = [10, 0, 1, 3, 2, 4, 9, 11, 12, 5, 6, 7, 8, 13, 14, 15, 16, 18, 17]


@dataclass
class Data:
    name: str
    gt: np.ndarray  # (N, K, 2) px
    sp: np.ndarray  # (N, 2) mm/px
    wh: np.ndarray  # (N, 2) int
    device: np.ndarray  # (N,) str


def demo_data(n_per=10, seed=0) -> Data:
    """Three devices: portrait 1935 x 2400 at 0.1, 1340 x 1671 at 0.127, landscape 2100 x 1700 at 0.14 mm/px."""
    rng = np.random.default_rng(seed)
    template = rng.uniform([0.25, 0.2], [0.8, 0.85], size=(19, 2))  # fractions of a 200 x 240 mm head field
    devs = [("A", 1935, 2400, 0.1), ("B", 1340, 1671, 0.127), ("C", 2100, 1700, 0.14)]
    gt, sp, wh, dev = [], [], [], []
    for name, w, h, s in devs:
        for _ in range(n_per):
            head_mm = template * [190.0, 230.0] + rng.normal(0, 4, (1, 2)) + rng.normal(0, 3, (19, 2))
            centre = np.array([w, h]) * s / 2 - np.array([95.0, 115.0])
            gt.append((head_mm + centre) / s)
            sp.append([s, s])
            wh.append([w, h])
            dev.append(name)
    return Data("demo", np.array(gt), np.array(sp, float), np.array(wh), np.array(dev, dtype=object))


def seven_data(n_per=6, seed=3) -> Data:
    """Seven devices (as in Aariz): different sizes (portrait, square, landscape) and spacings 0.1-0.14."""
    rng = np.random.default_rng(seed)
    template = rng.uniform([0.25, 0.2], [0.8, 0.85], size=(19, 2))
    devs = [
        (1935, 2400, 0.1),
        (1340, 1671, 0.127),
        (2100, 1700, 0.14),
        (1800, 2200, 0.11),
        (2000, 2000, 0.12),
        (1600, 1900, 0.13),
        (2400, 1900, 0.1),
    ]
    gt, sp, wh, dev = [], [], [], []
    for i, (w, h, s) in enumerate(devs):
        for _ in range(n_per):
            head = template * [190.0, 230.0] + rng.normal(0, 4, (1, 2)) + rng.normal(0, 3, (19, 2))
            gt.append((head + np.array([w, h]) * s / 2 - [95.0, 115.0]) / s)
            sp.append([s, s])
            wh.append([w, h])
            dev.append(f"d{i}")
    return Data("seven", np.array(gt), np.array(sp, float), np.array(wh), np.array(dev, dtype=object))


def isbi_data(n=40) -> Data | None:
    root = SHARED_DATA / "isbi2015" / "AnnotationsByMD" / "400_mean"
    if not root.is_dir():
        return None
    gt = [np.loadtxt(root / f"{i:03d}.txt", delimiter=",")[:19] for i in range(1, n + 1)]
    return Data(
        "isbi",
        np.array(gt, float),
        np.full((n, 2), 0.1),
        np.tile([1935, 2400], (n, 1)),
        np.array(["isbi"] * n, dtype=object),
    )


def hamedan_data(n=40) -> Data | None:
    root = SHARED_DATA / "hamedan" / "annotated by Dr.farhadifar"
    if not root.is_dir():
        return None
    gt = []
    for f in sorted(root.glob("*.json")):
        pts = {}
        for s in json.loads(f.read_text())["shapes"]:
            pts.setdefault(s["label"], s["points"][0])
        if all(f"l{k}" in pts for k in range(1, 20)):
            gt.append([pts[f"l{k}"] for k in range(1, 20)])
        if len(gt) == n:
            break
    n = len(gt)
    return Data(
        "hamedan",
        np.array(gt, float),
        np.full((n, 2), 0.127),
        np.tile([1340, 1671], (n, 1)),
        np.array(["hamedan"] * n, dtype=object),
    )


def mixed_data(isbi: Data, ham: Data, demo: Data) -> Data:
    """Three devices of real labels: ISBI, Hamedan and the demo's landscape device."""
    parts = [(isbi, slice(0, 15)), (ham, slice(0, 15)), (demo, np.flatnonzero(demo.device == "C"))]
    cat = lambda f: np.concatenate([f(d)[s] for d, s in parts])  # noqa: E731
    return Data(
        "mixed",
        cat(lambda d: d.gt),
        cat(lambda d: d.sp),
        cat(lambda d: d.wh),
        np.concatenate(
            [np.array([d.name if d is not demo else "demo-C"] * len(d.gt[s]), dtype=object) for d, s in parts]
        ),
    )


# ---------------------------------------------------------------------------------------------
# the mistakes, as outside pipelines make them: (w, h, sp, p (K, 2) px) -> file values, units


def letterbox(size, pad="centre", conv="centre", new="int"):
    def f(w, h, sp, p):
        scale = min(size / w, size / h)
        rnd = int if new == "int" else round
        nw, nh = rnd(w * scale), rnd(h * scale)
        px, py = ((size - nw) // 2, (size - nh) // 2) if pad == "centre" else (0, 0)
        if conv == "hf":  # the public HRNet's labels
            return np.stack([p[:, 0] * scale + px, p[:, 1] * scale + py], -1)
        return np.stack([(p[:, 0] + 0.5) * nw / w - 0.5 + px, (p[:, 1] + 0.5) * nh / h - 0.5 + py], -1)

    f.frame_size = (size, size)
    return f


def stretch(sw, sh, conv="centre"):
    def f(w, h, sp, p):
        if conv == "corner":
            return np.stack([p[:, 0] * sw / w, p[:, 1] * sh / h], -1)
        return np.stack([(p[:, 0] + 0.5) * sw / w - 0.5, (p[:, 1] + 0.5) * sh / h - 0.5], -1)

    f.frame_size = (sw, sh)
    return f


def heatmap(size, conv="centre", rounding=None, pad="centre"):
    lb = letterbox(size, pad, "centre" if conv == "centre" else "hf")

    def f(w, h, sp, p):
        x = lb(w, h, sp, p)
        x = (x + 0.5) / 4 - 0.5 if conv == "centre" else x / 4
        return np.round(x) if rounding == "round" else np.floor(x) if rounding == "floor" else x

    f.frame_size = (size // 4, size // 4)
    return f


def heatmap_back(size, conv="centre", rounding=None, pad="centre"):
    """The correct reading of :func:`heatmap` values (how a right pipeline maps its integer cells back)."""

    def f(w, h, sp, x):
        x = x + 0.5 if rounding == "floor" else x
        x = (x + 0.5) * 4 - 0.5 if conv == "centre" else x * 4
        scale = min(size / w, size / h)
        nw, nh = int(w * scale), int(h * scale)
        px, py = ((size - nw) // 2, (size - nh) // 2) if pad == "centre" else (0, 0)
        if conv == "centre":
            return np.stack([(x[:, 0] - px + 0.5) * w / nw - 0.5, (x[:, 1] - py + 0.5) * h / nh - 0.5], -1)
        return np.stack([(x[:, 0] - px) / scale, (x[:, 1] - py) / scale], -1)

    return f


def normalised(half=False):
    """x / width of the frame the coordinates are in (the image, or the network input)."""

    def f(w, h, sp, p):
        return np.stack([(p[:, 0] + 0.5 * half) / w, (p[:, 1] + 0.5 * half) / h], -1)

    f.normalises = True
    return f


def swap(w, h, sp, p):
    return p[:, ::-1]


def mirror(w, h, sp, p):
    return np.stack([w - 1 - p[:, 0], p[:, 1]], -1)


def flip_ud(w, h, sp, p):
    return np.stack([p[:, 0], h - 1 - p[:, 1]], -1)


def mm(w, h, sp, p):
    return p * sp


def scale(c):
    return lambda w, h, sp, p: p * c


def offset(dx, dy):
    return lambda w, h, sp, p: p + [dx, dy]


# (function, codes, units of the file's columns); "px_mm" = pixels written in x_mm columns, "const" = mm
# made with one spacing of 0.1 mm/px, "order" = the landmarks in another catalogue's order
MIS = {
    "letterbox768_hf": (letterbox(768, conv="hf"), {"letterbox_frame"}),
    "letterbox768": (letterbox(768), {"letterbox_frame"}),
    "letterbox512": (letterbox(512), {"letterbox_frame"}),
    "letterbox1024_topleft_hf": (letterbox(1024, pad="tl", conv="hf"), {"letterbox_frame"}),
    "letterbox640_topleft": (letterbox(640, pad="tl"), {"letterbox_frame"}),
    "letterbox256_round": (letterbox(256, new="round"), {"letterbox_frame"}),
    "stretch512": (stretch(512, 512), {"stretch_frame"}),
    "stretch768x640_corner": (stretch(768, 640, "corner"), {"stretch_frame"}),
    "heatmap768": (heatmap(768), {"heatmap_frame"}),
    "heatmap256_corner": (heatmap(256, "corner"), {"heatmap_frame"}),
    "heatmap1024_corner_floor": (
        heatmap(1024, "corner", "floor"),
        {"heatmap_frame"},
        heatmap_back(1024, "corner", "floor"),
    ),
    "heatmap512_round": (heatmap(512, "centre", "round"), {"heatmap_frame"}, heatmap_back(512, "centre", "round")),
    "heatmap512_topleft_corner": (heatmap(512, "corner", pad="tl"), {"heatmap_frame"}),
    "normalised": (normalised(), {"normalised"}),
    "normalised_half": (normalised(True), {"normalised"}),
    "swap": (swap, {"swapped_axes"}),
    "mirror": (mirror, {"mirror"}),
    "upside_down": (flip_ud, {"mirror"}),
    "mm": (mm, {"mm_not_px"}),
    "px_mm": (None, {"px_as_mm"}),
    "const": (None, {"constant_spacing"}),
    "scale1.1": (scale(1.1), {"global_scale"}),
    "offset": (offset(60, -40), {"residual_offset"}),
    "order": (None, {"landmark_order"}),
}
FRAMES = ["letterbox768_hf", "letterbox1024_topleft_hf", "stretch512", "heatmap256_corner", "heatmap768"]
OTHERS = ["swap", "mirror", "normalised", "mm", "const", "order"]


@dataclass
class Case:
    name: str
    data: Data
    steps: tuple  # names in MIS, applied in order
    device: str = ""  # only this device's images carry the mistake
    kind: str = "mistake"  # mistake | correct | bad8 | bad20 | bias | messy
    expected: dict = field(default_factory=dict)
    seed: int = 0  # added to the suite's seed (several noise draws of the files without a mistake)


def _good(d: Data, kind: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    sigma = {"bad8": 8.0, "bad20": 20.0}.get(kind, NOISE_MM) / np.sqrt(np.pi / 2)
    mm_err = rng.normal(0, sigma, d.gt.shape)
    if kind == "bias":  # a bad model: each landmark off by its own 4 mm bias, 3 mm scatter
        b = rng.normal(0, 4.0, (1, d.gt.shape[1], 2))
        mm_err = b + rng.normal(0, 3.0 / np.sqrt(np.pi / 2), d.gt.shape)
    return d.gt + mm_err / d.sp[:, None, :]


def _pipeline_order(step: str) -> int:
    """Where a pipeline makes each mistake: mirror the image, frame, unit, axis order, landmark order."""
    if step in ("mirror", "upside_down"):
        return 0
    if step.startswith(("letterbox", "stretch", "heatmap")):
        return 1
    return {"swap": 3, "order": 4}.get(step, 2)


def make_file(case: Case, seed: int) -> tuple[dict, np.ndarray, str]:
    """``({"": pred, "other": re-read}, correct px, units)`` as the CLI would hand them over."""
    d = case.data
    good = _good(d, case.kind, seed)
    units = "px"
    vals = good.copy()
    rows = np.ones(len(d.gt), bool) if not case.device else d.device == case.device
    order = "order" in case.steps
    frame_wh = None
    for step in sorted(case.steps, key=_pipeline_order):
        if step == "order":
            continue
        if step == "px_mm":
            units = "mm"
            vals[rows] = vals[rows] / d.sp[rows, None, :]  # px written as mm, read back with each spacing
            continue
        if step == "const":
            units = "mm"
            vals[rows] = vals[rows] * 0.1 / d.sp[rows, None, :]
            continue
        fn = MIS[step][0]
        for i in np.flatnonzero(rows):
            w, h = (int(v) for v in d.wh[i])
            if getattr(fn, "normalises", False) and frame_wh:  # normalised by the network input's size
                w, h = frame_wh
            vals[i] = fn(w, h, d.sp[i], vals[i])
        frame_wh = getattr(fn, "frame_size", frame_wh)
    if order:
        vals = vals[:, OTHER_ORDER]
    if case.kind == "messy":
        rng = np.random.default_rng(seed + 1)
        vals[rng.random(vals.shape[:2]) < 0.1] = np.nan
        vals[:3] = np.nan
    alt = np.full_like(vals, np.nan)
    alt[:, OTHER_ORDER] = vals  # the file's k-th landmark read as the other catalogue's k-th
    return {"": vals, "other": alt}, good, units


#: compositions that are the same coordinates as a simpler one: normalising the coordinates of a
#: stretched input gives the image's normalised coordinates; a heatmap's, the letterbox input's
SAME_AS = {
    frozenset({"stretch_frame", "normalised"}): [{"normalised"}],
    frozenset({"heatmap_frame", "normalised"}): [{"letterbox_frame", "normalised"}],
}


def expected_of(case: Case) -> dict:
    if case.kind != "mistake":
        return {}
    codes = set().union(*(MIS[s][1] for s in case.steps))
    return {(f"device={case.device}" if case.device else ""): [codes] + SAME_AS.get(frozenset(codes), [])}


def cases(quick: bool = False) -> list[Case]:
    demo = demo_data()
    sets = [demo] + [d for d in (isbi_data(), hamedan_data()) if d is not None]
    out = []
    for d in sets:
        for m in MIS:
            if m != "const" or len(set(d.sp[:, 0])) > 1:
                out.append(Case(f"{d.name}/{m}", d, (m,)))
        # one constant spacing is only a mistake where the images' spacings differ (on one device it is
        # the right spacing, or a global scale)
        others = OTHERS if len(set(d.sp[:, 0])) > 1 else [o for o in OTHERS if o != "const"]
        pairs = [(f, o) for f in FRAMES for o in others]
        pairs += [
            ("swap", "mirror"),
            ("mirror", "swap"),
            ("normalised", "swap"),
            ("mm", "swap"),
            ("mirror", "mm"),
            ("mirror", "normalised"),
            ("swap", "order"),
            ("mirror", "order"),
            ("normalised", "order"),
            ("mm", "order"),
            ("px_mm", "mirror"),
            ("px_mm", "swap"),
        ]
        pairs += [("const", "swap"), ("const", "mirror"), ("const", "order")] if "const" in others else []
        for a, b in pairs:
            out.append(Case(f"{d.name}/{a}+{b}", d, (a, b)))
        for k in ("correct", "bad8", "bad20", "bias", "messy"):
            for j in range(3):
                out.append(Case(f"{d.name}/{k}" + (f"#{j}" if j else ""), d, (), kind=k, seed=j))
    devsets = [demo, seven_data()]
    if len(sets) == 3:
        devsets.append(mixed_data(sets[1], sets[2], demo))
    for d in devsets:
        for m in (
            "mirror",
            "mm",
            "letterbox768",
            "swap",
            "stretch512",
            "heatmap256_corner",
            "normalised",
            "letterbox1024_topleft_hf",
        ):
            dev = list(dict.fromkeys(d.device))[1 if d.name != "seven" else 3]
            out.append(Case(f"{d.name}/{m}@{dev}", d, (m,), device=dev))
        out.append(Case(f"{d.name}/correct-devices", d, (), kind="correct"))
    for c in out:
        c.expected = expected_of(c)
    if quick:
        out = out[::7]
    return out


def _codes(ex: Explanation) -> set:
    c = {x[0] for x in components(ex.structure)}
    if ex.residual:
        c.add("residual_" + ex.residual[0])
    return c


def _reference(case: Case, good: np.ndarray) -> np.ndarray | None:
    """Correct predictions that went through the same integer heatmap cells, read back right."""
    steps = [s for s in case.steps if len(MIS[s]) > 2]
    if not steps:
        return None
    fwd, _, back = MIS[steps[0]]
    d, out = case.data, good.copy()
    rows = np.ones(len(d.gt), bool) if not case.device else d.device == case.device
    for i in np.flatnonzero(rows):
        w, h = (int(v) for v in d.wh[i])
        out[i] = back(w, h, d.sp[i], fwd(w, h, d.sp[i], good[i]))
    return out


def score(case: Case, seed: int = 0) -> dict:
    pred, good, units = make_file(case, seed + 101 * case.seed)
    d = case.data
    t0 = time.perf_counter()
    found, undone = explain(pred, d.gt, d.sp, d.wh, groups={"device": d.device}, units=units)
    dt = time.perf_counter() - t0
    ok = np.isfinite(pred[""]).all(-1) if "order" not in case.steps else np.isfinite(pred["other"]).all(-1)
    e_good = np.hypot(*((good - d.gt) * d.sp[:, None, :]).transpose(2, 0, 1))
    e_after = np.hypot(*((undone - d.gt) * d.sp[:, None, :]).transpose(2, 0, 1))
    ref = _reference(case, good)
    if ref is not None:  # integer heatmap cells: the correct file is the one read back right
        e_good = np.hypot(*((ref - d.gt) * d.sp[:, None, :]).transpose(2, 0, 1))
    mre_good = float(np.nanmean(np.where(ok, e_good, np.nan)))
    mre_after = float(np.nanmean(e_after))
    claimed = {lab: _codes(ex) for lab, ex in found if _codes(ex)}
    alts = {lab: [{x[0] for x in components(a)} for a in ex.alternatives] for lab, ex in found}
    exp = case.expected
    extra = [lab for lab in claimed if lab not in exp]
    if extra:
        verdict = "invented"
    elif not claimed and exp:
        verdict = "missed"
    elif not exp:
        verdict = "none"
    else:
        right = all(
            lab in claimed and any(claimed[lab] == c or c in alts.get(lab, []) for c in same)
            for lab, same in exp.items()
        )
        close = abs(mre_after - mre_good) <= 0.02
        verdict = "right" if right and close else "wrong"
    return {
        "case": case.name,
        "verdict": verdict,
        "claimed": {k: sorted(v) for k, v in claimed.items()},
        "expected": {k: sorted(v[0]) for k, v in exp.items()},
        "mre_after": mre_after,
        "mre_good": mre_good,
        "seconds": dt,
    }


def run(quick: bool = False, seed: int = 0) -> list[dict]:
    return [score(c, seed) for c in cases(quick)]


def table(res: list[dict]) -> str:
    kinds = {}
    for r in res:
        k = "mistake files" if r["expected"] else "files without a mistake"
        kinds.setdefault(k, {"right": 0, "wrong": 0, "missed": 0, "invented": 0, "none": 0})[r["verdict"]] += 1
    t = [
        "| files | n | named right | named wrong | missed | invented | nothing claimed (correct) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for k, v in kinds.items():
        t.append(
            f"| {k} | {sum(v.values())} | {v['right']} | {v['wrong']} | {v['missed']} | {v['invented']} | {v['none']} |"
        )
    return "\n".join(t)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="Markdown file for the confusion table")
    ap.add_argument("--quick", action="store_true", help="every 7th file only")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    res = run(a.quick, a.seed)
    bad = [r for r in res if r["verdict"] in ("wrong", "missed", "invented")]
    text = [
        "# `cephalo diagnose`: confusion table of the seeded suite",
        "",
        f"Generated by `python tests/diagnose_suite.py --out docs/diagnose_confusion.md` (seed {a.seed}, "
        f"{len(res)} files, {time.perf_counter() - t0:.0f} s; real labels "
        + ("present" if isbi_data() is not None else "absent: demo-like data only")
        + ").",
        "",
        table(res),
        "",
    ]
    if bad:
        text += [
            "## Files not named right",
            "",
            "| file | verdict | expected | claimed | MRE after / correct (mm) |",
            "| --- | --- | --- | --- | --- |",
        ]
        text += [
            f"| {r['case']} | {r['verdict']} | {r['expected']} | {r['claimed']} | "
            f"{r['mre_after']:.3f} / {r['mre_good']:.3f} |"
            for r in bad
        ]
    out = "\n".join(text) + "\n"
    if a.out:
        a.out.write_text(out)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
