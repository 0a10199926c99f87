"""DDP under torchrun on CPU (gloo): 2 processes x batch 2 == 1 process x batch 4 (with accumulation)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import NAMES, TinyHeatmapNet, make_trainer, tiny_setup

TESTS = Path(__file__).resolve().parent
CFG = dict(epochs=2, lr=3e-3, head_lr=3e-3, grad_clip=None, seed=5, accumulate=2)

WORKER = """
import sys
from pathlib import Path
import torch
from cephalo.train.distributed import setup, teardown
from helpers import TinyHeatmapNet, make_trainer, tiny_setup

tmp = Path(sys.argv[1])
info = setup("cpu")
try:
    variant, codec, loss, cfg = tiny_setup(tmp / f"data{info.rank}", n=20, size=32, batch_size=2, **{cfg})
    torch.manual_seed(cfg.seed)
    model = TinyHeatmapNet(norm="gn", p=0.0)
    tr = make_trainer(tmp, variant, codec, loss, cfg, out="ddp", model=model, dist_info=info)
    res = tr.run()
    if info.rank == 0:
        torch.save(tr.raw_model.state_dict(), tmp / "ddp_final.pt")
finally:
    teardown()
"""


def _torchrun(args: list[str], tmp_path: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
        OMP_NUM_THREADS="1",
        CUDA_VISIBLE_DEVICES="",
    )
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_torchrun_two_processes_match_one_process_with_same_global_batch(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER.replace("{cfg}", repr(CFG)))
    r = _torchrun([str(script), str(tmp_path)], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    ddp = torch.load(tmp_path / "ddp_final.pt", weights_only=True)

    torch.set_num_threads(1)
    variant, codec, loss, cfg = tiny_setup(tmp_path / "single", n=20, size=32, batch_size=4, **CFG)
    torch.manual_seed(cfg.seed)
    tr = make_trainer(tmp_path, variant, codec, loss, cfg, out="single_run", model=TinyHeatmapNet(norm="gn", p=0.0))
    tr.run()
    one = tr.raw_model.state_dict()
    init = TinyHeatmapNet(norm="gn", p=0.0).state_dict()
    for k in one:
        moved = (one[k] - init[k]).abs().max()
        assert moved > 0 or not one[k].is_floating_point()
        torch.testing.assert_close(ddp[k], one[k], rtol=1e-4, atol=1e-5, msg=f"{k}: DDP != single process")
    # rank 0 alone wrote the run files
    assert (tmp_path / "ddp" / "last.pt").is_file() and (tmp_path / "ddp" / "history.csv").is_file()


@pytest.mark.slow
def test_torchrun_cli_trains_with_gloo(tmp_path):
    from cephalo.models import load_model
    from cephalo.train import make_synthetic_variant
    from helpers import train_params

    vdir = make_synthetic_variant(tmp_path / "v", n_images=12, size=32, landmark_names=NAMES)
    params = train_params(tmp_path, batch_size=2)
    r = _torchrun(
        [
            "-m",
            "cephalo",
            "train",
            "--data",
            str(vdir),
            "--out",
            str(tmp_path / "run"),
            "--params",
            str(params),
            "--no-progress",
            "--workers",
            "0",
        ],
        tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    import json

    summary = json.loads((tmp_path / "run" / "train.json").read_text())
    assert summary["world_size"] == 2 and summary["epochs_run"] == 1
    _, meta = load_model(tmp_path / "run" / "best.pt")
    assert meta.provenance["world_size"] == 2
