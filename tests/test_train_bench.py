"""benchmarks/gpu.sh --smoke: the GPU benchmark's code path at tiny sizes on CPU."""

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
    env = dict(os.environ, PYTHON=sys.executable, OUT=str(out), CUDA_VISIBLE_DEVICES="")
    r = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu.sh"), "--smoke"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(out.read_text())
    assert res["smoke"] is True and res["input_size"] == 64
    assert [t["batch_size"] for t in res["train"]] == [2, 4]
    assert all(t["images_per_s"] > 0 and t["final_loss"] > 0 for t in res["train"])
    p = res["precision"]
    assert len(p["loss_fp32"]) == len(p["loss_bf16"]) == 3
    # bf16 really ran (CPU autocast) and agrees with fp32 to bf16 precision
    assert 0 < p["first_step_rel_diff"] < 0.05
    assert res["inference"]["images_per_s"] > 0
    assert res["loader"]["images"] == 8 and res["loader"]["keep_up"] > 0
