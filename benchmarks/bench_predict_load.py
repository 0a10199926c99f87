"""Load on ``cephalo predict``: many images in one call, and several calls at once.

Usage:
    nice -n 10 python benchmarks/bench_predict_load.py [--n 500] [--concurrent 4] [--size 256]
                                                        [--bad 5] [--out benchmarks/results/predict_load.json]

Generates ``--n`` small greyscale PNGs on the fly (``--size`` px square, a smooth gradient with
noise) plus ``--bad`` broken files (truncated PNGs), and a small random-weight HRNet-W18 checkpoint
(96 px input, 19 ISBI landmarks: speed and memory do not depend on the weights). Then runs

1. one ``cephalo predict`` call on a tenth of the images and one on all of them: peak memory
   (``ru_maxrss`` of the child, from ``wait4``) must not grow with the number of images (the call
   streams: one batch of decoded images at a time), and
2. ``--concurrent`` calls at once on all images, each into its own output folder.

For every call it checks that every input is answered: ``predictions.json`` lists each good image
and each broken one under ``skipped`` (the exit status is then 1, by contract). Output: JSON + a
Markdown table beside it (atomic writes), and the table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _images(folder: Path, n: int, size: int, bad: int, seed: int = 0) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size]
    base = (xx + yy) / (2 * size) * 200
    for i in range(n):
        img = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"img{i:04d}.png")
    for j in range(bad):
        good = (folder / "img0000.png").read_bytes()
        (folder / f"broken{j:02d}.png").write_bytes(good[: len(good) // 3])


def _checkpoint(path: Path) -> Path:
    import torch

    from cephalo.landmarks import ISBI19
    from cephalo.models import ModelMeta, create_model, save_checkpoint

    s = 96
    torch.manual_seed(0)
    model = create_model("hrnet_w18", len(ISBI19.names), num_modules=(1, 1, 1), num_blocks=1)
    meta = ModelMeta(
        arch="hrnet_w18",
        landmark_names=list(ISBI19.names),
        input_size=(s, s),
        heatmap_size=(s // 4, s // 4),
        variant={"steps": [{"step": "letterbox", "size": [s, s]}]},
        normalisation={"name": "imagenet"},
        codec={
            "name": "gaussian",
            "input_size": [s, s],
            "heatmap_size": [s // 4, s // 4],
            "sigma": 2.0,
            "decoder": "dark",
            "convention": "pixel_centre",
        },
        arch_kwargs={"num_modules": [1, 1, 1], "num_blocks": 1},
    )
    return save_checkpoint(path, model, meta)


def _start(ckpt: Path, inputs: Path, out: Path, threads: int) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1", NO_ALBUMENTATIONS_UPDATE="1")
    cmd = [
        sys.executable,
        "-m",
        "cephalo",
        "predict",
        "--model",
        str(ckpt),
        str(inputs),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--no-overlays",
        "--skip-bad",
    ]
    return subprocess.Popen(
        cmd, env=env, cwd=Path(__file__).resolve().parents[1], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def _finish(p: subprocess.Popen, t0: float) -> dict:
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    err = p.stderr.read().decode(errors="replace")
    return {
        "seconds": time.perf_counter() - t0,
        "exit": p.returncode,
        "peak_rss_mib": usage.ru_maxrss / 1024,
        "stderr_tail": err.strip().splitlines()[-1:] if p.returncode not in (0, 1) else [],
    }


def _answered(out: Path, n_good: int, n_bad: int) -> dict:
    rec = json.loads((out / "predictions.json").read_text())
    images = rec["images"] if isinstance(rec, dict) else rec
    skipped = rec.get("skipped", []) if isinstance(rec, dict) else []
    ok = len(images) == n_good and len(skipped) == n_bad
    return {"answered": len(images), "skipped": len(skipped), "every_image_accounted_for": ok}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--concurrent", type=int, default=4)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--bad", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per call")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/predict_load.json"))
    args = ap.parse_args()
    from cephalo.io import atomic_path, write_json

    rows = []
    with tempfile.TemporaryDirectory(prefix="cephalo-load-") as td:
        td = Path(td)
        ckpt = _checkpoint(td / "model.pt")
        small_n = max(1, args.n // 10)
        _images(td / "small", small_n, args.size, args.bad)
        _images(td / "all", args.n, args.size, args.bad)
        for label, folder, n in (("one call", td / "small", small_n), ("one call", td / "all", args.n)):
            t0 = time.perf_counter()
            r = _finish(_start(ckpt, folder, td / f"out-{n}", args.threads), t0)
            r.update(_answered(td / f"out-{n}", n, args.bad))
            rows.append(
                {
                    "case": f"{label}, {n} images + {args.bad} broken",
                    "calls": 1,
                    "images": n,
                    **r,
                    "images_per_s": n / r["seconds"],
                }
            )
        t0 = time.perf_counter()
        procs = [_start(ckpt, td / "all", td / f"conc-{k}", args.threads) for k in range(args.concurrent)]
        res = [_finish(p, t0) for p in procs]
        wall = time.perf_counter() - t0
        acc = [_answered(td / f"conc-{k}", args.n, args.bad) for k in range(args.concurrent)]
        rows.append(
            {
                "case": f"{args.concurrent} concurrent calls, {args.n} images + {args.bad} broken each",
                "calls": args.concurrent,
                "images": args.n * args.concurrent,
                "seconds": wall,
                "exit": sorted({r["exit"] for r in res}),
                "peak_rss_mib": max(r["peak_rss_mib"] for r in res),
                "answered": sum(a["answered"] for a in acc),
                "skipped": sum(a["skipped"] for a in acc),
                "every_image_accounted_for": all(a["every_image_accounted_for"] for a in acc),
                "images_per_s": args.n * args.concurrent / wall,
            }
        )
    report = {
        "benchmark": "predict_load",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "image_size": args.size,
        "model": "hrnet_w18 (1 module/stage, 1 block), 96 px input, random weights",
        "threads_per_call": args.threads,
        "date": time.strftime("%Y-%m-%d"),
        "rows": rows,
    }
    write_json(args.out, report)
    lines = [
        "| case | wall s | images/s | peak RSS MiB (per call) | answered | skipped | all accounted for | exit |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['seconds']:.1f} | {r['images_per_s']:.1f} | {r['peak_rss_mib']:.0f} | "
            f"{r['answered']} | {r['skipped']} | {r['every_image_accounted_for']} | {r['exit']} |"
        )
    md = "\n".join(lines) + "\n"
    with atomic_path(args.out.with_suffix(".md")) as tmp:
        tmp.write_text(md)
    print(md, end="")
    if not all(r["every_image_accounted_for"] for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
