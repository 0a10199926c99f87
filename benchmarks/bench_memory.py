"""Peak training memory of the Aariz profile's model per batch size, from activations measured on CPU.

The saved-for-backward tensors of a forward pass are the same on CPU and CUDA, so the memory a GPU
needs can be computed on any machine (``cephalo.train.memory``: parameters, gradients and AdamW
moments + batch x measured activations, x 1.25 for the allocator and workspaces)::

    python benchmarks/bench_memory.py                      # hrnet_w32, 768 px, batch 4 8 16, fp32 + bf16
    python benchmarks/bench_memory.py --size 128 --arch hrnet_w32 --out /tmp/m.json   # quick

Writes ``benchmarks/results/memory-<date>.json`` and ``.md`` (the table the README quotes). Where a
GPU is at hand, ``benchmarks/gpu.sh`` measures the real peak for the same batches beside it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from cephalo.io import write_json
from cephalo.models import create_model
from cephalo.provenance import cpu_model
from cephalo.train.memory import GiB, estimate_training_memory

#: GPUs the table is read against: approximate memory a process can use, GiB
GPUS = {"H100 80GB": 79.2, "A100 40GB": 39.4, "RTX 4090 24GB": 23.6, "T4 16GB": 14.6}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="hrnet_w32")
    ap.add_argument("--landmarks", type=int, default=29)
    ap.add_argument("--size", type=int, default=768)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[4, 8, 16])
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    torch.manual_seed(0)
    model = create_model(a.arch, a.landmarks)
    t0 = time.perf_counter()
    rows = {}
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        est = estimate_training_memory(model, (a.size, a.size), "cpu", dtype)
        rows[name] = {
            "estimate": est.to_dict(),
            "peak_gib": {str(b): est.peak_bytes(b) / GiB for b in a.batch_sizes},
            "largest_batch": {g: est.largest_batch(int(v * GiB)) for g, v in GPUS.items()},
        }
    res = {
        "benchmark": "training memory per batch (computed from CPU-measured activations)",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": cpu_model(),
        "load_average": os.getloadavg(),
        "torch": torch.__version__,
        "arch": a.arch,
        "landmarks": a.landmarks,
        "input_size": a.size,
        "optimizer": "AdamW",
        "precision": rows,
        "seconds": time.perf_counter() - t0,
    }
    out = a.out or Path("benchmarks/results") / f"memory-{datetime.now():%Y%m%d-%H%M%S}.json"
    write_json(out, res)
    out.with_suffix(".md").write_text(markdown(res))
    print(markdown(res))
    print(f"wrote {out} and {out.with_suffix('.md')}", file=sys.stderr)
    return res


def markdown(res: dict) -> str:
    """The table: estimated peak GiB per batch and precision, and the largest batch per GPU."""
    bs = list(next(iter(res["precision"].values()))["peak_gib"])
    lines = [
        f"Training memory of {res['arch']} ({res['landmarks']} landmarks) at {res['input_size']} px, AdamW; "
        f"computed {res['date'][:10]} from activations measured on CPU ({res['machine']}), x "
        f"{next(iter(res['precision'].values()))['estimate']['margin']} for the allocator and workspaces "
        "(an estimate, not a GPU measurement).",
        "",
        "| precision | "
        + " | ".join(f"batch {b}: peak GiB" for b in bs)
        + " | "
        + " | ".join(f"largest batch, {g}" for g in GPUS)
        + " |",
        "| --- | " + " | ".join("---" for _ in bs) + " | " + " | ".join("---" for _ in GPUS) + " |",
    ]
    for name, row in res["precision"].items():
        lines.append(
            f"| {name} | "
            + " | ".join(f"{row['peak_gib'][b]:.1f}" for b in bs)
            + " | "
            + " | ".join(str(row["largest_batch"][g]) for g in GPUS)
            + " |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
