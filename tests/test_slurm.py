"""The reduced demo through a real SLURM scheduler (slurmctld + slurmd on this machine).

A one-node cluster (Debian's ``slurm-wlm`` and ``munge``; ``tests/slurm_cluster.sh``) with a CPU
and a GPU partition and one ``gpu`` GRES (a CPU stand-in) runs the reduced demo through
``workflow/profiles/slurm`` and ``snakemake-executor-plugin-slurm``: every job goes through
``sbatch``, the training jobs ask for the GPU, and the metrics equal those of a local run.

Skipped (with the reason) without root, without the SLURM/munge packages, or without the plugin.
The per-job limits are lowered to fit a small machine with --default-resources/--set-resources,
exactly as a site would adapt the profile.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.pipeline, pytest.mark.slow]

HERE = Path(__file__).resolve().parent
RUNS = ("source-isbi2015", "zero_shot-letterbox128", "adabn-letterbox128", "finetune-letterbox128")


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("starting slurmctld/slurmd/munged needs root")
    missing = [
        t
        for t in ("slurmctld", "slurmd", "sbatch", "squeue", "munged")
        if not shutil.which(t) and not Path("/usr/sbin", t).exists()
    ]
    if missing:
        pytest.skip(f"SLURM/munge not installed (apt-get install slurm-wlm munge): missing {missing}")
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        pytest.skip("snakemake-executor-plugin-slurm not installed (pip install 'cephalo[cluster]')")
    d = tmp_path_factory.mktemp("slurm")
    p = subprocess.run(
        ["sh", str(HERE / "slurm_cluster.sh"), "start", str(d)], capture_output=True, text=True, timeout=180
    )
    if p.returncode != 0:
        subprocess.run(["sh", str(HERE / "slurm_cluster.sh"), "stop", str(d)], capture_output=True)
        pytest.skip(f"could not start a one-node SLURM cluster here: {(p.stdout + p.stderr)[-500:]}")
    yield {"SLURM_CONF": str(d / "slurm.conf")}
    subprocess.run(["sh", str(HERE / "slurm_cluster.sh"), "stop", str(d)], capture_output=True)


def _metrics(d: Path) -> dict:
    out = {}
    for run in RUNS:
        m = json.loads((d / "results" / "eval" / run / "metrics.json").read_text())
        out[run] = (m["overall"]["n_images"], m["overall"]["mre_mm"])
    return out


def test_reduced_demo_through_slurm_matches_a_local_run(slurm, tmp_path):
    from helpers import TINY_DEMO as TINY
    from helpers import config_set as _config_set
    from helpers import copy_workflow as _copy
    from helpers import pipeline_env as _env

    env = {**_env(), **slurm, "OMP_NUM_THREADS": "1"}
    local = _copy(tmp_path / "local")
    p = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", "--resources", "gpu=1", "--config", _config_set(TINY)],
        cwd=local,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]

    d = _copy(tmp_path / "slurm")
    small = ["slurm_partition=cpu", "mem_mb=1500", "cpus_per_task=1", "runtime=60"]
    train = [
        f"{r}:{k}"
        for r in ("train_source", "finetune", "train_refiner_source", "finetune_refiner")
        for k in ("slurm_partition=gpu", "mem_mb=2500", "cpus_per_task=1", "runtime=60")
    ]
    # the one-node cluster has no accounting database (slurmdbd), so `sacct` cannot answer: job states come
    # from `squeue` (reliable here: MinJobAge=3600 keeps finished jobs visible), as on such a site
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--workflow-profile",
        "workflow/profiles/slurm",
        "--jobs",
        "2",
        "--latency-wait",
        "10",
        "--verbose",
        "--slurm-status-command",
        "squeue",
        "--config",
        _config_set(TINY),
        "--default-resources",
        *small,
        "--set-resources",
        *train,
    ]
    p = subprocess.run(cmd, cwd=d, env=env, capture_output=True, text=True, timeout=3000)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-6000:]
    # every job went through sbatch (the target rule `all` has no command and runs in place)
    calls = re.findall(r"sbatch call: (.+)", out)
    planned = {int(n) for n in re.findall(r"^total\s+(\d+)", out, re.M)}
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", out)
    assert calls and len(submitted) == len(calls) and planned and max(planned) - 1 == len(submitted), (
        len(calls),
        len(submitted),
        planned,
    )

    # the training jobs asked for the GPU resource on the GPU partition; nothing else did
    def rule(call: str) -> str:
        return re.search(r"--comment '?rule_(\w+?)(?=_wildcards_|['\"\s]|$)", call).group(1)

    gpu_rules = {"train_source", "finetune", "train_refiner_source", "finetune_refiner"}
    by_rule = {}
    for c in calls:
        by_rule.setdefault(rule(c), []).append(c)
    assert {"train_source", "finetune"} <= set(by_rule), sorted(by_rule)
    for r, cs in by_rule.items():
        for c in cs:
            if r in gpu_rules:
                assert "--gpus=1" in c and re.search(r"-p '?gpu'?(\s|$)", c), c
            else:
                assert "--gpus" not in c and "gres" not in c and re.search(r"-p '?cpu'?(\s|$)", c), c
    # same numbers as the local run
    a, b = _metrics(local), _metrics(d)
    for run in RUNS:
        assert a[run][0] == b[run][0] and b[run][1] == pytest.approx(a[run][1], rel=1e-6), (run, a[run], b[run])
    print("\nlocal vs SLURM (n_images, MRE mm):", json.dumps({r: [a[r], b[r]] for r in RUNS}))
