"""Short real fine-tune of the public ISBI HRNet-W32 at 768 with AMP, through cephalo's own CLI.

Phase 2 of ``benchmarks/gpu.sh``; runs the pipeline's commands (workflow/rules/*.smk) on the real
Hamedan clinic data (``$CEPHALO_SHARED/data/hamedan``, LabelMe, two annotators)::

    cephalo index      --dataset hamedan --root ROOT --out index.parquet --report DIR
    cephalo evaluate   --model INIT --split valid ...          (zero-shot, before the fine-tune)
    cephalo preprocess --index index.parquet --variant letterbox768 --out VARIANT
    cephalo train      --data VARIANT --init INIT --model hrnet_w32 --image_size 768 768
                       --batch_size 4 --lr 1e-5 --epochs N --mixed_precision bf16 --loss adaptive_wing
    cephalo evaluate   --model RUN/best.pt --split valid --index index.parquet ...

with the params of ``profiles/real.yaml`` + ``benchmarks/gpu_finetune.yaml``. The training command
runs under a time budget (``--train-budget-s``); when it runs out, the best checkpoint written so
far (one per epoch with a better validation MRE) is evaluated. While it trains, ``nvidia-smi`` is
sampled every 0.25 s: peak device memory and GPU utilisation (the data loader keeps the GPU busy
when utilisation stays high; compare images/s with phase 1's synthetic, loader-free steps too).

The public checkpoint cannot be downloaded on the GPU machine: give it with ``--checkpoint PATH``
or ``CEPHALO_HRNET_CKPT``; else ``$CEPHALO_SHARED/models/hf_hrnet_w32/best_model.pth``; else the
Hugging Face cache (``cephalo fetch-model``, offline). Without any of them a stand-in in the exact
public format filled with the spec's deterministic recipe is used (``init.public`` false in the
JSON): throughput, memory and loader figures stay valid, the MRE does not.

    python benchmarks/gpu_finetune.py --out benchmarks/results/gpu-finetune-DATE.json
    python benchmarks/gpu_finetune.py --smoke --out /tmp/ft.json   # CPU, 4 + 2 images at 128 px
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "profiles"))
from build import deep_merge  # noqa: E402  (profiles/build.py: the profiles' own merge)

SHARED = Path(os.environ.get("CEPHALO_SHARED", REPO.parent / "shared"))
ANNOTATORS = ("annotated by  Dr.mollabashi", "annotated by Dr.farhadifar")
#: smoke subset: 4 training and 2 validation images without label defects (data README)
SMOKE_IDS = {"train": ["011", "012", "013", "014"], "valid": ["061", "062"]}


def log(msg: str) -> None:
    print(f"[gpu_finetune {time.strftime('%H:%M:%S')}] {msg}", flush=True)


_CHILD: list[int] = []  # process group of the running cephalo command


def _stop_child(signum, frame) -> None:
    """SIGTERM/SIGINT (e.g. gpu.sh's outer ``timeout``): stop the command's whole group, then exit."""
    for pid in _CHILD:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
    raise SystemExit(f"stopped by signal {signum}")


def cephalo(args: list[str], logfile: Path, timeout: float | None = None) -> tuple[int, float, bool]:
    """Run ``python -m cephalo ARGS`` (output to ``logfile``); returns (rc, seconds, stopped by timeout)."""
    cmd = [sys.executable, "-m", "cephalo", *args]
    log(" ".join(cmd[2:]))
    t0 = time.perf_counter()
    with open(logfile, "w") as fh:
        p = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        _CHILD[:] = [p.pid]
        try:
            rc, stopped = p.wait(timeout=timeout), False
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
            rc, stopped = p.returncode, True
        _CHILD.clear()
    dt = time.perf_counter() - t0
    if rc != 0 and not stopped:
        sys.stderr.write(logfile.read_text()[-3000:])
        raise SystemExit(f"cephalo {args[0]} failed (rc {rc}); log {logfile}")
    return rc, dt, stopped


class GpuSampler:
    """``nvidia-smi`` utilisation/memory every 0.25 s in a thread (nothing without nvidia-smi)."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []  # (utilisation %, memory used MiB)
        self.proc = None
        self.thread = None

    def __enter__(self) -> GpuSampler:
        if shutil.which("nvidia-smi") and os.environ.get("CUDA_VISIBLE_DEVICES", "0") != "":
            self.proc = subprocess.Popen(
                [
                    "nvidia-smi",
                    "-i",
                    "0",
                    "--query-gpu=utilization.gpu,memory.used",
                    "--format=csv,noheader,nounits",
                    "-lms",
                    "250",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            self.thread = threading.Thread(target=self._read, daemon=True)
            self.thread.start()
        return self

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                u, m = (float(v) for v in line.split(","))
            except ValueError:
                continue
            self.samples.append((u, m))

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait()
            self.thread.join(timeout=2)

    def summary(self) -> dict | None:
        if not self.samples:
            return None
        base = self.samples[0][1]
        # samples after the model is on the device (memory clearly above the idle level)
        busy = [u for u, m in self.samples if m > base + 1024] or [u for u, _ in self.samples]
        return {
            "n_samples": len(self.samples),
            "interval_s": 0.25,
            "peak_memory_used_mib": max(m for _, m in self.samples),
            "idle_memory_used_mib": base,
            "utilisation_mean_pct": sum(busy) / len(busy),
            "utilisation_median_pct": sorted(busy)[len(busy) // 2],
            "fraction_below_50pct": sum(u < 50 for u in busy) / len(busy),
            "note": "nvidia-smi, whole device: includes the CUDA context and the caching allocator's reserve; "
            "utilisation over the training command after the model reached the GPU (validation and "
            "checkpoint writes included)",
        }


def copy_data(src: Path, dst: Path, last: int = 75) -> None:
    """Copy images 001-``last`` (train 001-060 + valid 061-075, about 50 MB) with both annotators'
    labels into ``dst``, same layout: the part of the set the fine-tune reads, small enough to travel
    to a GPU machine that cannot see ``../shared`` (then ``CEPHALO_FT_DATA=dst``)."""
    for folder, ext in (("pictures", "png"), *((a, "json") for a in ANNOTATORS)):
        (dst / folder).mkdir(parents=True, exist_ok=True)
        for i in range(1, last + 1):
            f = src / folder / f"{i:03d}.{ext}"
            if f.is_file():
                shutil.copy2(f, dst / folder / f.name)


def smoke_root(src: Path, work: Path) -> Path:
    """A Hamedan-layout folder with the 6 smoke images (links to the real files)."""
    root = work / "hamedan_smoke"
    for folder in ("pictures", *ANNOTATORS):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for i in SMOKE_IDS["train"] + SMOKE_IDS["valid"]:
        (root / "pictures" / f"{i}.png").symlink_to(src / "pictures" / f"{i}.png")
        for a in ANNOTATORS:
            (root / a / f"{i}.json").symlink_to(src / a / f"{i}.json")
    return root


def resolve_checkpoint(arg: str | None, work: Path, params: Path) -> tuple[Path, dict]:
    """The public best_model.pth (see the module docstring), else a reference-filled stand-in."""
    for how, p in (
        ("--checkpoint", arg),
        ("CEPHALO_HRNET_CKPT", os.environ.get("CEPHALO_HRNET_CKPT")),
        ("shared", str(SHARED / "models" / "hf_hrnet_w32" / "best_model.pth")),
    ):
        if p and Path(p).is_file():
            return Path(p), {"public": True, "from": how, "path": str(p)}
        if p and how != "shared":
            raise SystemExit(f"{how}: no checkpoint at {p}")
    out = work / "public" / "best_model.pth"
    out.parent.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        [sys.executable, "-m", "cephalo", "fetch-model", "--out", str(out), "--params", str(params)],
        capture_output=True,
        text=True,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
    )
    if r.returncode == 0 and out.is_file():
        return out, {"public": True, "from": "huggingface cache", "path": str(out)}
    log(
        "public checkpoint not available (no --checkpoint, CEPHALO_HRNET_CKPT or HF cache): using the "
        "reference-filled stand-in; the MRE figures are not the public model's"
    )
    import torch

    from cephalo.public_hrnet.reference import public_training_dict, read_keys_json, reference_state_dict

    state = reference_state_dict(read_keys_json(REPO / "tests" / "data" / "hf_hrnet_w32" / "keys.json"))
    torch.save(public_training_dict(state), out)
    return out, {
        "public": False,
        "from": "reference-filled stand-in (tests/data/hf_hrnet_w32/keys.json)",
        "path": str(out),
    }


def metrics_summary(run_dir: Path) -> dict:
    """``metrics.json`` figures (MRE/SDR in mm with 95 % CIs, the two-annotator human limit)."""
    m = json.loads((run_dir / "metrics.json").read_text())
    return {
        "mre_mm": m["overall"]["mre_mm"],
        "sdr_2mm_pct": 100 * m["figures"].get("sdr_2.0mm/all", float("nan")),
        "figures": m["figures"],
        "diagnosis": (m.get("diagnosis") or {}).get("summary"),
    }


def history(run_dir: Path) -> list[dict]:
    p = run_dir / "history.csv"
    if not p.is_file():
        return []
    rows = []
    with open(p) as fh:
        for r in csv.DictReader(fh):
            rows.append({k: (float(v) if k != "is_best" and v not in ("", None) else v) for k, v in r.items()})
    return rows


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    import platform

    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="CPU, 4 train + 2 valid images at 128 px, 1 epoch")
    ap.add_argument("--out", type=Path, default=None, help="result JSON (required unless --copy-data)")
    ap.add_argument("--work", type=Path, default=None, help="run folder (default: a temporary one, removed)")
    ap.add_argument("--checkpoint", default=None, help="the public best_model.pth (else CEPHALO_HRNET_CKPT, ...)")
    ap.add_argument("--device", default=None, help="cuda (default) | cpu (--smoke)")
    ap.add_argument("--epochs", type=int, default=None, help="epoch budget (default: the YAML's 40; smoke 1)")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument(
        "--train-budget-s", type=float, default=None, help="stop training after this (default 150; smoke 240)"
    )
    ap.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help="Hamedan folder (default: $CEPHALO_FT_DATA, else $CEPHALO_SHARED/data/hamedan)",
    )
    ap.add_argument(
        "--copy-data",
        type=Path,
        default=None,
        metavar="DIR",
        help="only copy images 001-075 with their labels from --data-root to DIR (to carry them)",
    )
    ap.add_argument(
        "--engine-json",
        type=Path,
        default=None,
        help="phase 1 result (bench_train.py) for the loader-free images/s at the same batch size",
    )
    a = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_child)
    t_start = time.perf_counter()
    data = a.data_root or Path(os.environ.get("CEPHALO_FT_DATA") or SHARED / "data" / "hamedan")
    if not (data / "pictures").is_dir():
        raise SystemExit(f"real data not present at {data} (set CEPHALO_FT_DATA or CEPHALO_SHARED)")
    if a.copy_data:
        copy_data(data, a.copy_data)
        log(f"copied images 001-075 and labels to {a.copy_data}")
        return 0
    if a.out is None:
        ap.error("--out is required")
    device = a.device or ("cpu" if a.smoke else "cuda")
    variant = "letterbox128" if a.smoke else "letterbox768"
    size = 128 if a.smoke else 768
    epochs = a.epochs or (1 if a.smoke else None)
    budget = a.train_budget_s or (240.0 if a.smoke else 150.0)
    tmp = None
    if a.work is None:
        tmp = tempfile.TemporaryDirectory(prefix="cephalo-gpuft-")
        work = Path(tmp.name)
    else:
        work = a.work
        work.mkdir(parents=True, exist_ok=True)
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    try:
        over = yaml.safe_load((REPO / "benchmarks" / "gpu_finetune.yaml").read_text())
        over = deep_merge(over, {"train": {"device": device}, "evaluate": {"device": device}})
        if a.smoke:
            over = deep_merge(
                over,
                {
                    "train": {"num_workers": 0, "batch_size": 2, "deterministic": False},
                    "evaluate": {"n_boot": 20, "n_worst": 1},
                },
            )
        p = deep_merge(yaml.safe_load((REPO / "profiles" / "real.yaml").read_text()), over)
        params = work / "params.yaml"
        params.write_text(yaml.safe_dump(p, sort_keys=False))
        tcfg = p["train"]
        bs = a.batch_size or tcfg["batch_size"]
        workers = a.workers if a.workers is not None else tcfg["num_workers"]
        epochs = epochs or tcfg["epochs"]
        root = smoke_root(data, work) if a.smoke else data
        ckpt, init = resolve_checkpoint(a.checkpoint, work, params)
        times = {}
        index = work / "index" / "hamedan.parquet"
        _, times["index_s"], _ = cephalo(
            [
                "index",
                "--dataset",
                "hamedan",
                "--root",
                str(root),
                "--out",
                str(index),
                "--report",
                str(work / "index" / "report"),
                "--params",
                str(params),
            ],
            logs / "index.log",
        )
        vdir = work / "variants" / f"hamedan_{variant}"
        _, times["preprocess_s"], _ = cephalo(
            ["preprocess", "--index", str(index), "--variant", variant, "--out", str(vdir), "--params", str(params)],
            logs / "preprocess.log",
        )
        ev = ["--data", str(vdir), "--split", "valid", "--index", str(index), "--params", str(params)]
        _, times["evaluate_init_s"], _ = cephalo(
            ["evaluate", "--model", str(ckpt), *ev, "--out", str(work / "eval" / "zero_shot"), "--stage", "zero_shot"],
            logs / "evaluate_init.log",
        )
        run = work / "models" / "finetune"
        train = [
            "train",
            "--data",
            str(vdir),
            "--init",
            str(ckpt),
            "--out",
            str(run),
            "--params",
            str(params),
            "--model",
            "hrnet_w32",
            "--image_size",
            str(size),
            str(size),
            "--batch_size",
            str(bs),
            "--lr",
            str(tcfg["lr"]),
            "--epochs",
            str(epochs),
            "--loss",
            tcfg["loss"],
            "--workers",
            str(workers),
            "--device",
            device,
            "--restart",
            "--no-progress",
        ]
        if device.startswith("cuda"):
            train += ["--mixed_precision", tcfg["mixed_precision"]]
        with GpuSampler() as gpu:
            rc, times["train_s"], stopped = cephalo(train, logs / "train.log", timeout=budget)
        hist = history(run)
        tj = json.loads((run / "train.json").read_text()) if (run / "train.json").is_file() else {}
        ij = json.loads((run / "init_report.json").read_text()) if (run / "init_report.json").is_file() else {}
        if not (run / "best.pt").is_file():
            raise SystemExit(
                f"no best.pt after training (rc {rc}, stopped by budget {stopped}); log {logs / 'train.log'}"
            )
        _, times["evaluate_s"], _ = cephalo(
            [
                "evaluate",
                "--model",
                str(run / "best.pt"),
                *ev,
                "--out",
                str(work / "eval" / "finetune"),
                "--stage",
                "finetune",
            ],
            logs / "evaluate.log",
        )
        ips = [r["images_per_s"] for r in hist]
        steady = ips[1:] or ips  # epoch 1 includes cuDNN autotuning and worker start-up
        res = {
            "date_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            "smoke": a.smoke,
            "device": device,
            "device_name": device_name(device),
            "data": {
                "dataset": "hamedan",
                "root": str(root),
                "variant": variant,
                "train_split": "train",
                "val_split": "valid",
            },
            "init": init,
            "recipe": {
                "model": "hrnet_w32",
                "image_size": size,
                "batch_size": bs,
                "lr": tcfg["lr"],
                "epochs_budget": epochs,
                "train_budget_s": budget,
                "loss": tcfg["loss"],
                "workers": workers,
                "mixed_precision": tcfg["mixed_precision"] if device.startswith("cuda") else "none (CPU: fp32)",
                "deterministic": tcfg.get("deterministic", True),
            },
            "train": {
                "epochs_done": len(hist),
                "precision": tj.get("precision"),
                "n_train": tj.get("n_train"),
                "n_val": tj.get("n_val"),
                "steps_per_epoch": tj.get("steps_per_epoch"),
                "init_transfer": ij.get("counts"),
                "stopped_by_budget": stopped,
                "rc": rc,
                "images_per_s_epochs": ips,
                "images_per_s_steady": (sum(steady) / len(steady)) if steady else None,
                "epoch_time_s": [r["epoch_time_s"] for r in hist],
                "val_mre_mm_epochs": [r["val_mre_mm"] for r in hist],
                "loader_wait_fraction": None,  # history.csv does not record it; see gpu below
                "history": hist,
            },
            "gpu": gpu.summary(),
            "zero_shot": metrics_summary(work / "eval" / "zero_shot"),
            "finetuned": metrics_summary(work / "eval" / "finetune"),
            "seconds": {**times, "total_s": time.perf_counter() - t_start},
            "command": " ".join(["cephalo", *train]),
            "train_log_tail": (logs / "train.log").read_text(errors="replace")[-2000:],
        }
        if a.engine_json and a.engine_json.is_file():
            eng = json.loads(a.engine_json.read_text())
            hit = [t for t in eng.get("train", []) if t.get("batch_size") == bs and t.get("images_per_s")]
            if hit and res["train"]["images_per_s_steady"]:
                res["loader"] = {
                    "engine_images_per_s_same_batch": hit[0]["images_per_s"],
                    "ratio_real_to_engine": res["train"]["images_per_s_steady"] / hit[0]["images_per_s"],
                    "note": "real epochs (loader, augmentation, per-step loss sync) vs phase 1's "
                    "synthetic steps; epoch time excludes validation",
                }
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(res, indent=2, default=str) + "\n")
        g = res["gpu"] or {}
        log(
            f"wrote {a.out}: {len(hist)} epochs ({'stopped by the budget' if stopped else 'complete'}), "
            f"{res['train']['images_per_s_steady']:.3g} img/s, peak {g.get('peak_memory_used_mib')} MiB, "
            f"GPU busy {g.get('utilisation_mean_pct')} %; valid MRE {res['zero_shot']['mre_mm']:.3f} mm (init) -> "
            f"{res['finetuned']['mre_mm']:.3f} mm, SDR@2mm {res['finetuned']['sdr_2mm_pct']:.1f} %"
            + ("" if init["public"] else " [stand-in init, not the public weights]")
        )
        return 0
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    raise SystemExit(main())
