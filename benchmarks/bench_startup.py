"""Start-up cost of the command line: ``cephalo --help`` and the fixed cost of ``cephalo predict`` on one image.

Each command runs ``--repeats`` times as a fresh subprocess (median wall time). Side by side:

* ``python -c pass``: the interpreter alone (the floor);
* ``python -c "import torch"``: what any command that runs a model must pay;
* ``cephalo --help`` and ``cephalo predict --help``: must not import torch/numpy-heavy modules;
* ``cephalo predict`` on one 1340 x 1671 image with a tiny checkpoint (input 256 px, CPU), with
  ``--no-overlays --no-report`` (model + JSON/CSV) and with every output (overlay PNG, HTML);
* the slowest imports of ``cephalo predict`` (``python -X importtime``, cumulative microseconds).

Prints one JSON object (``--out FILE`` also writes it)::

    python benchmarks/bench_startup.py [--repeats 5] [--image PATH] [--out FILE]

``--image`` defaults to ``../shared/data/hamedan/pictures/001.png`` when present, else a synthetic
smooth image of that size.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _time(cmd: list[str], repeats: int, env: dict, cwd: Path) -> dict:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        r = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        if r.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr[-500:]}")
    return {"median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3), "runs": len(times)}


def _importtime(cmd: list[str], env: dict, cwd: Path, top: int = 8) -> list[dict]:
    r = subprocess.run([sys.executable, "-X", "importtime", *cmd], env=env, cwd=cwd, capture_output=True, text=True)
    rows = []
    for line in r.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            parts = line[len("import time:") :].split("|")
            if parts[1].strip().isdigit():
                name = parts[2].rstrip()
                rows.append(
                    {
                        "module": name.strip(),
                        "cumulative_ms": int(parts[1]) / 1000.0,
                        "depth": (len(name) - len(name.lstrip()) - 1) // 2,
                    }
                )
    top_level = [r_ for r_ in rows if r_["depth"] <= 1]
    return [
        {k: v for k, v in r_.items() if k != "depth"}
        for r_ in sorted(top_level, key=lambda r_: -r_["cumulative_ms"])[:top]
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--image", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    import numpy as np
    import torch

    from cephalo.models import ModelMeta, create_model, save_checkpoint

    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "HF_HUB_OFFLINE": "1",
        "MPLBACKEND": "Agg",
        "OPENCV_LOG_LEVEL": "OFF",
    }
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        image = args.image
        default = REPO.parent / "shared" / "data" / "hamedan" / "pictures" / "001.png"
        if image is None and default.is_file():
            image = default
        if image is None:
            import cv2

            rng = np.random.default_rng(0)
            img = cv2.GaussianBlur(rng.uniform(0, 255, (1671, 1340)).astype(np.float32), (0, 0), 20)
            image = tmp / "synthetic.png"
            cv2.imwrite(str(image), cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8))
        size = 256
        torch.manual_seed(0)
        names = ["sella", "nasion", "menton"]
        model = create_model("hrnet_w18", len(names), num_modules=(1, 1, 1), num_blocks=1)
        meta = ModelMeta(
            arch="hrnet_w18",
            landmark_names=names,
            input_size=(size, size),
            heatmap_size=(size // 4, size // 4),
            variant={"steps": [{"step": "letterbox", "size": [size, size]}]},
            normalisation={"name": "imagenet"},
            codec={
                "name": "gaussian",
                "input_size": [size, size],
                "heatmap_size": [size // 4, size // 4],
                "sigma": 2.0,
                "decoder": "dark",
                "convention": "pixel_centre",
            },
        )
        ckpt = save_checkpoint(tmp / "tiny.pt", model, meta)
        cli = [sys.executable, "-m", "cephalo"]
        predict = [*cli, "predict", "--model", str(ckpt), str(image), "--spacing", "0.127", "--device", "cpu"]
        cases = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "python -c 'import torch'": [sys.executable, "-c", "import torch"],
            "cephalo --help": [*cli, "--help"],
            "cephalo predict --help": [*cli, "predict", "--help"],
            "cephalo predict (1 image, JSON/CSV)": [*predict, "--out", str(tmp / "o1"), "--no-overlays", "--no-report"],
            "cephalo predict (1 image, all outputs)": [*predict, "--out", str(tmp / "o2")],
        }
        res = {name: _time(cmd, args.repeats, env, tmp) for name, cmd in cases.items()}
        base = res["python -c pass"]["median_s"]
        for r in res.values():
            r["x_python"] = round(r["median_s"] / base, 1)
        heavy = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys, cephalo.cli; print(sorted(m for m in "
                "('torch', 'numpy', 'pandas', 'matplotlib', 'cv2') if m in sys.modules))",
            ],
            env=env,
            capture_output=True,
            text=True,
        ).stdout.strip()
        out = {
            "machine": {
                "python": platform.python_version(),
                "cpu": platform.processor() or platform.machine(),
                "cores": os.cpu_count(),
                "torch": torch.__version__,
                "load_average_1m": round(os.getloadavg()[0], 1),
            },
            "image": str(image),
            "timings": res,
            "heavy_modules_after_import_cephalo_cli": heavy,
            "slowest_imports_of_predict_ms": _importtime(
                ["-m", "cephalo", *predict[3:], "--out", str(tmp / "o3"), "--no-overlays", "--no-report"], env, tmp
            ),
        }
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
