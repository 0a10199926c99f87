#!/usr/bin/env python
"""Refiner inference settings (rounds, test-time augmentation) chosen on validation images only.

Runs on the ``results/`` of a finished real-profile run (``snakemake ... --configfile
profiles/real.yaml``): for each global + refiner bundle of the run and each candidate setting of the
bundle's ``refine`` section (``iterations``, ``tta``), it predicts and evaluates with the library
(:func:`cephalo.evaluate.runner.evaluate_model`, the path of ``cephalo evaluate``) on

- the validation images: Hamedan ``valid`` (061-075); for ISBI 2015 the 10 % of TrainingData the
  source model held out (``val_image_ids`` in its checkpoint's provenance; held out by the source
  refiner too);
- the test images (ISBI Test1, Hamedan ``test``), reported only: the choice is the lowest
  validation MRE, made before the test figures are read.

Each row gives MRE over the bundle's landmarks (mean of the ground-truth policy), the paired
difference to the one-pass setting with its Wilcoxon signed-rank p over images, how many images
improved, and the wall time of the evaluation (load average alongside). Output: a Markdown table
(``--out``) and the same figures as JSON beside it; ``--keep DIR`` also keeps every evaluation folder
(``DIR/<bundle folder>/<setting>-<valid|test>/``, e.g. the validation evaluation that
``scripts/landmark_bias.py --reference`` compares a test evaluation with).

    python scripts/refine_ablation.py --project /path/to/run --out docs/results/refine-ablation.md
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy import stats

from cephalo.config.load import load_params
from cephalo.config.schema import TTAConfig
from cephalo.evaluate.runner import EvalContext, EvalSettings, PredictOptions, evaluate_model
from cephalo.models import load_model
from cephalo.preprocess import load_variant
from cephalo.provenance import cpu_model
from cephalo.refine import image_refiner, read_bundle, variant_refiner

#: candidate settings: name -> (iterations, tta); the first is the reference (one plain pass)
CANDIDATES: dict[str, tuple[int, dict]] = {
    "one pass": (1, {}),
    "two rounds": (2, {}),
    "TTA scales x shifts": (1, {"scales": [0.9, 1.0, 1.1], "shifts_px": [0, 2]}),
    "two rounds + TTA": (2, {"scales": [0.9, 1.0, 1.1], "shifts_px": [0, 2]}),
}

#: (label, bundle, variant, validation split or "held-out" (the global model's own), test split)
RUNS = (
    (
        "ISBI 2015 (source refiner)",
        "results/models/refine_source/bundle.json",
        "results/variants/isbi2015/letterbox384",
        "held-out",
        "test1",
    ),
    (
        "Hamedan (fine-tuned refiner)",
        "results/models/refine/letterbox384/bundle.json",
        "results/variants/hamedan/letterbox384",
        "valid",
        "test",
    ),
)


def _with_validation(variant, validation: str, meta):
    """The variant, its validation images labelled ``valid``: a split of the variant, or (``held-out``)
    the images the global model held out of its training split (``val_image_ids`` of its provenance)."""
    if validation != "held-out":
        return variant, validation
    ids = set(meta.provenance.get("val_image_ids") or [])
    if not ids:
        raise SystemExit("cephalo: error: the global model's checkpoint records no val_image_ids")
    splits = np.array(
        ["valid" if i in ids else s for i, s in zip(variant.image_ids, variant.splits, strict=True)], dtype=object
    )
    return replace(variant, splits=splits), "valid"


def evaluate_refined(model, meta, variant, split: str, work: Path, refine_image, n_boot: int = 1000) -> dict:
    """``cephalo evaluate``'s path (:func:`evaluate_model`, CPU, no plots) with ``refine_image``
    (:func:`cephalo.refine.image_refiner`, or a chain of them) moving the global model's landmarks;
    writes ``work`` and returns the evaluation's figures."""
    return evaluate_model(
        model,
        meta,
        variant,
        split,
        work,
        settings=EvalSettings(n_boot=n_boot, make_plots=False),
        context=EvalContext(label=work.name),
        predict=PredictOptions(
            batch_size=4, device="cpu", progress=False, refine=variant_refiner(refine_image, variant)
        ),
    )


def _evaluate(bundle, model, meta, variant, split: str, iterations: int, tta: dict, work: Path) -> tuple[dict, dict]:
    refine_image = image_refiner(
        bundle.load_refiner("cpu"),
        list(meta.landmark_names),
        tta=TTAConfig(**tta),
        iterations=iterations,
        batch_size=bundle.batch_size,
    )
    t0 = time.perf_counter()
    out = evaluate_refined(model, meta, variant, split, work, refine_image)
    seconds = time.perf_counter() - t0
    per_image = {r["image_id"]: r["mre_mm"] for r in _read_csv(work / "per_image.csv")}
    return {
        "mre_mm": out["overall"]["mre_mm"],
        "ci95": out["overall"]["ci95"]["mre_mm"],
        "sdr2": out["overall"]["sdr"].get("2.0"),
        "n_images": out["overall"]["n_images"],
        "seconds": round(seconds, 1),
        "load": os.getloadavg()[0],
    }, per_image


def _read_csv(path: Path) -> list[dict]:
    import pandas as pd

    return pd.read_csv(path, dtype={"image_id": str}).to_dict("records")


def _paired(ref: dict, new: dict) -> dict:
    ids = sorted(ref)
    a, b = np.array([ref[i] for i in ids]), np.array([new[i] for i in ids])
    d = b - a
    p = float(stats.wilcoxon(b, a).pvalue) if np.any(d != 0) else 1.0
    return {"delta_mm": float(d.mean()), "better": int((d < 0).sum()), "n": len(d), "p": p}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", type=Path, required=True, help="folder whose results/ holds a real-profile run")
    ap.add_argument("--out", type=Path, required=True, help="Markdown table to write (JSON beside it)")
    ap.add_argument("--keep", type=Path, default=None, help="keep every evaluation folder under this folder")
    args = ap.parse_args(argv)
    project = args.project.resolve()
    # the run's params (Snakemake writes them to results/params/<sha256[:16]>.yaml): a real-profile layout
    runs = sorted((project / "results" / "params").glob("*.yaml"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise SystemExit(f"cephalo: error: {project}/results/params: no params file of a run")
    if not load_params(runs[-1]).pipeline.refine_source:
        raise SystemExit(f"cephalo: error: {runs[-1]}: pipeline.refine_source is empty (not a real-profile run)")
    commit = subprocess.run(
        ["git", "-C", str(project), "rev-parse", "--short=10", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    record: dict = {
        "project_commit": commit,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": cpu_model(),
        "threads": os.cpu_count(),
        "runs": [],
    }
    for label, bundle_path, variant_dir, validation, test_split in RUNS:
        bundle = read_bundle(project / bundle_path)
        model, meta = load_model(bundle.global_path)
        variant, val_split = _with_validation(load_variant(project / variant_dir), validation, meta)
        rows = []
        per_split: dict[str, dict[str, dict]] = {"valid": {}, "test": {}}
        for name, (iterations, tta) in CANDIDATES.items():
            row = {
                "setting": name,
                "iterations": iterations,
                "tta": TTAConfig(**tta).to_dict(),
                "passes": len(TTAConfig(**tta).settings()) * iterations,
            }
            for role, split in (("valid", val_split), ("test", test_split)):
                with tempfile.TemporaryDirectory() as tmp:
                    work = Path(tmp) / "eval"
                    if args.keep:
                        slug = name.replace(" + ", "-").replace(" ", "-")
                        work = args.keep / Path(bundle_path).parent.name / f"{slug}-{role}"
                    row[role], per_split[role][name] = _evaluate(
                        bundle, model, meta, variant, split, iterations, copy.deepcopy(tta), work
                    )
                print(
                    f"{label} | {name} | {role}: MRE {row[role]['mre_mm']:.3f} mm "
                    f"({row[role]['seconds']:.0f} s, load {row[role]['load']:.2f})",
                    flush=True,
                )
            rows.append(row)
        ref = next(iter(CANDIDATES))
        for row in rows:
            for role in ("valid", "test"):
                row[role]["paired"] = _paired(per_split[role][ref], per_split[role][row["setting"]])
                row[role]["per_image"] = {str(k): v for k, v in per_split[role][row["setting"]].items()}
        chosen = min(rows, key=lambda r: r["valid"]["mre_mm"])["setting"]  # validation only
        record["runs"].append(
            {
                "label": label,
                "bundle": bundle_path,
                "validation": validation,
                "test_split": test_split,
                "chosen_on_validation": chosen,
                "rows": rows,
            }
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    args.out.write_text(render(record))
    print(f"wrote {args.out} and {args.out.with_suffix('.json')}")
    return 0


def render(record: dict) -> str:
    """The Markdown page of a record written by :func:`main`."""
    lines = [
        f"# Refiner inference settings, chosen on validation ({record['date']})",
        "",
        f"Generated by `python scripts/refine_ablation.py --project <run> --out <this file>` on the checkpoints "
        f"of a real-profile run at commit `{record['project_commit']}` ({record['machine']}, "
        f"{record['threads']} CPUs). MRE in mm over each run's landmarks with its 95 % bootstrap interval; "
        '"paired" is the mean per-image change against one pass, the images that improved and the '
        "Wilcoxon signed-rank p over images. The setting in bold has the lowest validation MRE: the "
        "choice, made before reading the test column. Seconds: wall time of the evaluation (global "
        "model + refiner), with the 1-minute load average.",
        "",
    ]
    for run in record["runs"]:
        val = (
            "the 10 % of TrainingData the source model held out (its checkpoint's val_image_ids)"
            if run["validation"] == "held-out"
            else f"split `{run['validation']}`"
        )
        lines += [
            f"## {run['label']}",
            "",
            f"Validation: {val}; test: split `{run['test_split']}`.",
            "",
            "| setting | passes per landmark | valid MRE mm | valid paired | test MRE mm | test paired "
            "| valid s (load) | test s (load) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in run["rows"]:
            name = f"**{r['setting']}**" if r["setting"] == run["chosen_on_validation"] else r["setting"]
            cells = [name, str(r["passes"])]
            for role in ("valid", "test"):
                m = r[role]
                cells.append(f"{m['mre_mm']:.3f} [{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}] (n={m['n_images']})")
                pr = m["paired"]
                cells.append(
                    "-"
                    if pr["delta_mm"] == 0 and pr["p"] == 1.0
                    else f"{pr['delta_mm']:+.3f} mm, {pr['better']}/{pr['n']} better, p = {pr['p']:.2g}"
                )
            cells += [f"{r[role]['seconds']:.0f} ({r[role]['load']:.2f})" for role in ("valid", "test")]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
