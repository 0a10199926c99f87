"""workflow/engine_lock.py: one lock for Snakemake and DVC (fast; the engines themselves: test_team_dvc.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from helpers import REPO, load_script

lk = load_script(REPO / "workflow" / "engine_lock.py", "cephalo_workflow_engine_lock_test")


@pytest.fixture
def project(tmp_path):
    (tmp_path / ".dvc" / "tmp").mkdir(parents=True)
    return tmp_path


def test_no_dvc_repository_no_lock(tmp_path):
    assert lk.acquire(tmp_path, ["snakemake"]) is None


def test_a_stale_lock_file_of_a_dead_process_is_no_lock(project):
    (project / lk.LOCK).write_text("999999999 dvc repro\n")
    lock = lk.acquire(project, ["/x/bin/snakemake", "--cores", "2"])
    assert (project / lk.LOCK).read_text().split() == [str(os.getpid()), "snakemake", "--cores", "2"]
    lk.release(lock)


def test_a_held_lock_refuses_with_one_line_naming_the_holder(project):
    # another live process holds DVC's lock, the way `dvc repro` does
    code = (
        "import sys, time, zc.lockfile; l = zc.lockfile.LockFile(sys.argv[1]); print('held', flush=True); "
        "time.sleep(60)"
    )
    p = subprocess.Popen([sys.executable, "-c", code, str(project / lk.LOCK)], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "held"
        with pytest.raises(lk.EngineBusy) as e:
            lk.acquire(project, ["snakemake"])
        msg = str(e.value)
        assert "\n" not in msg and f"pid {p.pid}" in msg and "another run writes this project's outputs" in msg
    finally:
        p.kill()
        p.wait()
    lk.release(lk.acquire(project, ["snakemake"]))  # the kernel dropped the dead holder's lock


def test_outputs_write_locked_by_a_live_dvc_stage_refuse_and_a_dead_one_does_not(project):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        rw = {
            "write": {"results/eval": {"pid": sleeper.pid, "cmd": "/v/lib/dvc/__main__.py exp run -S a=1"}},
            "read": {},
        }
        (project / lk.RWLOCK).write_text(json.dumps(rw))
        with pytest.raises(lk.EngineBusy, match=rf"pid {sleeper.pid}: dvc exp run -S a=1"):
            lk.acquire(project, ["snakemake"])
    finally:
        sleeper.kill()
        sleeper.wait()
    lk.release(lk.acquire(project, ["snakemake"]))


@pytest.mark.parametrize(
    "argv, writes",
    [
        (["/venv/bin/snakemake", "--cores", "2", "--resources", "gpu=1"], True),
        (["/venv/lib/python3.11/site-packages/snakemake/__main__.py", "--cores", "2"], True),  # python -m snakemake
        (["/venv/bin/snakemake", "--cores", "2", "--touch"], True),  # --touch rewrites the outputs' times
        (["/venv/bin/snakemake", "-n"], False),
        (["/venv/bin/snakemake", "--cores", "2", "--dry-run", "--configfile", "profiles/real.yaml"], False),
        (["/venv/bin/snakemake", "--dag"], False),
        (["/venv/bin/snakemake", "--list-rules"], False),
        (["/venv/bin/snakemake", "--cores", "2", "--no-hooks"], False),  # skips the lock by design (docs/team.md)
        (["/venv/bin/python", "my_driver.py"], None),  # the Python API: the lock is taken at the first job
        ([], None),
    ],
)
def test_a_snakemake_command_line_is_told_to_run_or_only_plan(argv, writes):
    """A run that writes takes the lock before it plans; a dry run, a listing or a drawing takes nothing."""
    assert lk.snakemake_writes(argv) is writes
