"""Screenshots of the MLflow runs table and the Compare view (docs/screenshots/).

    python scripts/mlflow_screenshots.py [--project DIR] [--out docs/screenshots]

With ``--project`` it shows that project's store (``mlflow/mlflow.db``, after a pipeline run);
without, it builds a small example store (one training run, three evaluations with made-up
figures) in a temporary folder through ``cephalo.tracking``, as the pipeline logs them. It starts
``mlflow ui`` on a free 127.0.0.1 port, takes the pictures with headless Chromium and stops the
server. Needs ``chromium`` (Debian: ``apt-get install chromium``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def example_store(root: Path) -> None:
    from cephalo import tracking

    cfg = tracking.config_from_params({"experiment": "cephalo-aariz (example)"}, root=root)
    prov = {"cephalo_version": "0.1.0", "git_commit": "example", "git_dirty": False}
    tr = tracking.RunRecord(
        dataset="aariz",
        stage="train",
        variant="letterbox256",
        run_name="train-finetune/letterbox256",
        checkpoint_hash="sha-best",
        provenance=prov,
    )
    tracking.log_run(
        cfg,
        tr,
        params={"lr": 1e-4, "epochs": 40, "arch": "hrnet_w32"},
        metrics={"best_val_mre_mm": 1.71},
        series={"val_mre_mm": [3.1, 2.2, 1.9, 1.71]},
        strict=True,
    )
    for name, stage, chain, mre, sdr in (
        ("zero_shot-letterbox256", "zero_shot", ["sha-src"], 3.42, 41.0),
        ("adabn-letterbox256", "adabn", ["sha-src"], 2.95, 49.5),
        ("finetune-letterbox256", "finetune", ["sha-cal", "sha-best"], 1.64, 78.2),
    ):
        rec = tracking.RunRecord(
            dataset="aariz",
            stage=stage,
            variant="letterbox256",
            run_name=name,
            checkpoint_hash=chain[0],
            provenance=prov,
            link_checkpoints=chain,
        )
        figs = {
            "n_images": 150,
            "n_landmarks/shared": 19,
            "mre_mm/shared": mre,
            "sdr_2.0mm/shared": sdr,
            "mre_mm/all": mre + 0.1,
            "sdr_2.0mm/all": sdr - 1,
            "sdr_2.5mm/all": sdr + 6,
            "sdr_3.0mm/all": sdr + 10,
        }
        tracking.log_run(
            cfg,
            rec,
            params={
                "stage": stage,
                "split": "test",
                "model": f"models/{name}.pt",
                "model_arch": "hrnet_w32",
                "decoder": "dark",
            },
            metrics=figs,
            tables={"measurement_errors": [{"measurement": "SNA", "mae": 1.2}]},
            strict=True,
        )


def shoot(url: str, out: Path, chromium: str, size: str = "1600,900") -> None:
    with tempfile.TemporaryDirectory() as prof:
        subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                f"--user-data-dir={prof}",
                f"--window-size={size}",
                "--virtual-time-budget=20000",
                f"--screenshot={out}",
                url,
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", type=Path, help="a project folder with mlflow/mlflow.db (default: an example store)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "screenshots")
    a = ap.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        sys.exit("mlflow_screenshots: chromium not found (apt-get install chromium)")
    tmp = tempfile.TemporaryDirectory()
    root = a.project.resolve() if a.project else Path(tmp.name)
    if not a.project:
        example_store(root)
    a.out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "ui",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow' / 'mlflow.db'}",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{base}/health", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        else:
            sys.exit("mlflow_screenshots: mlflow ui did not start")
        q = urllib.parse.urlencode({"max_results": 10})
        exps = json.load(urllib.request.urlopen(f"{base}/api/2.0/mlflow/experiments/search?{q}"))["experiments"]
        exp = next(e for e in exps if e["name"] != "Default")
        body = json.dumps({"experiment_ids": [exp["experiment_id"]], "max_results": 50}).encode()
        req = urllib.request.Request(
            f"{base}/api/2.0/mlflow/runs/search", data=body, headers={"Content-Type": "application/json"}
        )
        runs = json.load(urllib.request.urlopen(req))["runs"]
        evals = [
            r["info"]["run_id"]
            for r in runs
            if {t["key"]: t["value"] for t in r["data"].get("tags", [])}.get("stage") != "train"
        ]
        # sorted by the headline figure: the runs table then shows its column
        order = urllib.parse.urlencode({"orderByKey": "metrics.`mre_mm/shared`", "orderByAsc": "true"})
        shoot(
            f"{base}/#/experiments/{exp['experiment_id']}/runs?{order}",
            a.out / "mlflow-runs-table.png",
            chromium,
            "1800,600",
        )
        cmp = urllib.parse.urlencode({"runs": json.dumps(evals[:4]), "experiments": json.dumps([exp["experiment_id"]])})
        shoot(f"{base}/#/compare-runs?{cmp}", a.out / "mlflow-compare.png", chromium, "1600,1900")
        print(f"wrote {a.out / 'mlflow-runs-table.png'} and {a.out / 'mlflow-compare.png'}")
    finally:
        server.terminate()
        server.wait(timeout=30)
        tmp.cleanup()


if __name__ == "__main__":
    main()
