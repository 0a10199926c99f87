"""CPU forward time of the heatmap models, side by side: timm HRNet-W18-small vs the public-layout HRNet-W32.

Usage:
    python benchmarks/bench_models.py [--sizes 256 512 768] [--repeats 3] [--threads N]
                                      [--models timm:hrnet_w18_small hrnet_w32] [--out bench_models.json]

For each model and square input size S: one warm-up pass, then ``--repeats`` timed forward passes
(batch 1, eval mode, ``torch.inference_mode``); reports median / min seconds, parameter count and
output shape. Random weights (speed does not depend on the values). Output: JSON (atomic write).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from cephalo.io import write_json
from cephalo.models import create_model


def bench(name: str, size: int, repeats: int) -> dict:
    kw = {"pretrained": False} if name.startswith("timm:") else {}
    model = create_model(name, 19, **kw).eval()
    x = torch.randn(1, 3, size, size)
    with torch.inference_mode():
        y = model(x)  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    return {
        "model": name,
        "input_size": [size, size],
        "output_shape": list(y.shape),
        "parameters": sum(p.numel() for p in model.parameters()),
        "seconds_median": statistics.median(times),
        "seconds_min": min(times),
        "repeats": repeats,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["timm:hrnet_w18_small", "hrnet_w32"])
    ap.add_argument("--sizes", nargs="+", type=int, default=[256, 512, 768])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--out", default="bench_models.json")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for size in args.sizes:
        for name in args.models:
            r = bench(name, size, args.repeats)
            rows.append(r)
            print(
                f"{name:>24s} {size:4d}px  median {r['seconds_median']:.3f} s  min {r['seconds_min']:.3f} s  "
                f"params {r['parameters'] / 1e6:.1f} M  out {tuple(r['output_shape'])}",
                flush=True,
            )
    table = {
        str(size): {r["model"]: r["seconds_median"] for r in rows if r["input_size"][0] == size} for size in args.sizes
    }
    write_json(
        args.out,
        {
            "device": "cpu",
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "machine": platform.machine(),
            "processor": platform.processor(),
            "side_by_side_seconds_median": table,
            "results": rows,
        },
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
