#!/usr/bin/env python
"""Write (or check) a generated results block in README.md from a pipeline's ``results/`` folder.

    python scripts/readme_results.py --block demo                      # after scripts/demo.sh
    python scripts/readme_results.py --block real --results /path/to/real/results
    python scripts/readme_results.py --block demo --check              # CI: README == a fresh run

The block sits between ``<!-- results:<block>:begin -->`` and ``<!-- results:<block>:end -->``
and holds: the machine and library versions the figures were produced with (from the runs'
``metrics.json`` provenance), the table of ``results/comparison.csv`` (figures over the landmarks
all runs share, and over all of each run's landmarks), the human figures like with like, and
plain sentences worded from those figures; a JSON comment keeps the exact figures and CIs.

``--check`` regenerates the block from ``--results`` and compares it with the README's:

* same CPU model (name, family, model, stepping) as the one the block records: the text must be
  identical but for the commit it was generated at (the demo is deterministic on one machine);
* another CPU model (float rounding differs between CPUs): counts must be equal, human figures
  (model-free) equal to 1e-6 mm, and every model figure within the half-width of its own 95 %
  bootstrap CI recorded in the block (the stated tolerance), or, for an SDR, within one landmark
  (``100 / (n_images x n_landmarks)`` %: the smallest change an SDR can show; a CI of zero width,
  e.g. every landmark inside 3 mm, would otherwise fail on one landmark moving across the threshold).

Exit status 0 when the block is current, 1 (with the differences) when not, 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

import pandas as pd

BEGIN, END = "<!-- results:{}:begin -->", "<!-- results:{}:end -->"
DATA = re.compile(r"<!-- results-data (\{.*?\}) -->", re.S)
#: figures compared with a tolerance: name -> its CI bounds' names
CI_FIGURES = {
    f"{base}/{s}": (f"{base}/{s}/ci95_lo", f"{base}/{s}/ci95_hi")
    for base in ("mre_mm", "sdr_2.0mm", "sdr_2.5mm", "sdr_3.0mm", "sdr_4.0mm")
    for s in ("shared", "all")
}
COUNTS = ("n_images", "n_landmarks/shared", "n_landmarks/all")
HUMAN = ("human_mre_mm/shared", "human_vs_mean_mre_mm/shared")
#: model figures without their own CI (compared with the MRE's CI half-width)
MODEL_NO_CI = ("vs_each_mre_mm/shared",)


def _f(v, nd=2) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.{nd}f}"


def _ci(r, key, nd=2) -> str:
    v, lo, hi = r.get(key), r.get(key + "/ci95_lo"), r.get(key + "/ci95_hi")
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    s = _f(v, nd)
    if lo is not None and hi is not None and math.isfinite(lo) and math.isfinite(hi):
        s += f" [{_f(lo, nd)}, {_f(hi, nd)}]"
    return s


def _clean(d: dict) -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        elif hasattr(v, "item"):
            v = v.item()
        out[k] = v
    return out


def load(results: Path) -> tuple[list[dict], list[dict], dict]:
    """(rows of comparison.csv, paired tests, provenance of the first run) from a results folder.

    Raises:
        SystemExit(2): no comparison.csv (run the pipeline first).
    """
    csv = results / "comparison.csv"
    if not csv.is_file():
        raise SystemExit(f"error: {csv} not found: run the pipeline (scripts/demo.sh) first")
    rows = [_clean(r) for r in pd.read_csv(csv).to_dict("records")]
    pp = results / "comparison_pairs.csv"
    pairs = [_clean(r) for r in pd.read_csv(pp).to_dict("records")] if pp.is_file() and pp.stat().st_size > 10 else []
    prov = {}
    for r in rows:
        m = results / "eval" / str(r["run"]) / "metrics.json"
        if m.is_file():
            prov = json.loads(m.read_text()).get("provenance") or {}
            if prov:
                break
    return rows, pairs, prov


def _pair(pairs: list[dict], a: str, b: str) -> str:
    p = next((q for q in pairs if {q["run_a"], q["run_b"]} == {a, b}), None)
    return f", paired Wilcoxon p = {p['p_value']:.2g} over {p['n_images']} images" if p else ""


def _vs_annotators(r: dict, label: str) -> str | None:
    h, e = r.get("human_mre_mm/shared"), r.get("vs_each_mre_mm/shared")
    if h is None or e is None or not (math.isfinite(h) and math.isfinite(e)):
        return None
    rel = e / h
    word = (
        "level with them"
        if abs(rel - 1) <= 0.05
        else "closer to each annotator than they are to each other"
        if rel < 1
        else "farther from each annotator than they are from each other"
    )
    hm = r.get("human_vs_mean_mre_mm/shared")
    return (
        f"Against each annotator, {label} is at {_f(e)} mm where the annotators are "
        f"{_f(h)} mm apart: {word} ({rel:.2f}x). Against their mean it is at "
        f"{_f(r['mre_mm/shared'])} mm, where an annotator is at {_f(hm)} mm."
    )


def _sentences(rows: list[dict], pairs: list[dict]) -> list[str]:
    """Claims worded from the figures: fine-tuned vs zero-shot over the shared landmarks, refined vs the
    global model it refines (same images, paired), and each model against each annotator beside the
    annotators' own distance."""
    by = {r["run"]: r for r in rows}
    out = []
    for r in rows:
        run = str(r["run"])
        pre = next((p for p in ("finetune-", "finetuned-") if run.startswith(p)), None)
        if pre is None:
            continue
        v = run[len(pre) :]
        z = by.get(f"zero_shot-{v}") or by.get(f"zeroshot-{v}")
        n = r.get("n_landmarks/shared")
        if z is not None:
            ratio = z["mre_mm/shared"] / r["mre_mm/shared"] if r.get("mre_mm/shared") else float("nan")
            out.append(
                f"Over the {n} landmarks all runs share, fine-tuned ({v}) {_f(r['mre_mm/shared'])} mm vs "
                f"zero-shot {_f(z['mre_mm/shared'])} mm ({ratio:.1f}x lower{_pair(pairs, run, z['run'])}); "
                f"over all its {r['n_landmarks/all']} landmarks the fine-tuned model is at "
                f"{_f(r['mre_mm/all'])} mm."
            )
        s = _vs_annotators(r, f"fine-tuned ({v})")
        if s:
            out.append(s)
    # refinement: each refined run beside the global model it refines
    for r in rows:
        run = str(r["run"])
        if run.startswith("refine_source-"):
            ds = run[len("refine_source-") :]
            g, label = by.get("source-" + ds), f"source model ({ds} {r.get('split') or 'test'})"
        elif run.startswith("refine-"):
            g, label = by.get("finetune-" + run[len("refine-") :]), f"fine-tuned ({run[len('refine-') :]})"
        else:
            continue
        if g is None or not g.get("mre_mm/shared"):
            continue
        out.append(
            f"Refinement at native resolution, {label}: {_f(r['mre_mm/all'])} mm "
            f"(SDR@2 mm {_f(r.get('sdr_2.0mm/all'), 1)} %) vs {_f(g['mre_mm/all'])} mm "
            f"(SDR@2 mm {_f(g.get('sdr_2.0mm/all'), 1)} %) for the global model alone "
            f"({g['mre_mm/all'] / r['mre_mm/all']:.2f}x lower{_pair(pairs, run, g['run'])})."
        )
        s = _vs_annotators(r, f"refined ({run})")
        if s:
            out.append(s)
    return out


def render(name: str, rows: list[dict], pairs: list[dict], prov: dict, command: str) -> str:
    """The block's content (without the begin/end markers)."""
    pk = prov.get("packages") or {}
    machine = (
        f"{prov.get('cpu_model') or '?'}, {prov.get('threads') or '?'} torch threads"
        + (f", GPU {prov['gpu_name']}" if prov.get("gpu_name") else "")
        + f"; Python {prov.get('python') or '?'}, "
        + ", ".join(f"{k} {pk[k]}" for k in ("torch", "torchvision", "timm", "albumentations", "numpy") if k in pk)
        + f"; cephalo {prov.get('cephalo_version') or '?'} at {(prov.get('git_commit') or '?')[:10]}"
        + ("+dirty" if prov.get("git_dirty") else "")
    )
    thr = "2.0"
    lines = [
        f"Generated by `python scripts/readme_results.py --block {name}` from `results/` of `{command}`.",
        f"Machine: {machine}.",
        "",
        "| run | images | landmarks shared / all | MRE mm, shared | MRE mm, all | SDR@2 mm %, shared | "
        "vs each annotator mm | annotators apart mm | annotator vs mean mm |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['run']} | {r.get('n_images')} | {r.get('n_landmarks/shared')} / {r.get('n_landmarks/all')} | "
            f"{_ci(r, 'mre_mm/shared')} | {_ci(r, 'mre_mm/all')} | {_ci(r, f'sdr_{thr}mm/shared', 1)} | "
            f"{_f(r.get('vs_each_mre_mm/shared'))} | {_f(r.get('human_mre_mm/shared'))} | "
            f"{_f(r.get('human_vs_mean_mre_mm/shared'))} |"
        )
    lines.append("")
    lines += [f"- {s}" for s in _sentences(rows, pairs)]
    keep = (
        ("run",) + COUNTS + HUMAN + MODEL_NO_CI + tuple(CI_FIGURES) + tuple(x for v in CI_FIGURES.values() for x in v)
    )
    data = {"cpu_model": prov.get("cpu_model"), "runs": [{k: r.get(k) for k in keep if k in r} for r in rows]}
    lines.append(f"<!-- results-data {json.dumps(data, sort_keys=True)} -->")
    return "\n".join(lines) + "\n"


def extract(readme: str, name: str) -> str | None:
    b, e = BEGIN.format(name), END.format(name)
    if b not in readme or e not in readme:
        return None
    return readme.split(b, 1)[1].split(e, 1)[0].lstrip("\n")


def replace(readme: str, name: str, block: str) -> str:
    """README text with the block replaced (or appended at the end when absent)."""
    b, e = BEGIN.format(name), END.format(name)
    new = f"{b}\n{block}{e}"
    if b in readme and e in readme:
        head, rest = readme.split(b, 1)
        return head + new + rest.split(e, 1)[1]
    return readme.rstrip("\n") + "\n\n" + new + "\n"


def compare_blocks(recorded: str, fresh: str, cpu_model: str | None) -> list[str]:
    """Differences between the README's block and a fresh one (empty = current); see the module doc."""
    m_old, m_new = DATA.search(recorded), DATA.search(fresh)
    if not m_old or not m_new:
        return ["the block has no results-data record: regenerate it"]
    old, new = json.loads(m_old.group(1)), json.loads(m_new.group(1))
    same_cpu = old.get("cpu_model") == (cpu_model or new.get("cpu_model"))
    if same_cpu:
        # the commit the block was generated at is not a figure: a check at a later commit compares the rest
        recorded, fresh = (
            re.sub(r" at [0-9a-f?]{1,40}(\+dirty)?\.$", ".", b.strip(), flags=re.M) for b in (recorded, fresh)
        )
        if recorded != fresh:
            import difflib

            diff = difflib.unified_diff(
                recorded.strip().splitlines(), fresh.strip().splitlines(), "README", "fresh", lineterm="", n=0
            )
            return [f"same CPU ({old.get('cpu_model')}): the block must be identical"] + list(diff)[:40]
        return []
    problems = []
    o_runs, n_runs = {r["run"]: r for r in old["runs"]}, {r["run"]: r for r in new["runs"]}
    if sorted(o_runs) != sorted(n_runs):
        return [f"runs differ: README {sorted(o_runs)} vs fresh {sorted(n_runs)}"]
    for run, o in o_runs.items():
        n = n_runs[run]
        for k in COUNTS:
            if o.get(k) != n.get(k):
                problems.append(f"{run} {k}: README {o.get(k)} vs fresh {n.get(k)}")
        for k in HUMAN:
            a, b = o.get(k), n.get(k)
            if (a is None) != (b is None) or (a is not None and abs(a - b) > 1e-6):
                problems.append(f"{run} {k} (no model involved): README {a} vs fresh {b}")
        for k, (lo, hi) in CI_FIGURES.items():
            a, b = o.get(k), n.get(k)
            if a is None and b is None:
                continue
            if a is None or b is None or o.get(lo) is None or o.get(hi) is None:
                problems.append(f"{run} {k}: README {a} vs fresh {b}")
                continue
            tol = (o[hi] - o[lo]) / 2
            if k.startswith("sdr_"):  # an SDR moves in steps of one landmark
                n_points = (o.get("n_images") or 0) * (o.get(f"n_landmarks/{k.rsplit('/', 1)[1]}") or 0)
                tol = max(tol, 100.0 / n_points if n_points else 0.0)
            if abs(a - b) > tol + 1e-9:
                problems.append(f"{run} {k}: README {a:.4g} vs fresh {b:.4g}, beyond the CI half-width {tol:.3g}")
        for k in MODEL_NO_CI:
            a, b = o.get(k), n.get(k)
            lo, hi = o.get("mre_mm/shared/ci95_lo"), o.get("mre_mm/shared/ci95_hi")
            if a is not None and b is not None and lo is not None and hi is not None and abs(a - b) > (hi - lo) / 2:
                problems.append(f"{run} {k}: README {a:.4g} vs fresh {b:.4g}, beyond the MRE CI half-width")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--block", required=True, help="block name: demo | real | ...")
    ap.add_argument("--results", type=Path, default=Path("results"), help="the pipeline's results folder")
    ap.add_argument("--readme", type=Path, default=Path("README.md"))
    ap.add_argument("--command", default=None, help="the command that produced the results (shown in the block)")
    ap.add_argument("--check", action="store_true", help="compare instead of write (exit 1 when stale)")
    a = ap.parse_args(argv)
    default_cmd = {
        "demo": "scripts/demo.sh",
        "real": "snakemake --cores 2 --resources gpu=1 --configfile profiles/real.yaml",
    }
    rows, pairs, prov = load(a.results)
    fresh = render(a.block, rows, pairs, prov, a.command or default_cmd.get(a.block, "the pipeline"))
    text = a.readme.read_text()
    if a.check:
        recorded = extract(text, a.block)
        if recorded is None:
            print(f"README has no {a.block} block", file=sys.stderr)
            return 1
        problems = compare_blocks(recorded, fresh, prov.get("cpu_model"))
        for p in problems:
            print(p, file=sys.stderr)
        print(f"{a.block} block: {'stale' if problems else 'current'}")
        return 1 if problems else 0
    new = replace(text, a.block, fresh)
    if new != text:
        tmp = a.readme.with_name(f".{a.readme.name}.tmp")
        tmp.write_text(new)
        tmp.replace(a.readme)
    print(f"{a.readme}: {a.block} block {'written' if new != text else 'unchanged'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
