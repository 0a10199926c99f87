"""Training-engine benchmark: AMP step throughput, memory, bf16/fp32 agreement, inference, loader keep-up.

CPU, the real profile's network and input size (about 2 min on 2 cores)::

    python benchmarks/bench_train.py --device cpu --arch timm:hrnet_w18_small --size 384 \
        --batch-sizes 8 --steps 4 --out benchmarks/results/cpu-layout-<date>.json

GPU (``benchmarks/gpu.sh``, about 5-8 min on one H200)::

    python benchmarks/bench_train.py --device cuda --out benchmarks/results/gpu-<date>.json

CPU smoke (tiny sizes, what ``tests/test_train_bench.py`` runs)::

    python benchmarks/bench_train.py --smoke --out /tmp/bench.json

Measures, each in its own section of the JSON:

* ``train``: per batch size, optimizer steps of the real engine pieces (``cephalo.models``
  network, ``cephalo.preprocess.normalise``, ``cephalo.losses`` loss in float32, AdamW, GradScaler
  for fp16) under autocast: images/s, ms/step, peak GPU memory; an out-of-memory batch is
  recorded as ``"oom"``, not a crash.
* ``layout``: float32 training steps in NCHW and in channels-last (NHWC) memory layout, interleaved,
  and the speed-up of channels-last (``train.channels_last``; oneDNN's fast path on CPU); then
  channels-last with one torch thread (a Snakemake job's default, ``pipeline.train_threads``) against
  all of them.
* ``precision``: the same initial weights and batches trained for a few steps in fp32 and in
  bf16 autocast: loss per step in each and the largest relative difference.
* ``inference``: eval-mode forward images/s under autocast.
* ``loader``: images/s the data pipeline (memmap variant -> augmentation -> codec targets,
  ``cephalo.train.data``) delivers with N workers, against the training images/s of the
  largest batch that fitted: ``keep_up`` >= 1 means the GPU is not starved.

Data: a synthetic variant (``cephalo.train.make_synthetic_variant``) at the benchmark size, so
it runs on a bare machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

NAMES = [
    "sella",
    "nasion",
    "orbitale",
    "porion",
    "subspinale",
    "supramentale",
    "pogonion",
    "menton",
    "gnathion",
    "gonion",
    "lower_incisal_incision",
    "upper_incisal_incision",
    "upper_lip",
    "lower_lip",
    "subnasale",
    "soft_tissue_pogonion",
    "posterior_nasal_spine",
    "anterior_nasal_spine",
    "articulare",
]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _amp(device: torch.device, precision: str):
    """Autocast context: bf16/fp16 on CUDA; on CPU only bf16 (CPU autocast), else float32."""
    import contextlib

    if precision == "fp32" or (device.type != "cuda" and precision != "bf16"):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def _batch(variant, codec, rows, device):
    from cephalo.preprocess import normalise

    img = torch.from_numpy(np.stack([np.asarray(variant.images[i]) for i in rows])).to(device)
    hm, w = zip(*(codec.encode(variant.landmarks[i]) for i in rows), strict=True)
    return (
        normalise(img, variant.normalisation),
        torch.as_tensor(np.stack(hm), device=device),
        torch.as_tensor(np.stack(w), device=device),
    )


def bench_train(
    make_model, variant, codec, loss_fn, device, batch_sizes, steps, warmup, precision, channels_last=False
):
    out = []
    layout = torch.channels_last if channels_last else torch.contiguous_format
    for bs in batch_sizes:
        rec = {"batch_size": bs, "precision": precision, "channels_last": bool(channels_last)}
        model = opt = None
        try:
            torch.manual_seed(0)
            model = make_model().to(device, memory_format=layout).train()
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
            scaler = torch.amp.GradScaler("cuda") if (device.type == "cuda" and precision == "fp16") else None
            rows = [i % len(variant) for i in range(bs)]
            x, t, w = _batch(variant, codec, rows, device)
            x = x.contiguous(memory_format=layout)
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
            for i in range(warmup + steps):
                if i == warmup:
                    _sync(device)
                    t0 = time.perf_counter()
                with _amp(device, precision):
                    pred = model(x)
                loss = loss_fn(pred.float(), t, w)
                opt.zero_grad(set_to_none=True)
                if scaler:
                    scaler.scale(loss).backward()
                    scaler.step(opt)
                    scaler.update()
                else:
                    loss.backward()
                    opt.step()
            _sync(device)
            dt = time.perf_counter() - t0
            rec.update(images_per_s=bs * steps / dt, ms_per_step=1000 * dt / steps, final_loss=loss.item())
            if device.type == "cuda":
                rec["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        except torch.cuda.OutOfMemoryError:
            rec["oom"] = True
        finally:
            del model, opt
            if device.type == "cuda":
                torch.cuda.empty_cache()
        out.append(rec)
        print(json.dumps(rec), flush=True)
    return out


#: bf16 autocast vs fp32 from the same weights and batches: the largest relative loss difference allowed
#: over the steps of ``bench_precision`` (bf16 keeps 8 mantissa bits: ~0.4 % per rounding; the trajectories
#: drift apart a little with every optimiser step, so a few per cent over 10 steps is agreement)
AMP_TOLERANCE = 0.05


def bench_precision(make_model, variant, codec, loss_fn, device, bs, steps):
    """Loss trajectories of fp32 and bf16 from the same weights and batches."""
    curves = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        model = make_model().to(device).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        losses = []
        for s in range(steps):
            rows = [(s * bs + i) % len(variant) for i in range(bs)]
            x, t, w = _batch(variant, codec, rows, device)
            with _amp(device, precision):
                pred = model(x)
            loss = loss_fn(pred.float(), t, w)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        curves[precision] = losses
        del model, opt
    a, b = np.array(curves["fp32"]), np.array(curves["bf16"])
    rel = np.abs(a - b) / np.maximum(np.abs(a), 1e-12)
    finite = bool(np.isfinite(a).all() and np.isfinite(b).all())
    return {
        "batch_size": bs,
        "steps": steps,
        "loss_fp32": curves["fp32"],
        "loss_bf16": curves["bf16"],
        "max_rel_diff": float(rel.max()),
        "first_step_rel_diff": float(rel[0]),
        "finite": finite,
        "tolerance_rel": AMP_TOLERANCE,
        "passed": finite and float(rel.max()) <= AMP_TOLERANCE,
        "note": "CPU bf16 autocast (the trainer itself trains in float32 on CPU)" if device.type != "cuda" else "",
    }


@torch.no_grad()
def bench_inference(make_model, variant, device, bs, steps, warmup, precision):
    from cephalo.preprocess import normalise

    model = make_model().to(device).eval()
    rows = [i % len(variant) for i in range(bs)]
    x = normalise(
        torch.from_numpy(np.stack([np.asarray(variant.images[i]) for i in rows])).to(device), variant.normalisation
    )
    for i in range(warmup + steps):
        if i == warmup:
            _sync(device)
            t0 = time.perf_counter()
        with _amp(device, precision):
            model(x)
    _sync(device)
    dt = time.perf_counter() - t0
    return {"batch_size": bs, "precision": precision, "images_per_s": bs * steps / dt}


def bench_loader(variant, codec, batch_size, workers, n_batches, augment, encode=True):
    from functools import partial

    from cephalo.train.data import EpochBatchSampler, HeatmapDataset, make_loader

    factory = None
    if augment:
        from cephalo.augment import build_augmentation

        factory = partial(build_augmentation, {"enabled": True})
    ds = HeatmapDataset(
        variant.images, variant.landmarks, np.arange(len(variant)), codec, factory, seed=0, encode=encode
    )
    sampler = EpochBatchSampler(len(variant), batch_size, seed=0, drop_last=True, max_batches=n_batches)
    ds[0]  # one-time imports/builds (albumentations) before timing; workers fork after this
    t0 = time.perf_counter()
    n = 0
    loader = make_loader(ds, sampler, 0, workers, pin_memory=torch.cuda.is_available())
    for b in loader:
        n += b["image"].shape[0]
    dt = time.perf_counter() - t0
    return {
        "batch_size": batch_size,
        "workers": workers,
        "augment": augment,
        "encode_in_workers": encode,
        "images": n,
        "images_per_s": n / dt,
        "seconds_incl_worker_start": dt,
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny CPU run (tests)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--arch", default=None, help="model (default hrnet_w32; smoke: tiny hrnet_w18)")
    ap.add_argument("--size", type=int, default=None, help="input px (default 768; smoke 64)")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--precision", default="bf16", choices=["bf16", "fp16", "fp32"])
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)

    from cephalo.codecs import create_codec
    from cephalo.io import write_json
    from cephalo.losses import create_loss
    from cephalo.models import create_model
    from cephalo.preprocess import load_variant
    from cephalo.train import make_synthetic_variant

    smoke = a.smoke
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    arch = a.arch or "hrnet_w32"
    kw = {"num_modules": [1, 1, 1], "num_blocks": 1} if smoke and a.arch is None else {}
    if arch.startswith("timm:"):
        kw["pretrained"] = False  # timm models say it explicitly; cephalo's real profile trains from scratch
    size = a.size or (64 if smoke else 768)
    batch_sizes = a.batch_sizes or ([2, 4] if smoke else [4, 8, 16, 32])
    steps = a.steps or (2 if smoke else 20)
    warmup = 1 if smoke else 5
    workers = a.workers if a.workers is not None else (0 if smoke else min(8, os.cpu_count() or 1))
    n_images = 8 if smoke else 64

    def make_model():
        return create_model(arch, len(NAMES), **kw)

    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        vdir = make_synthetic_variant(
            Path(tmp) / "v", n_images=n_images, size=size, landmark_names=NAMES, splits=(("train", 1.0),)
        )
        variant = load_variant(vdir)
        codec = create_codec(input_size=(size, size), heatmap_size=(size // 4, size // 4), sigma=2.0, decoder="dark")
        loss_fn = create_loss("adaptive_wing")
        res = {
            "benchmark": "cephalo train engine",
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "smoke": smoke,
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "arch": arch,
            "arch_kwargs": kw,
            "input_size": size,
            "landmarks": len(NAMES),
        }
        res["train"] = bench_train(
            make_model,
            variant,
            codec,
            loss_fn,
            device,
            batch_sizes,
            steps,
            warmup,
            a.precision if device.type == "cuda" else "fp32",
        )
        if device.type == "cuda" and a.precision != "fp32":
            res["train_fp32_reference"] = bench_train(
                make_model, variant, codec, loss_fn, device, batch_sizes[:2], steps, warmup, "fp32"
            )
        # NCHW against channels-last (what cephalo trains with, train.channels_last), interleaved so both
        # see the same machine state; the ratio is the figure to read (absolute rates move with the load)
        rounds = []
        for _ in range(1 if smoke else 2):
            for cl in (False, True):
                rounds += bench_train(
                    make_model, variant, codec, loss_fn, device, batch_sizes[:1], steps, warmup, "fp32", cl
                )
        rate = {cl: np.median([r["images_per_s"] for r in rounds if r["channels_last"] == cl]) for cl in (False, True)}
        # one torch thread (what a Snakemake job gets by default: OMP_NUM_THREADS=1) against all of them
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            one = bench_train(make_model, variant, codec, loss_fn, device, batch_sizes[:1], steps, warmup, "fp32", True)
        finally:
            torch.set_num_threads(threads)
        res["layout"] = {
            "rounds": rounds,
            "channels_last_speedup": float(rate[True] / rate[False]),
            "threads": threads,
            "one_thread": one[0],
            "threads_speedup": float(rate[True] / one[0]["images_per_s"]),
            "load_average_1min": os.getloadavg()[0],
        }
        res["precision"] = bench_precision(
            make_model, variant, codec, loss_fn, device, batch_sizes[0], 3 if smoke else 10
        )
        res["inference"] = bench_inference(
            make_model,
            variant,
            device,
            batch_sizes[-1],
            steps,
            warmup,
            a.precision if device.type == "cuda" else "fp32",
        )
        fitted = [r for r in res["train"] if "images_per_s" in r]
        best_train = max((r["images_per_s"] for r in fitted), default=float("nan"))
        nb = 4 if smoke else 16
        loader = bench_loader(variant, codec, batch_sizes[0], workers, nb, augment=True, encode=True)
        loader["train_images_per_s"] = best_train
        loader["keep_up"] = loader["images_per_s"] / best_train if best_train == best_train else None
        res["loader"] = loader
        # the CUDA default (train.encode_on_device: auto): targets encoded on the GPU, not in workers
        dev = bench_loader(variant, codec, batch_sizes[0], workers, nb, augment=True, encode=False)
        kp = torch.as_tensor(
            np.stack([variant.landmarks[i] for i in range(batch_sizes[-1] % len(variant) or 1)]), device=device
        )
        codec.encode_torch(kp)
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(10):
            codec.encode_torch(kp)
        _sync(device)
        dev["encode_torch_ms_per_batch"] = 100.0 * (time.perf_counter() - t0)
        dev["train_images_per_s"] = best_train
        dev["keep_up"] = dev["images_per_s"] / best_train if best_train == best_train else None
        res["loader_encode_on_device"] = dev
    res["seconds"] = time.perf_counter() - t_start
    out = a.out or Path("benchmarks/results") / f"{'smoke' if smoke else 'gpu'}-{datetime.now():%Y%m%d-%H%M%S}.json"
    write_json(out, res)
    print(f"wrote {out}", file=sys.stderr)
    return res


if __name__ == "__main__":
    main()
