"""Markdown of one ``benchmarks/gpu.sh`` run: the rehearsal on the GPU, throughput, memory, loader, AMP.

    python benchmarks/gpu_report.py --engine gpu-DATE.json [--rehearsal gpu-DATE-rehearsal.json]
                                    [--memory memory-DATE.json] --out gpu-DATE.md

Every figure is read from the JSON files the run wrote (nothing typed); the README's GPU block is
this file's output.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _load(path: Path | None) -> dict | None:
    return json.loads(path.read_text()) if path and path.is_file() else None


def render(engine: dict, rehearsal: dict | None = None, memory: dict | None = None) -> str:
    """The report (Markdown) of one run of ``bench_train.py`` (a GPU check, or the CPU layout measurement)."""
    # only a CUDA run records peak memory (or an out-of-memory batch)
    on_gpu = any("peak_memory_gib" in r or r.get("oom") for r in engine.get("train", []))
    unit = "the GPU" if on_gpu else "training"
    lines = [
        f"# {'GPU check' if on_gpu else 'Training engine on CPU'} {engine['date']} on {engine['device']}",
        "",
        f"torch {engine['torch']}, CUDA {engine.get('cuda')}; {engine['arch']} at {engine['input_size']} px, "
        f"{engine['landmarks']} landmarks.",
        "",
    ]
    if rehearsal is not None:
        lines += [
            "## The Aariz profile's rehearsal on this device",
            "",
            f"`scripts/rehearse_aariz.py run` (every rule of profiles/aariz.yaml + profiles/rehearsal/aariz.yaml): "
            f"exit {rehearsal['rc']}, {rehearsal['seconds']:.0f} s; training precision "
            f"{', '.join(sorted(set(rehearsal.get('precisions', [])))) or 'n/a'}.",
            "",
        ]
    lines += [
        "## Training throughput (synthetic data, no loader)",
        "",
        "| batch | precision | images/s | ms/step | peak GiB | estimate GiB |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    est = {}
    if memory is not None:
        for prec, row in memory["precision"].items():
            est.update({(prec, int(b)): v for b, v in row["peak_gib"].items()})
    for key in ("train", "train_fp32_reference"):
        for r in engine.get(key, []):
            prec = r.get("precision", "fp32" if key.endswith("reference") else "bf16")
            if "images_per_s" not in r:
                lines.append(
                    f"| {r['batch_size']} | {prec} | out of memory | | | "
                    f"{est.get((prec, r['batch_size']), float('nan')):.1f} |"
                )
                continue
            lines.append(
                f"| {r['batch_size']} | {prec} | {r['images_per_s']:.1f} | {r['ms_per_step']:.0f} | "
                f"{r.get('peak_memory_gib', float('nan')):.1f} | {est.get((prec, r['batch_size']), float('nan')):.1f} |"
            )
    loader = engine.get("loader", {})
    if loader.get("keep_up"):
        idle = max(0.0, 1.0 - loader["keep_up"])
        lines += [
            "",
            f"Data loader: {loader['images_per_s']:.1f} images/s with {loader.get('workers')} workers against "
            f"{loader['train_images_per_s']:.1f} training images/s: {unit} would wait for data "
            f"{100 * idle:.0f} % of the time (idle fraction = 1 - loader rate / training rate, floored at 0).",
        ]
    layout = engine.get("layout", {})
    if layout.get("rounds"):
        nchw = [r["images_per_s"] for r in layout["rounds"] if not r["channels_last"]]
        nhwc = [r["images_per_s"] for r in layout["rounds"] if r["channels_last"]]
        lines += [
            "",
            f"Memory layout (fp32 training, batch {layout['rounds'][0]['batch_size']}, interleaved rounds): NCHW "
            f"{', '.join(f'{v:.1f}' for v in nchw)} images/s, channels-last {', '.join(f'{v:.1f}' for v in nhwc)}: "
            f"channels-last {layout['channels_last_speedup']:.2f}x; channels-last with {layout.get('threads')} "
            f"torch threads {layout.get('threads_speedup', float('nan')):.2f}x one thread (1-minute load average "
            f"{layout.get('load_average_1min', float('nan')):.2f}).",
        ]
    p = engine.get("precision", {})
    if p:
        lines += [
            "",
            f"AMP: {p['steps']} steps of bf16 autocast vs fp32 from the same weights and batches: losses "
            f"{'all finite' if p.get('finite') else 'NOT FINITE'}, largest relative difference "
            f"{p['max_rel_diff']:.4f} (tolerance {p.get('tolerance_rel')}): "
            f"{'passed' if p.get('passed') else 'FAILED'}.",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", type=Path, required=True)
    ap.add_argument("--rehearsal", type=Path, default=None)
    ap.add_argument("--memory", type=Path, default=None)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    a.out.write_text(render(json.loads(a.engine.read_text()), _load(a.rehearsal), _load(a.memory)))
    print(a.out.read_text())


if __name__ == "__main__":
    main()
