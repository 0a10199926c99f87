"""Ablation: global model only vs global + refinement (and + test-time augmentation), paired per image.

    python benchmarks/bench_refine.py --bundle results/models/refiner/finetuned/letterbox256/bundle.json \\
        --data results/variants/aariz/letterbox256 --split valid --out benchmarks/results/refine-demo

or ``--global CKPT --refiner CKPT`` instead of ``--bundle``, or on synthetic markers where the global
model's resolution is the limit (``cephalo.refine.synthetic``: data, global model and refiner made in DIR)::

    python benchmarks/bench_refine.py --synthetic /tmp/refine-synth --split valid --out /tmp/refine-synth/ablation
 Choose settings on a validation split
(``valid``, or the held-out training images); the test split is for the final report only.

On the images of ``--split`` it predicts with the global model (``cephalo.inference``, the path
``cephalo evaluate`` uses), refines with :func:`cephalo.refine.refine_predictions` once plainly and
once per ``--tta`` setting, and reports, in mm (``cephalo.evaluate.metrics``): MRE / SDR of each,
the paired per-image Wilcoxon test (``metrics.paired_wilcoxon``) of each against the global model
and of TTA against plain refinement, a per-landmark table, and seconds per image of each step.
Writes ``OUT.json`` and ``OUT.md`` (atomically).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_TTA = '{"scales": [0.95, 1.0, 1.05], "shifts_px": [0, 2], "gammas": [0.9, 1.0, 1.1]}'


def _coarse(model, meta, variant, rows, device: str):
    from cephalo.inference import Predictor, predict_variant

    pr = Predictor.from_meta(model, meta, normalisation=variant.normalisation, device=device)
    return predict_variant(pr, variant, rows, batch_size=4, progress=False).coords


def run(
    global_path: Path,
    refiner_path: Path,
    data_dir: Path,
    split: str,
    tta_specs: list[dict],
    iterations: int = 1,
    device: str = "cpu",
) -> dict:
    from cephalo.evaluate import metrics as M
    from cephalo.evaluate.results import shared_landmarks
    from cephalo.imageio import read_image
    from cephalo.models import load_model
    from cephalo.preprocess import load_variant
    from cephalo.refine import (
        TTAConfig,
        load_refiner,
        original_image_paths,
        refine_predictions,
    )

    variant = load_variant(data_dir)
    rows = np.flatnonzero(variant.splits == split) if split != "all" else np.arange(len(variant.image_ids))
    if len(rows) == 0:
        raise SystemExit(f"no image in split {split!r}")
    model, meta = load_model(global_path)
    names, mi, di = shared_landmarks(list(meta.landmark_names), list(variant.landmark_names))
    t0 = time.perf_counter()
    coarse_all = _coarse(model, meta, variant, rows, device)
    t_global = (time.perf_counter() - t0) / len(rows)
    gt = np.asarray(variant.landmarks_original, np.float64)[rows][:, di]
    spacing = np.asarray(variant.spacing, np.float64)[rows]
    ref = load_refiner(refiner_path, device)
    images = [read_image(p) for p in original_image_paths(variant, rows)]
    modes = {"global": (coarse_all[:, mi], 0.0)}
    for label, spec in [("refined", None)] + [
        (f"refined+tta{i if len(tta_specs) > 1 else ''}", s) for i, s in enumerate(tta_specs)
    ]:
        tta = TTAConfig.from_dict(spec) if spec else None
        t0 = time.perf_counter()
        out = np.stack(
            [
                refine_predictions(
                    ref, images[j], coarse_all[j], list(meta.landmark_names), spacing[j], tta=tta, iterations=iterations
                ).coords
                for j in range(len(rows))
            ]
        )
        modes[label] = (out[:, mi], (time.perf_counter() - t0) / len(rows))
    ids = [variant.image_ids[int(r)] for r in rows]
    res: dict = {
        "data": str(data_dir),
        "split": split,
        "n_images": len(rows),
        "global": str(global_path),
        "refiner": str(refiner_path),
        "refiner_window": ref.window,
        "refiner_spacing_mm": ref.spacing_mm,
        "iterations": iterations,
        "tta": tta_specs,
        "landmarks": names,
        "modes": {},
        "paired": {},
        "per_landmark": {},
    }
    errs = {}
    for label, (pred, sec) in modes.items():
        e = M.radial_errors_mm(pred, gt, spacing)
        errs[label] = e
        s = M.summarise(e)
        res["modes"][label] = {
            "mre_mm": s["mre_mm"],
            "sd_mm": s["sd_mm"],
            "sdr": s["sdr"],
            "seconds_per_image": (t_global + sec) if label != "global" else t_global,
            "refine_seconds_per_image": sec,
        }
        res["per_landmark"][label] = [float(v) for v in np.nanmean(e, axis=0)]
    for label in modes:
        if label == "global":
            continue
        p = M.paired_wilcoxon(errs[label], errs["global"], ids, ids)
        res["paired"][f"{label} vs global"] = {k: v for k, v in p.items() if k not in ("image_ids", "diff_mm")}
        if label.startswith("refined+tta"):
            p = M.paired_wilcoxon(errs[label], errs["refined"], ids, ids)
            res["paired"][f"{label} vs refined"] = {k: v for k, v in p.items() if k not in ("image_ids", "diff_mm")}
    return res


def to_markdown(res: dict) -> str:
    modes = list(res["modes"])
    lines = [
        f"# Refinement ablation: {res['data']} split {res['split']} ({res['n_images']} images)",
        "",
        f"global: `{res['global']}`; refiner: `{res['refiner']}` ({res['refiner_window']} px windows at "
        f"{res['refiner_spacing_mm']} mm/px, {res['iterations']} iteration(s)); TTA: {res['tta']}",
        "",
        "| mode | MRE mm | SD mm | SDR@2mm % | s/image |",
        "| --- | --- | --- | --- | --- |",
    ]
    for m in modes:
        r = res["modes"][m]
        from cephalo.evaluate.metrics import threshold_key

        sdr2 = r["sdr"].get(threshold_key(2.0), float("nan"))
        lines.append(
            f"| {m} | {r['mre_mm']:.3f} | {r['sd_mm']:.3f} | {100 * sdr2:.1f} | {r['seconds_per_image']:.3f} |"
        )
    lines += [
        "",
        "Paired per image (Wilcoxon signed-rank, two-sided; diff = first - second, negative = first better):",
        "",
        "| comparison | n | mean diff mm | first better | second better | p |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for k, p in res["paired"].items():
        lines.append(
            f"| {k} | {p['n_images']} | {p['mean_diff_mm']:+.3f} | {p['n_a_better']} | {p['n_b_better']} | "
            f"{p['p_value']:.3g} |"
        )
    lines += ["", "| landmark | " + " | ".join(f"{m} MRE mm" for m in modes) + " |", "| --- |" + " --- |" * len(modes)]
    for i, n in enumerate(res["landmarks"]):
        lines.append(f"| {n} | " + " | ".join(f"{res['per_landmark'][m][i]:.3f}" for m in modes) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", type=Path, help="bundle.json (global + refiner)")
    ap.add_argument("--global", dest="global_path", type=Path)
    ap.add_argument("--refiner", type=Path)
    ap.add_argument("--synthetic", type=Path, help="make synthetic data + global model + refiner in this folder")
    ap.add_argument("--data", type=Path, help="variant directory of the global model")
    ap.add_argument("--split", default="valid")
    ap.add_argument(
        "--tta", action="append", default=None, help=f"TTA setting as JSON (repeatable); default {DEFAULT_TTA}"
    )
    ap.add_argument("--iterations", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, required=True, help="output stem: OUT.json, OUT.md")
    a = ap.parse_args(argv)
    if a.synthetic:
        from cephalo.refine import synthetic as S

        a.synthetic.mkdir(parents=True, exist_ok=True)
        index = a.synthetic / "index.parquet"
        if not index.is_file():
            S.make_index(a.synthetic)
        t0 = time.perf_counter()
        paths = (
            S.train_pair(a.synthetic, index)
            if not (a.synthetic / "refiner" / "bundle.json").is_file()
            else {"bundle": a.synthetic / "refiner" / "bundle.json", "variant": a.synthetic / "lb32"}
        )
        print(f"synthetic data and models in {a.synthetic} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
        a.bundle, a.data = paths["bundle"], paths["variant"]
    if a.data is None:
        ap.error("give --data (or --synthetic)")
    if a.bundle:
        from cephalo.refine import read_bundle

        b = read_bundle(a.bundle)
        gpath, rpath = b.global_path, b.refiner_path
    elif a.global_path and a.refiner:
        gpath, rpath = a.global_path, a.refiner
    else:
        ap.error("give --bundle, or --global and --refiner")
    specs = [json.loads(s) for s in (a.tta or [DEFAULT_TTA])]
    res = run(gpath, rpath, a.data, a.split, specs, a.iterations, a.device)
    from cephalo.io import atomic_path, write_json

    a.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(a.out.with_suffix(".json"), res)
    md = to_markdown(res)
    with atomic_path(a.out.with_suffix(".md")) as tmp:
        tmp.write_text(md)
    sys.stdout.write(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
