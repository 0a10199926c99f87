"""cephalo CPU benchmark suite: every benchmark in one session, ratios side by side, JSON + Markdown.

    python benchmarks/run_all.py [--quick] [--out benchmarks/results] [--project DIR]
                                 [--snakemake-args "--configfile profiles/real.yaml"]
    python benchmarks/run_all.py --readme [--out benchmarks/results | --from FILE.json]

Writes ``<out>/cpu-<YYYYmmdd-HHMMSS>.json`` and ``<out>/cpu-<...>.md`` (atomically). Sections:

* ``index``: build the landmark index of a synthetic Aariz release, image sizes read from the file
  headers vs from decoded pixels (``bench_index.run``): seconds per 1000 images, and their ratio.
* ``loading``: training batches/s from the preprocessing cache vs decoding + letterboxing the
  originals on the fly, per DataLoader worker count, and the decode-only bound for the same files
  (``bench_loading.run``). Real ISBI 2015 images from ``../shared/data`` when present, else generated.
* ``inference``: ``cephalo.predict.predict_images`` images/s (decode, letterbox, normalise, forward,
  DARK decode, inverse affine) vs the bare model forward on the same preprocessed inputs (batch 1,
  random weights, ``torch.no_grad``): the ratio is the end-to-end overhead of prediction.
* ``training``: seconds per optimizer step (batch 2, float32, adaptive-wing loss, AdamW; the pieces
  of ``benchmarks/bench_train.py``) and the peak resident memory (``resource.getrusage`` maxrss), one
  subprocess per model x size so each peak is its own; ratio to the first model at the same size.
* ``pipeline``: with ``--project DIR`` (a folder where the Snakemake/DVC demo has been run to the
  end): ``snakemake -n`` time and, when that says nothing is to be done, the time of a second
  ``snakemake`` (the no-op); ``dvc status`` time where DIR is a DVC project. Skipped with a note
  otherwise. ``DIR/results/comparison.csv`` (``cephalo compare``) is copied into the report.

``--quick`` runs the smallest sizes (64 px, a few images, one step): a structure test, not a
measurement. ``--readme`` prints the README "Performance" section from the newest ``cpu-*.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "isbi2015" / "RawImage" / "TrainingData"
MODELS = ["timm:hrnet_w18_small", "hrnet_w32"]
FORMAT = "cephalo-benchmarks"

#: per mode: the sizes of every section
CONFIGS = {
    "full": {
        "index_images": 1000,
        "index_size": [384, 480],
        "loading_images": 32,
        "loading_size": 768,
        "loading_batch": 8,
        "loading_batches": 10,
        "workers": [0, 1, 2],
        "models": MODELS,
        "sizes": [512, 768],
        "inference_images": 5,
        "train_batch": 2,
        "train_steps": 3,
        "train_warmup": 1,
    },
    "quick": {
        "index_images": 20,
        "index_size": [64, 80],
        "loading_images": 4,
        "loading_size": 64,
        "loading_batch": 2,
        "loading_batches": 2,
        "workers": [0, 1, 2],
        "models": MODELS,
        "sizes": [64],
        "inference_images": 2,
        "train_batch": 2,
        "train_steps": 1,
        "train_warmup": 1,
    },
}


# --------------------------------------------------------------------------- machine


def cpu_model() -> str:
    """The CPU model name from ``/proc/cpuinfo`` (Linux), else ``platform.processor()``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_info() -> dict:
    """cpu model, logical cores (usable by this process), torch threads, versions, load average."""
    import torch

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cpu": cpu_model(),
        "cores": usable,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def machine_label(m: dict) -> str:
    """Short machine description used in every table row."""
    return f"{m['cpu']}, {m['cores']} cores, {m['torch_threads']} torch threads"


# --------------------------------------------------------------------------- sections


def image_paths(n: int, tmp: Path) -> tuple[list, str]:
    """``n`` real ISBI 2015 images (``../shared/data``) when present, else ``n`` generated 1935x2400 JPEGs."""
    import bench_loading

    if DEFAULT_DATA.is_dir():
        paths = bench_loading.list_images(DEFAULT_DATA, n)
        if len(paths) >= n:
            return paths, f"ISBI 2015 {DEFAULT_DATA.parent.name}/{DEFAULT_DATA.name} JPEG"
    return bench_loading.synthetic_images(tmp, n), "generated 1935x2400 JPEG"


def section_index(cfg: dict) -> dict:
    import bench_index

    return bench_index.run(cfg["index_images"], tuple(cfg["index_size"]))


def section_loading(cfg: dict, tmp: Path) -> dict:
    import bench_loading

    paths, source = image_paths(cfg["loading_images"], tmp)
    return bench_loading.run(
        paths,
        cfg["loading_size"],
        cfg["loading_batch"],
        cfg["loading_batches"],
        tuple(cfg["workers"]),
        source,
        progress=True,
    )


def _model_kwargs(name: str) -> dict:
    return {"pretrained": False} if name.startswith("timm:") else {}


def bench_inference(name: str, size: int, paths: list, source: str) -> dict:
    """``predict_images`` vs the bare forward for one model and letterbox size (module docstring)."""
    import numpy as np
    import torch

    from cephalo.landmarks import ISBI19
    from cephalo.models import create_model
    from cephalo.models.checkpoint import ModelMeta
    from cephalo.predict import BatchSettings, predict_images
    from cephalo.preprocess import normalise, preprocess_image, read_image

    torch.manual_seed(0)
    names = list(ISBI19.names)
    model = create_model(name, len(names), **_model_kwargs(name)).eval()
    spec = {"steps": [{"letterbox": {"size": size}}]}
    meta = ModelMeta(
        arch=name,
        landmark_names=names,
        input_size=(size, size),
        heatmap_size=(size // 4, size // 4),
        variant=spec,
        normalisation={"name": "imagenet"},
        codec={"name": "gaussian", "sigma": 2.0, "decoder": "dark", "convention": "pixel_centre"},
    )
    inputs = [normalise(preprocess_image(read_image(p), spec)[0][None], "imagenet") for p in paths]
    # warm-up of both paths (oneDNN kernel selection, allocator, codec construction, lazy imports)
    predict_images(model, meta, paths[:1], batch=BatchSettings(batch_size=1, device="cpu", progress=False))
    with torch.no_grad():
        y = model(inputs[0])
        t0 = time.perf_counter()
        for x in inputs:
            model(x)
        t_forward = time.perf_counter() - t0
    t0 = time.perf_counter()
    preds = predict_images(model, meta, paths, batch=BatchSettings(batch_size=1, device="cpu", progress=False))
    t_predict = time.perf_counter() - t0
    assert len(preds) == len(paths) and preds[0].coords.shape == (len(names), 2)
    n = len(paths)
    return {
        "model": name,
        "input_size": size,
        "images": n,
        "source": source,
        "batch_size": 1,
        "output_shape": list(y.shape),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "forward_s": t_forward,
        "predict_s": t_predict,
        "forward_images_per_s": n / t_forward,
        "predict_images_per_s": n / t_predict,
        "overhead_ratio": t_predict / t_forward,
        "finite_predictions": bool(np.isfinite(np.stack([p.coords for p in preds])).all()),
    }


def section_inference(cfg: dict, tmp: Path) -> dict:
    from tqdm import tqdm

    paths, source = image_paths(cfg["inference_images"], tmp)
    runs = [(m, s) for s in cfg["sizes"] for m in cfg["models"]]
    return {"results": [bench_inference(m, s, paths, source) for m, s in tqdm(runs, desc="inference", unit="config")]}


def train_worker(spec: dict) -> dict:
    """One training configuration, run in its own process (``--train-worker JSON``): seconds per
    step and the process's peak resident memory (``ru_maxrss``, KiB on Linux)."""
    import torch

    import bench_train
    from cephalo.codecs import create_codec
    from cephalo.losses import create_loss
    from cephalo.models import create_model
    from cephalo.preprocess import load_variant
    from cephalo.train import make_synthetic_variant

    name, size, bs = spec["model"], int(spec["input_size"]), int(spec["batch_size"])
    with tempfile.TemporaryDirectory(prefix="cephalo-bench-") as tmp:
        vdir = make_synthetic_variant(
            Path(tmp) / "v", n_images=bs, size=size, landmark_names=bench_train.NAMES, splits=(("train", 1.0),)
        )
        variant = load_variant(vdir)
        codec = create_codec(input_size=(size, size), heatmap_size=(size // 4, size // 4), sigma=2.0, decoder="dark")
        loss_fn = create_loss("adaptive_wing")
        base_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):  # bench_train prints its own records
            rec = bench_train.bench_train(
                lambda: create_model(name, len(bench_train.NAMES), **_model_kwargs(name)),
                variant,
                codec,
                loss_fn,
                torch.device("cpu"),
                [bs],
                int(spec["steps"]),
                int(spec["warmup"]),
                "fp32",
            )[0]
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "model": name,
        "input_size": size,
        "batch_size": bs,
        "steps": int(spec["steps"]),
        "warmup": int(spec["warmup"]),
        "precision": "fp32",
        "torch_threads": torch.get_num_threads(),
        "seconds_per_step": rec["ms_per_step"] / 1000.0,
        "final_loss": rec["final_loss"],
        "peak_rss_mib": peak_kib / 1024.0,
        "baseline_rss_mib": base_kib / 1024.0,
        "peak_above_baseline_mib": (peak_kib - base_kib) / 1024.0,
    }


def training_ratios(rows: list[dict]) -> list[dict]:
    """Add ``ratio_to`` (model name) and ``ratio`` (seconds per step / its seconds per step) to each
    measured row, the reference being the first measured model at the same input size. In place."""
    for row in rows:
        ref = next((r for r in rows if r["input_size"] == row["input_size"] and "seconds_per_step" in r), None)
        if ref is not None and "seconds_per_step" in row:
            row["ratio_to"] = ref["model"]
            row["ratio"] = row["seconds_per_step"] / ref["seconds_per_step"]
    return rows


def section_training(cfg: dict) -> dict:
    from tqdm import tqdm

    rows = []
    runs = [(m, s) for s in cfg["sizes"] for m in cfg["models"]]
    for m, s in tqdm(runs, desc="training", unit="config"):
        spec = {
            "model": m,
            "input_size": s,
            "batch_size": cfg["train_batch"],
            "steps": cfg["train_steps"],
            "warmup": cfg["train_warmup"],
        }
        r = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--train-worker", json.dumps(spec)],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            rows.append({**spec, "error": (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1]})
            continue
        rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
    training_ratios(rows)
    return {
        "results": rows,
        "memory": "peak resident set size of a fresh process per configuration "
        "(resource.getrusage ru_maxrss), including Python + torch",
    }


def _tool(name: str) -> str | None:
    """The console script next to this interpreter (the same environment), else the one on PATH."""
    p = Path(sys.executable).parent / name
    return str(p) if p.is_file() else shutil.which(name)


def _timed(cmd: list[str], cwd: Path, timeout: float = 600) -> tuple[float, int, str]:
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return time.perf_counter() - t0, 124, f"timed out after {timeout} s"
    return time.perf_counter() - t0, r.returncode, (r.stdout or "") + (r.stderr or "")


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def section_pipeline(project: Path | None, snakemake_args: list[str]) -> dict:
    """Snakemake no-op / dry-run and ``dvc status`` times in ``project`` (module docstring)."""
    if project is None:
        return {"skipped": "no --project DIR given (a folder where the demo pipeline has run to completion)"}
    out: dict = {"project": str(project), "snakemake_args": snakemake_args}
    snakemake = _tool("snakemake")
    if not (project / "Snakefile").is_file():
        out["snakemake"] = {"skipped": f"no Snakefile in {project}"}
    elif snakemake is None:
        out["snakemake"] = {"skipped": "snakemake is not installed (pip install cephalo[pipeline])"}
    else:
        base = [snakemake, "--cores", "1", *snakemake_args]
        t_dry, rc, text = _timed([*base, "-n"], project)
        rec: dict = {"dry_run_s": t_dry, "dry_run_rc": rc}
        up_to_date = rc == 0 and "Nothing to be done" in text
        rec["up_to_date"] = up_to_date
        if rc != 0:
            rec["skipped_noop"] = f"snakemake -n failed (exit {rc}): {_last_line(text)}"
        elif not up_to_date:
            rec["skipped_noop"] = (
                "the workflow is not complete (snakemake -n lists jobs): run it to the end "
                "first; the no-op time would be a real run"
            )
        else:
            t_noop, rc2, text2 = _timed(base, project)
            rec.update(noop_s=t_noop, noop_rc=rc2)
            if rc2 != 0:
                rec["noop_error"] = _last_line(text2)
        out["snakemake"] = rec
    dvc = _tool("dvc")
    if not (project / ".dvc").is_dir() or not (project / "dvc.yaml").is_file():
        out["dvc"] = {"skipped": f"{project} is not a DVC project (no .dvc/ and dvc.yaml)"}
    elif dvc is None:
        out["dvc"] = {"skipped": "dvc is not installed (pip install cephalo[pipeline])"}
    else:
        t, rc, text = _timed([dvc, "status"], project)
        out["dvc"] = {
            "status_s": t,
            "status_rc": rc,
            "up_to_date": rc == 0 and "up to date" in text,
            "message": _last_line(text),
        }
    return out


ACCURACY_COLUMNS = [
    "run",
    "stage",
    "variant",
    "split",
    "n_images",
    "mre_ci95",
    "sdr_2.0_ci95",
    "sdr_2.5_ci95",
    "sdr_3.0_ci95",
    "sdr_4.0_ci95",
    "human_mre_mm",
]


def section_accuracy(project: Path | None) -> dict:
    """``DIR/results/comparison.csv`` as records (all columns), or a skip note."""
    if project is None:
        return {"skipped": "no --project DIR given"}
    p = project / "results" / "comparison.csv"
    if not p.is_file():
        return {"skipped": f"{p} not found (run the pipeline's compare step first)"}
    import pandas as pd

    df = pd.read_csv(p)
    return {"file": str(p), "columns": list(df.columns), "rows": json.loads(df.to_json(orient="records"))}


# --------------------------------------------------------------------------- report


def _g(v: float, unit: str = "") -> str:
    if v is None or v != v:
        return "n/a"
    s = f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return f"{s} {unit}".strip()


def figures(res: dict) -> list[dict]:
    """Table rows: ``section, figure, value, compared_with, ratio, ratio_meaning, inputs`` (strings)."""
    rows = []
    ix = res.get("index")
    if ix:
        h, p = ix["header"]["build_s_per_1000"], ix["pixels"]["build_s_per_1000"]
        rows.append(
            {
                "section": "index",
                "figure": "build index, sizes from file headers",
                "value": _g(h, "s / 1000 images"),
                "compared_with": f"decoding every image: {_g(p, 's / 1000 images')}",
                "ratio": _g(p / h, "x"),
                "ratio_meaning": "decode time / header time",
                "inputs": f"{ix['images']} synthetic Aariz PNGs {ix['image_size'][0]}x{ix['image_size'][1]}, "
                f"2 annotators x 29 landmarks",
            }
        )
    ld = res.get("loading")
    if ld:
        inp = (
            f"{ld['n_images']} {ld['source']} {ld['original_size'][0]}x{ld['original_size'][1]} -> "
            f"letterbox {ld['input_size']}, batch {ld['batch_size']}, {ld['timed_batches']} batches"
        )
        for r in ld["per_workers"]:
            w = r["workers"]
            rows.append(
                {
                    "section": "loading",
                    "figure": f"batches/s from the preprocessing cache, workers={w}",
                    "value": _g(r["cache_batches_per_s"], "batches/s"),
                    "compared_with": f"decode + letterbox on the fly: {_g(r['on_the_fly_batches_per_s'], 'batches/s')}",
                    "ratio": _g(r["speedup_cache_vs_on_the_fly"], "x"),
                    "ratio_meaning": "cache / on the fly",
                    "inputs": inp,
                }
            )
            rows.append(
                {
                    "section": "loading",
                    "figure": f"batches/s decoding + letterboxing on the fly, workers={w}",
                    "value": _g(r["on_the_fly_batches_per_s"], "batches/s"),
                    "compared_with": f"decode-only bound: {_g(r['decode_only_batches_per_s'], 'batches/s')}",
                    "ratio": _g(r["on_the_fly_vs_decode_only"], "x"),
                    "ratio_meaning": "on the fly / decode only",
                    "inputs": inp,
                }
            )
    for r in (res.get("inference") or {}).get("results", []):
        rows.append(
            {
                "section": "inference",
                "figure": f"predict_images, {r['model']} at {r['input_size']} px",
                "value": _g(r["predict_images_per_s"], "images/s"),
                "compared_with": f"bare forward: {_g(r['forward_images_per_s'], 'images/s')}",
                "ratio": _g(r["overhead_ratio"], "x"),
                "ratio_meaning": "predict time / forward time",
                "inputs": f"{r['images']} {r['source']}, batch 1, random weights, "
                f"{r['parameters'] / 1e6:.1f} M parameters",
            }
        )
    for r in (res.get("training") or {}).get("results", []):
        if "error" in r:
            rows.append(
                {
                    "section": "training",
                    "figure": f"{r['model']} at {r['input_size']} px",
                    "value": "failed",
                    "compared_with": r["error"],
                    "ratio": "",
                    "ratio_meaning": "",
                    "inputs": f"batch {r['batch_size']}",
                }
            )
            continue
        rows.append(
            {
                "section": "training",
                "figure": f"s/step, {r['model']} at {r['input_size']} px",
                "value": _g(r["seconds_per_step"], "s/step"),
                "compared_with": f"{r['ratio_to']} at {r['input_size']} px",
                "ratio": _g(r["ratio"], "x"),
                "ratio_meaning": "this / reference s/step",
                "inputs": f"batch {r['batch_size']}, fp32, AdamW + adaptive wing, {r['steps']} timed steps "
                f"after {r['warmup']}; peak RSS {_g(r['peak_rss_mib'], 'MiB')} "
                f"(+{_g(r['peak_above_baseline_mib'], 'MiB')} over the loaded process)",
            }
        )
    pl = res.get("pipeline") or {}
    sm, dv = pl.get("snakemake") or {}, pl.get("dvc") or {}
    if "dry_run_s" in sm:
        args = " ".join(pl.get("snakemake_args") or [])
        rows.append(
            {
                "section": "pipeline",
                "figure": "snakemake -n (dry run)",
                "value": _g(sm["dry_run_s"], "s"),
                "compared_with": "",
                "ratio": "",
                "ratio_meaning": "",
                "inputs": f"{pl['project']} {args}".strip() + ("" if sm.get("up_to_date") else " (NOT up to date)"),
            }
        )
        if "noop_s" in sm:
            rows.append(
                {
                    "section": "pipeline",
                    "figure": "snakemake, second run (no-op)",
                    "value": _g(sm["noop_s"], "s"),
                    "compared_with": "",
                    "ratio": "",
                    "ratio_meaning": "",
                    "inputs": f"{pl['project']} {args}".strip(),
                }
            )
    if "status_s" in dv:
        rows.append(
            {
                "section": "pipeline",
                "figure": "dvc status",
                "value": _g(dv["status_s"], "s"),
                "compared_with": "",
                "ratio": "",
                "ratio_meaning": "",
                "inputs": f"{pl['project']}: {dv['message']}",
            }
        )
    return rows


def _md_cell(s) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def notes(res: dict) -> list[str]:
    """Skipped parts, in words."""
    out = []
    pl = res.get("pipeline") or {}
    if "skipped" in pl:
        out.append(f"pipeline: skipped ({pl['skipped']})")
    for tool in ("snakemake", "dvc"):
        rec = pl.get(tool) or {}
        for k in ("skipped", "skipped_noop", "noop_error"):
            if k in rec:
                out.append(f"pipeline/{tool}: {rec[k]}")
    acc = res.get("accuracy") or {}
    if "skipped" in acc:
        out.append(f"accuracy: skipped ({acc['skipped']})")
    return out


def markdown_table(res: dict) -> str:
    label = machine_label(res["machine"])
    lines = [
        "| section | figure | value | compared with | ratio | inputs | machine |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for f in res["figures"]:
        ratio = f"{f['ratio']} ({f['ratio_meaning']})" if f["ratio"] else ""
        lines.append(
            "| "
            + " | ".join(
                _md_cell(v)
                for v in (f["section"], f["figure"], f["value"], f["compared_with"], ratio, f["inputs"], label)
            )
            + " |"
        )
    return "\n".join(lines)


def accuracy_table(acc: dict) -> str:
    if not acc or "rows" not in acc:
        return ""
    cols = [c for c in ACCURACY_COLUMNS if c in acc["columns"]]
    if len(cols) < 3:
        cols = acc["columns"]
    lines = ["| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
    for r in acc["rows"]:
        lines.append("| " + " | ".join(_md_cell("" if r.get(c) is None else r.get(c)) for c in cols) + " |")
    return "\n".join(lines)


def render_markdown(res: dict) -> str:
    m = res["machine"]
    parts = [
        f"# cephalo CPU benchmarks ({res['date']}"
        f"{', --quick: structure test, not a measurement' if res['quick'] else ''})",
        "",
        f"Command: `{res['command']}`  ",
        f"Machine: {m['cpu']}, {m['cores']} usable cores ({m['cpu_count']} logical), torch {m['torch']} with "
        f"{m['torch_threads']} threads, Python {m['python']}; load average at start "
        f"{', '.join(f'{v:.2f}' for v in m['loadavg_at_start'] or [])}.  ",
        f"Total time: {res['seconds']:.1f} s.",
        "",
        markdown_table(res),
    ]
    acc = accuracy_table(res.get("accuracy") or {})
    if acc:
        parts += ["", f"Accuracy (from `{res['accuracy']['file']}`, MRE in mm and SDR in % with 95 % CIs):", "", acc]
    ns = notes(res)
    if ns:
        parts += ["", "Notes:", ""] + [f"- {n}" for n in ns]
    return "\n".join(parts) + "\n"


def render_readme(res: dict) -> str:
    """The README "Performance" section for a results JSON."""
    m = res["machine"]
    parts = [
        "## Performance",
        "",
        f"Measured on {m['cpu']} ({m['cores']} cores, torch {m['torch']}, {m['torch_threads']} threads) on "
        f"{res['date'][:10]}; reproduce with:",
        "",
        "```bash",
        res["command"],
        "```",
        "",
        "Each ratio compares two ways of doing the same work on the same inputs in the same run."
        + (
            " **These are --quick results (64 px, a few images): a structure test, not a measurement.**"
            if res.get("quick")
            else ""
        ),
        "",
        markdown_table(res),
    ]
    acc = accuracy_table(res.get("accuracy") or {})
    if acc:
        parts += [
            "",
            "Accuracy of the pipeline run (`results/comparison.csv`; MRE in mm, SDR in %, 95 % CIs):",
            "",
            acc,
        ]
    ns = notes(res)
    if ns:
        parts += [""] + [f"- {n}" for n in ns]
    return "\n".join(parts) + "\n"


def latest_results(folder: Path) -> Path:
    """The newest ``cpu-*.json`` in ``folder`` (by the date in its name)."""
    found = sorted(folder.glob("cpu-*.json"))
    if not found:
        raise FileNotFoundError(f"{folder}: no cpu-*.json results (run benchmarks/run_all.py first)")
    return found[-1]


# --------------------------------------------------------------------------- main


def run_all(
    quick: bool,
    out: Path,
    project: Path | None,
    snakemake_args: list[str],
    command: str,
    models: list[str] | None = None,
    sizes: list[int] | None = None,
) -> tuple[Path, Path, dict]:
    """Run every section; write ``cpu-<date>.json`` and ``.md`` in ``out``; return their paths and the results."""
    from cephalo.io import atomic_path, write_json

    cfg = dict(CONFIGS["quick" if quick else "full"])
    if models:
        cfg["models"] = list(models)
    if sizes:
        cfg["sizes"] = list(sizes)
    now = datetime.now()
    res: dict = {
        "format": FORMAT,
        "format_version": 1,
        "date": now.isoformat(timespec="seconds"),
        "command": command,
        "quick": quick,
        "config": cfg,
        "machine": machine_info(),
    }
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cephalo-bench-") as tmp:
        tmp = Path(tmp)
        for name, fn in (
            ("index", lambda: section_index(cfg)),
            ("loading", lambda: section_loading(cfg, tmp)),
            ("inference", lambda: section_inference(cfg, tmp)),
            ("training", lambda: section_training(cfg)),
            ("pipeline", lambda: section_pipeline(project, snakemake_args)),
            ("accuracy", lambda: section_accuracy(project)),
        ):
            print(f"[run_all] {name} ...", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            res[name] = fn()
            res[name]["section_s"] = time.perf_counter() - t0
    res["seconds"] = time.perf_counter() - t_start
    res["figures"] = figures(res)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"cpu-{now:%Y%m%d-%H%M%S}"
    jpath, mpath = out / f"{stem}.json", out / f"{stem}.md"
    write_json(jpath, res)
    with atomic_path(mpath) as t:
        t.write_text(render_markdown(res))
    return jpath, mpath, res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog="Run with nice -n 19 on a shared machine.")
    ap.add_argument("--quick", action="store_true", help="smallest sizes (a structure test, not a measurement)")
    ap.add_argument("--out", type=Path, default=HERE / "results", help="results folder (default benchmarks/results)")
    ap.add_argument(
        "--project",
        type=Path,
        default=None,
        help="a folder where the Snakemake/DVC demo has run to completion (pipeline + accuracy)",
    )
    ap.add_argument("--snakemake-args", default="", help="extra snakemake arguments, one string (e.g. a --configfile)")
    ap.add_argument("--models", nargs="+", default=None, help=f"models (default {' '.join(MODELS)})")
    ap.add_argument("--sizes", nargs="+", type=int, default=None, help="input sizes for inference/training")
    ap.add_argument("--readme", action="store_true", help="print the README Performance section from saved results")
    ap.add_argument("--from", dest="from_file", type=Path, default=None, help="with --readme: this results JSON")
    ap.add_argument("--train-worker", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.train_worker is not None:
        print(json.dumps(train_worker(json.loads(a.train_worker))))
        return 0
    if a.readme:
        try:
            path = a.from_file or latest_results(a.out)
            res = json.loads(Path(path).read_text())
            if res.get("format") != FORMAT:
                raise ValueError(f"{path}: not a {FORMAT} results file")
        except (OSError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        sys.stdout.write(render_readme(res))
        return 0
    if a.project is not None and not a.project.is_dir():
        ap.error(f"--project {a.project}: not a directory")
    cmd = "python benchmarks/run_all.py" + (" " + shlex.join(argv if argv is not None else sys.argv[1:])).rstrip()
    jpath, mpath, _ = run_all(
        a.quick,
        a.out,
        a.project.resolve() if a.project else None,
        shlex.split(a.snakemake_args),
        cmd,
        a.models,
        a.sizes,
    )
    print(f"wrote {jpath}\nwrote {mpath}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
