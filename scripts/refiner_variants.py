#!/usr/bin/env python
"""Refiner training variants and ensembles, compared on validation images only.

Runs beside a finished real-profile run (``snakemake ... --configfile profiles/real.yaml``): each
``--variant NAME:JSON`` is the run's own params with the dotted overrides in JSON (for example
``s375:{"refine.spacing_mm": 0.375}`` or ``seed1:{"refine.train.seed": 1, "refine.train.split_seed": 0}``),
trained on the run's source data set with ``cephalo train-refiner --global <the run's source model>``
and paired with that model by ``cephalo bundle`` (both commands as the pipeline runs them, tracking
off), in ``--work DIR/NAME/`` (a variant whose ``bundle.json`` is there already is not trained again).
A variant with ``"after": OTHER`` in its JSON is a cascade stage: it refines the positions ``OTHER``
(a variant, or ``run``, the run's own refiner) gives.

Every variant, and ``run``, is evaluated with the library (:func:`cephalo.evaluate.runner.evaluate_model`,
the path of ``cephalo evaluate``, one refinement pass) on the images the source model held out of its
training split (``val_image_ids`` of its checkpoint's provenance; held out by every refiner trained
with the same ``split_seed``): never on a test split, so any choice made from this table is a
validation choice. ``--ensemble NAME=A+B+...`` averages the members' refined positions (original px).

Table: validation MRE with its 95 % bootstrap interval over images and SDR@2 mm; for a variant the
paired difference to ``run`` (mean per-image change, images improved, Wilcoxon signed-rank p); for an
ensemble the difference to the mean of its members' per-image MREs (what averaging itself buys).
Training seconds with the 1-minute load average at the end. Output: Markdown (``--out``) and JSON beside it.

    python scripts/refiner_variants.py --project /path/to/run --work /tmp/variants \\
        --variant 'seed1:{"refine.train.seed": 1, "refine.train.split_seed": 0}' \\
        --ensemble 'pair=run+seed1' --out docs/results/refiner-variants.md
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from refine_ablation import _paired, _with_validation, evaluate_refined  # noqa: E402  (one home each)

from cephalo.config.load import load_params  # noqa: E402
from cephalo.evaluate import metrics as M  # noqa: E402
from cephalo.models import load_model  # noqa: E402
from cephalo.preprocess import load_variant  # noqa: E402
from cephalo.provenance import cpu_model  # noqa: E402
from cephalo.refine import image_refiner, load_refiner, read_bundle  # noqa: E402


def parse_variant(text: str) -> tuple[str, dict]:
    """``NAME:JSON`` -> ``(NAME, overrides)``; raises SystemExit on a bad spec."""
    name, sep, body = text.partition(":")
    try:
        overrides = json.loads(body) if sep else None
    except ValueError as e:
        raise SystemExit(f"cephalo: error: --variant {text!r}: bad JSON ({e})") from None
    if not name or not isinstance(overrides, dict) or name == "run":
        raise SystemExit(f"cephalo: error: --variant {text!r}: expected NAME:{{JSON object}} (NAME not 'run')")
    return name, overrides


def parse_ensemble(text: str) -> tuple[str, list[str]]:
    """``NAME=A+B`` -> ``(NAME, [A, B])`` (two members or more)."""
    name, sep, body = text.partition("=")
    members = [m for m in body.split("+") if m]
    if not name or not sep or len(members) < 2:
        raise SystemExit(f"cephalo: error: --ensemble {text!r}: expected NAME=A+B[+...]")
    return name, members


def with_overrides(params: dict, overrides: dict) -> dict:
    """A deep copy of ``params`` with dotted ``overrides`` set (``refine.train.seed`` etc.)."""
    out = json.loads(json.dumps(params))
    for key, value in overrides.items():
        node = out
        *path, last = key.split(".")
        for p in path:
            node = node.setdefault(p, {})
        node[last] = value
    return out


def train_variant(project: Path, params: dict, dataset: str, folder: Path) -> dict:
    """Train and bundle one refiner in ``folder`` (skipped when its bundle exists); its training seconds."""
    bundle = folder / "bundle.json"
    record = folder / "trained.json"
    if bundle.is_file() and record.is_file():
        return json.loads(record.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    pfile = folder / "params.yaml"
    pfile.write_text(yaml.safe_dump(params, sort_keys=False))
    source = project / "results" / "models" / "source" / "best.pt"
    index = project / "results" / "index" / f"{dataset}.parquet"
    t0 = time.perf_counter()
    with open(folder / "train.log", "w") as log:
        for cmd in (
            [
                sys.executable,
                "-m",
                "cephalo",
                "train-refiner",
                "--index",
                str(index),
                "--global",
                str(source),
                "--out",
                str(folder),
            ]
            + ["--stage", "source", "--no-progress", "--params", str(pfile)],
            [sys.executable, "-m", "cephalo", "bundle", "--global", str(source), "--refiner", str(folder / "best.pt")]
            + ["--out", str(bundle), "--params", str(pfile)],
        ):
            if subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode:
                raise SystemExit(f"cephalo: error: {' '.join(cmd[2:4])} failed; see {folder / 'train.log'}")
    out = {"seconds": round(time.perf_counter() - t0, 1), "load": os.getloadavg()[0]}
    record.write_text(json.dumps(out) + "\n")
    return out


def evaluate_chain(stages: list, model, meta, variant, split: str, work: Path) -> pd.DataFrame:
    """Predictions (one row per image x landmark) of the global model refined by ``stages`` in turn."""
    names = list(meta.landmark_names)
    steps = [image_refiner(s, names) for s in stages]

    def chain(image, coarse, spacing):
        for step in steps:
            coarse = step(image, coarse, spacing)
        return coarse

    evaluate_refined(model, meta, variant, split, work, chain, n_boot=100)
    return pd.read_parquet(work / "predictions.parquet").set_index(["image_id", "landmark_name"]).sort_index()


def score(pred: pd.DataFrame, spacing: pd.DataFrame) -> dict:
    """MRE (mm) with its 95 % bootstrap interval over images, SDR@2 mm (%), and the per-image MREs.

    ``pred``: predictions indexed by (image_id, landmark_name) with ``x_pred, y_pred, x_gt, y_gt``
    (original px); ``spacing``: ``(x, y)`` mm/px per image id. Figures from
    :func:`cephalo.evaluate.metrics.summarise` and :func:`~cephalo.evaluate.metrics.bootstrap_ci`.
    """
    sp = spacing.reindex(pred.index.get_level_values(0))
    err = np.hypot(
        (pred["x_pred"] - pred["x_gt"]).to_numpy() * sp["x"].to_numpy(),
        (pred["y_pred"] - pred["y_gt"]).to_numpy() * sp["y"].to_numpy(),
    )
    errors = pd.Series(err, index=pred.index).unstack("landmark_name")  # (N images, K landmarks)
    e = errors.to_numpy(dtype=np.float64)
    summary = M.summarise(e, (2.0,))
    return {
        "mre_mm": float(summary["mre_mm"]),
        "ci95": M.bootstrap_ci(e, (2.0,), n_boot=1000, seed=0)["mre_mm"],
        "sdr2": 100 * float(summary["sdr"][M.threshold_key(2.0)]),
        "n_images": int(e.shape[0]),
        "per_image": {str(i): float(v) for i, v in zip(errors.index, np.nanmean(e, axis=1), strict=True)},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", type=Path, required=True, help="folder whose results/ holds a real-profile run")
    ap.add_argument("--work", type=Path, required=True, help="one folder per variant (reused when trained)")
    ap.add_argument("--variant", action="append", default=[], help='NAME:{"dotted.key": value, ...}')
    ap.add_argument("--ensemble", action="append", default=[], help="NAME=A+B[+...] (variants or run)")
    ap.add_argument("--out", type=Path, required=True, help="Markdown table to write (JSON beside it)")
    args = ap.parse_args(argv)
    project = args.project.resolve()
    runs = sorted((project / "results" / "params").glob("*.yaml"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise SystemExit(f"cephalo: error: {project}/results/params: no params file of a run")
    cfg = load_params(runs[-1])
    if not cfg.pipeline.refine_source:
        raise SystemExit(f"cephalo: error: {runs[-1]}: pipeline.refine_source is empty (not a real-profile run)")
    dataset = next(iter(cfg.pipeline.refine_source))
    base = yaml.safe_load(runs[-1].read_text())
    base.setdefault("tracking", {})["enabled"] = False
    variants = dict(parse_variant(v) for v in args.variant)
    ensembles = dict(parse_ensemble(e) for e in args.ensemble)
    known = {"run", *variants}
    for name, spec in variants.items():
        if spec.get("after", "run") not in known - {name}:
            raise SystemExit(f"cephalo: error: --variant {name}: 'after' names no variant ({spec['after']!r})")
    for name, members in ensembles.items():
        if set(members) - known:
            raise SystemExit(f"cephalo: error: --ensemble {name}: unknown members {sorted(set(members) - known)}")

    run_bundle = read_bundle(project / "results" / "models" / "refine_source" / "bundle.json")
    model, meta = load_model(run_bundle.global_path)
    variant, split = _with_validation(
        load_variant(project / "results" / "variants" / dataset / cfg.pipeline.source_variant), "held-out", meta
    )
    spacing = pd.DataFrame(
        np.asarray(variant.spacing, dtype=np.float64), index=[str(i) for i in variant.image_ids], columns=["x", "y"]
    )
    refiners = {"run": run_bundle.load_refiner("cpu")}
    trained: dict[str, dict] = {}
    for name, spec in variants.items():
        overrides = {k: v for k, v in spec.items() if k != "after"}
        trained[name] = train_variant(project, with_overrides(base, overrides), dataset, args.work / name)
        refiners[name] = load_refiner(args.work / name / "best.pt", "cpu")
        print(f"{name}: trained ({trained[name]['seconds']:.0f} s)", flush=True)

    def stages(name: str, seen: tuple[str, ...] = ()) -> list:
        if name in seen:
            raise SystemExit(f"cephalo: error: --variant {name}: 'after' goes round in a circle ({seen})")
        after = variants.get(name, {}).get("after")
        return ([] if after is None else stages(after, (*seen, name))) + [refiners[name]]

    preds, rows = {}, []
    for name in ["run", *variants]:
        preds[name] = evaluate_chain(stages(name), model, meta, variant, split, args.work / "eval" / name)
        s = score(preds[name], spacing)
        rows.append(
            {"name": name, "kind": "variant", "overrides": variants.get(name, {}), **trained.get(name, {}), **s}
        )
        print(f"{name}: validation MRE {s['mre_mm']:.3f} mm", flush=True)
    by_name = {r["name"]: r for r in rows}
    for r in rows:
        r["vs_run"] = _paired(by_name["run"]["per_image"], r["per_image"]) if r["name"] != "run" else None
    for name, members in ensembles.items():
        mean = preds[members[0]].copy()
        for col in ("x_pred", "y_pred"):
            mean[col] = np.mean([preds[m][col].to_numpy() for m in members], axis=0)
        s = score(mean, spacing)
        ids = s["per_image"].keys()
        members_mean = {i: float(np.mean([by_name[m]["per_image"][i] for m in members])) for i in ids}
        rows.append(
            {
                "name": name,
                "kind": "ensemble",
                "members": members,
                **s,
                "vs_members": _paired(members_mean, s["per_image"]),
            }
        )
        print(f"{name}: validation MRE {s['mre_mm']:.3f} mm", flush=True)
    record = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "project_commit": subprocess.run(
            ["git", "-C", str(project), "rev-parse", "--short=10", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "machine": cpu_model(),
        "dataset": dataset,
        "validation": f"the {by_name['run']['n_images']} images the source model held out of its training split",
        "rows": [{k: v for k, v in r.items() if k != "per_image"} | {"per_image": r["per_image"]} for r in rows],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=1, default=str) + "\n")
    args.out.write_text(render(record))
    print(f"wrote {args.out} and {args.out.with_suffix('.json')}")
    return 0


def _pair_cell(pr: dict | None) -> str:
    return "-" if pr is None else f"{pr['delta_mm']:+.3f} mm, {pr['better']}/{pr['n']} better, p = {pr['p']:.2g}"


def render(record: dict) -> str:
    """The Markdown page of a record written by :func:`main`."""
    lines = [
        f"# Refiner variants and ensembles on validation images ({record['date']})",
        "",
        f"Generated by `python scripts/refiner_variants.py` beside a real-profile run at commit "
        f"`{record['project_commit']}` "
        f"({record['machine']}); data set `{record['dataset']}`, {record['validation']} (no test image). "
        "`run` is the run's own refiner. MRE over images x landmarks with its 95 % bootstrap interval over "
        "images; a variant is paired with `run`, an ensemble (positions averaged) with the mean of its "
        "members' per-image MREs (Wilcoxon signed-rank over images).",
        "",
        "| name | what | training s (load) | valid MRE mm | SDR@2 mm % | paired |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in record["rows"]:
        if r["kind"] == "ensemble":
            what, trained, pr = "mean of " + " + ".join(r["members"]), "-", _pair_cell(r["vs_members"])
        else:
            what = ", ".join(f"{k} = {json.dumps(v)}" for k, v in r["overrides"].items())
            if r["name"] == "run":
                what = "the run's own refiner"
            elif not what:
                what = "the run's params, trained again (this commit's code)"
            trained = f"{r['seconds']:.0f} ({r['load']:.2f})" if "seconds" in r else "-"
            pr = _pair_cell(r["vs_run"])
        lo, hi = r["ci95"]
        lines.append(
            f"| {r['name']} | {what} | {trained} | {r['mre_mm']:.3f} [{lo:.3f}, {hi:.3f}] (n={r['n_images']}) "
            f"| {r['sdr2']:.1f} | {pr} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
