#!/usr/bin/env python
"""Each component of the real profile's recipe: its effect on validation and test, and its cost.

Reads one finished real-profile run (``snakemake ... --configfile profiles/real.yaml``) and what
``scripts/refine_ablation.py`` measured on its checkpoints (``--ablation``: the JSON beside its
Markdown, with per-image MREs), and writes, per data set, one row per step of the recipe in the
order the pipeline builds it:

- ISBI 2015 Test1: the global model -> + the refiner (one pass) -> + test-time augmentation;
- the target clinic: zero-shot -> fine-tuned -> + the refiner (one pass) -> + test-time augmentation.

Columns: validation MRE (the checkpoint's own validation, ``train.json``, for a trained model; the
ablation's validation images for a refiner setting), test MRE with its 95 % bootstrap interval and
SDR@2 mm (``results/eval/<run>/metrics.json``, or the ablation's test column for the one-pass rows,
which the pipeline does not evaluate), the paired change against the row above on the test images
(mean per-image difference, images improved, Wilcoxon signed-rank p), and the job minutes the step
adds (``--log``, the run's Snakemake log: the rules that build it) or, for test-time augmentation,
the extra evaluation seconds the ablation measured. A last line checks that the ablation's
test-time-augmentation row reproduces the pipeline's own evaluation of the same bundle.

    python scripts/ablation_table.py --project /path/to/run --ablation docs/results/refine-ablation.json \\
        --log /path/to/run/.snakemake/log/<time>.snakemake.log --out docs/results/ablation.md
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from refine_ablation import _paired  # noqa: E402  (the paired test: one home)
from run_profile import parse_log  # noqa: E402


@dataclass(frozen=True)
class Step:
    """One row: a pipeline evaluation (``eval_run``) or an ablation setting (``setting``), what it adds."""

    label: str
    eval_run: str | None = None  # results/eval/<eval_run>
    setting: str | None = None  # refine_ablation setting name (test and validation from the ablation)
    valid_setting: str | None = None  # validation from this ablation setting (a pipeline-evaluated refiner)
    valid_model: str | None = None  # results/models/<folder>: validation from its train.json
    rules: tuple[tuple[str, str], ...] = ()  # (rule, wildcard text that must occur, "" = any) adding job minutes
    tta_cost: bool = False  # cost = ablation evaluation seconds of this setting minus one pass


ONE_PASS, TTA = "one pass", "TTA scales x shifts"


def refiner_steps(eval_run: str, rules: tuple[tuple[str, str], ...]) -> tuple[Step, Step]:
    """The refiner in one pass (built by ``rules``), then the profile's test-time augmentation (``eval_run``)."""
    return (
        Step("+ refiner, one pass", setting=ONE_PASS, rules=rules),
        Step("+ test-time augmentation (the profile)", eval_run=eval_run, valid_setting=TTA, tta_cost=True),
    )


CHAINS = {
    "ISBI 2015 (source refiner)": (
        "ISBI 2015 Test1 (in domain)",
        (
            Step("global model", eval_run="source-isbi2015", valid_model="source", rules=(("train_source", ""),)),
            *refiner_steps(
                "refine_source-isbi2015", (("train_refiner_source", ""), ("bundle_refiner", "refine_source"))
            ),
        ),
    ),
    "Hamedan (fine-tuned refiner)": (
        "second clinic 076-100 (target)",
        (
            Step("zero-shot (source model)", eval_run="zero_shot-letterbox384"),
            Step(
                "fine-tuned (letterbox384)",
                eval_run="finetune-letterbox384",
                valid_model="finetune/letterbox384",
                rules=(("finetune", "letterbox384"),),
            ),
            *refiner_steps(
                "refine-letterbox384", (("finetune_refiner", "letterbox384"), ("bundle_refiner", "letterbox384"))
            ),
        ),
    ),
}


def eval_figures(results: Path, run: str) -> dict:
    """Test MRE, its CI, SDR@2 mm (%) and per-image MREs of a pipeline evaluation."""
    folder = results / "eval" / run
    try:
        overall = json.loads((folder / "metrics.json").read_text())["overall"]
        per_image = pd.read_csv(folder / "per_image.csv", dtype={"image_id": str})
    except (OSError, ValueError, KeyError) as e:
        raise SystemExit(f"cephalo: error: {folder}: {e}") from None
    return {
        "mre_mm": overall["mre_mm"],
        "ci95": overall["ci95"]["mre_mm"],
        "sdr2": 100 * overall["sdr"]["2.0"],
        "n_images": overall["n_images"],
        "per_image": dict(zip(per_image["image_id"], per_image["mre_mm"], strict=True)),
    }


def model_validation(results: Path, folder: str) -> tuple[float, int] | None:
    """Best validation MRE (mm) of a training run and its validation image count (``train.json``)."""
    try:
        d = json.loads((results / "models" / folder / "train.json").read_text())
    except (OSError, ValueError):
        return None
    return float(d["best_score"]), int(d.get("n_val") or 0)


def job_minutes(jobs: list[dict], rules: tuple[tuple[str, str], ...]) -> float | None:
    """Summed minutes of the jobs of ``rules`` (a rule's wildcards must contain its text)."""
    picked = [
        j for j in jobs for r, w in rules if j["rule"] == r and w in (j.get("wildcards") or "") and j["end"] is not None
    ]
    if not picked:
        return None
    return sum((j["end"] - j["start"]).total_seconds() for j in picked) / 60


def rows_for(results: Path, run: dict, steps: tuple[Step, ...], jobs: list[dict]) -> list[dict]:
    by_setting = {r["setting"]: r for r in run["rows"]}
    rows: list[dict] = []
    for step in steps:
        if step.setting is not None:
            a = by_setting[step.setting]
            test = {
                "mre_mm": a["test"]["mre_mm"],
                "ci95": a["test"]["ci95"],
                "sdr2": None if a["test"]["sdr2"] is None else 100 * a["test"]["sdr2"],
                "n_images": a["test"]["n_images"],
                "per_image": a["test"]["per_image"],
            }
            valid = (a["valid"]["mre_mm"], a["valid"]["n_images"])
        else:
            test = eval_figures(results, step.eval_run)
            valid = None
            if step.valid_setting is not None:
                v = by_setting[step.valid_setting]["valid"]
                valid = (v["mre_mm"], v["n_images"])
            elif step.valid_model is not None:
                valid = model_validation(results, step.valid_model)
        if step.tta_cost:
            cost = (
                f"+{by_setting[TTA]['test']['seconds'] - by_setting[ONE_PASS]['test']['seconds']:.0f} s per test "
                "evaluation"
            )
        else:
            minutes = job_minutes(jobs, step.rules) if step.rules else None
            cost = "-" if minutes is None else f"{minutes:.1f} min"
        paired = _paired(rows[-1]["test"]["per_image"], test["per_image"]) if rows else None
        rows.append({"label": step.label, "valid": valid, "test": test, "paired": paired, "cost": cost})
    return rows


def render(ablation_path: Path, tables: list[tuple[str, list[dict], str]]) -> str:
    lines = [
        "Generated by `python scripts/ablation_table.py` from a real-profile run's `results/` "
        f"and `{ablation_path.name}`. Each row adds one step to the row above; "
        '"paired" compares the two on the same test images (mean per-image change, images improved, '
        "Wilcoxon signed-rank p). Validation: the images each model or setting was chosen on (never a "
        "test image). Cost: job minutes of the step in this run (2 CPU cores), or the extra seconds "
        "test-time augmentation adds to one test evaluation.",
        "",
    ]
    for title, rows, check in tables:
        lines += [
            f"### {title}",
            "",
            "| step | valid MRE mm (n) | test MRE mm [95 % CI] (n) | test SDR@2 mm % | paired vs row above | cost |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for r in rows:
            v = "-" if r["valid"] is None else f"{r['valid'][0]:.3f} ({r['valid'][1]})"
            t = r["test"]
            lo, hi = t["ci95"]
            sdr = "-" if t["sdr2"] is None else f"{t['sdr2']:.1f}"
            p = r["paired"]
            pc = "-" if p is None else f"{p['delta_mm']:+.3f} mm, {p['better']}/{p['n']} better, p = {p['p']:.2g}"
            lines.append(
                f"| {r['label']} | {v} | {t['mre_mm']:.3f} [{lo:.3f}, {hi:.3f}] ({t['n_images']}) | {sdr} "
                f"| {pc} | {r['cost']} |"
            )
        lines += ["", check, ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", type=Path, required=True, help="the run's folder (its results/)")
    ap.add_argument("--ablation", type=Path, required=True, help="scripts/refine_ablation.py's JSON for this run")
    ap.add_argument("--log", type=Path, default=None, help="the run's Snakemake log (job minutes)")
    ap.add_argument("--out", type=Path, default=None, help="Markdown to write (default: print)")
    args = ap.parse_args(argv)
    results = args.project / "results"
    try:
        ablation = json.loads(args.ablation.read_text())
        jobs = parse_log(args.log.read_text()) if args.log else []
    except (OSError, ValueError) as e:
        print(f"cephalo: error: {e}", file=sys.stderr)
        return 1
    runs = {r["label"]: r for r in ablation["runs"]}
    tables = []
    for key, (title, steps) in CHAINS.items():
        if key not in runs:
            print(f"cephalo: error: {args.ablation}: no ablation run {key!r}", file=sys.stderr)
            return 1
        rows = rows_for(results, runs[key], steps, jobs)
        tta_test = next(r["test"]["mre_mm"] for r in runs[key]["rows"] if r["setting"] == TTA)
        same = bool(np.isclose(tta_test, rows[-1]["test"]["mre_mm"], rtol=0, atol=1e-6))
        check = (
            f"The ablation's test-time-augmentation row ({tta_test:.4f} mm) "
            f"{'reproduces' if same else 'DOES NOT reproduce'} the pipeline's evaluation of the same bundle "
            f"({rows[-1]['test']['mre_mm']:.4f} mm)."
        )
        tables.append((title, rows, check))
    text = render(args.ablation, tables)
    if args.out:
        args.out.write_text(text)
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
