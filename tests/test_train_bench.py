"""benchmarks/gpu.sh --smoke: the GPU check's code paths at tiny sizes on CPU (phase 1: synthetic
training-engine steps; phase 2: the short real fine-tune through cephalo's CLI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_benchmark_smoke_runs_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    # no real data here: phase 2 (the real fine-tune) is skipped with a message; its own test is below
    env = dict(
        os.environ,
        PYTHON=sys.executable,
        OUT=str(out),
        CUDA_VISIBLE_DEVICES="",
        CEPHALO_SHARED=str(tmp_path / "no-shared"),
    )
    env.pop("CEPHALO_FT_DATA", None)
    r = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu.sh"), "--smoke"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "phase 2 skipped: no real data" in r.stderr
    res = json.loads(out.read_text())
    assert res["smoke"] is True and res["input_size"] == 64
    assert [t["batch_size"] for t in res["train"]] == [2, 4]
    assert all(t["images_per_s"] > 0 and t["final_loss"] > 0 for t in res["train"])
    p = res["precision"]
    assert len(p["loss_fp32"]) == len(p["loss_bf16"]) == 3
    # bf16 really ran (CPU autocast) and agrees with fp32 to bf16 precision
    assert 0 < p["first_step_rel_diff"] < 0.05
    assert p["finite"] is True and p["tolerance_rel"] == 0.05
    assert p["passed"] is (p["max_rel_diff"] <= 0.05)
    assert res["inference"]["images_per_s"] > 0
    lay = res["layout"]  # NCHW then channels-last, same batch and steps: the speed-up is their ratio
    assert [r["channels_last"] for r in lay["rounds"]] == [False, True]
    assert lay["channels_last_speedup"] == pytest.approx(
        lay["rounds"][1]["images_per_s"] / lay["rounds"][0]["images_per_s"]
    )
    assert lay["one_thread"]["channels_last"] is True and lay["threads"] >= 1
    assert lay["threads_speedup"] == pytest.approx(lay["rounds"][1]["images_per_s"] / lay["one_thread"]["images_per_s"])
    assert res["loader"]["images"] == 8 and res["loader"]["keep_up"] > 0
    report = out.with_suffix(".md").read_text()  # benchmarks/gpu_report.py over the same JSON
    assert f"| 2 | fp32 | {res['train'][0]['images_per_s']:.1f} |" in report
    assert f"largest relative difference {p['max_rel_diff']:.4f} (tolerance 0.05)" in report
    assert f"channels-last {lay['channels_last_speedup']:.2f}x" in report


@pytest.mark.slow
def test_gpu_finetune_smoke_runs_the_cli_chain_on_real_data(shared_data, tmp_path):
    """Phase 2 at smoke size: index -> preprocess letterbox128 -> evaluate init -> train (1 epoch,
    4 Hamedan images, HRNet-W32 from a checkpoint in the public format) -> evaluate on 2 images."""
    out = tmp_path / "ft.json"
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", CEPHALO_SHARED=str(shared_data.parent))
    for k in ("CEPHALO_HRNET_CKPT", "CEPHALO_FT_DATA"):
        env.pop(k, None)
    r = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_finetune.py"), "--smoke", "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=420,
    )
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    res = json.loads(out.read_text())
    assert res["smoke"] is True and res["device"] == "cpu" and res["data"]["variant"] == "letterbox128"
    assert res["init"]["public"] is False  # no public weights on this machine: the same-format stand-in
    t = res["train"]
    assert (t["epochs_done"], t["n_train"], t["n_val"], t["precision"]) == (1, 4, 2, "fp32")
    assert t["init_transfer"]["head_channels_copied"] == 19 and t["images_per_s_steady"] > 0
    for stage in ("zero_shot", "finetuned"):
        assert res[stage]["mre_mm"] > 0 and 0 <= res[stage]["sdr_2mm_pct"] <= 100
        assert res[stage]["figures"]["n_images"] == 2 and res[stage]["figures"]["human_mre_mm/all"] > 0
    assert res["gpu"] is None and res["seconds"]["total_s"] > 0
