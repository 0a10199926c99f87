"""Provenance names the code that ran (issue #25, points 1-2).

1. ``git_dirty`` means the *source* tree: the files the pipeline rewrites itself (the tracked
   ``dvc.lock``, ``results/``, ...) do not make a run "dirty" - tested in a throwaway git clone.
2. A copied project whose environment imports the original's package is refused with one
   ``cephalo: error:`` line naming both folders and the fix; provenance records the imported
   package's own folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cephalo import provenance
from helpers import REPO

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _git(cwd, *args):
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


@pytest.fixture
def clone(tmp_path):
    """A throwaway clone of this repository's HEAD (local clone: hard links, under a second)."""
    dest = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--no-checkout", str(REPO), str(dest)], check=True, timeout=120)
    _git(dest, "checkout", "-q", "HEAD")
    return dest


def _dirty(where: Path) -> bool | None:
    return provenance.git_state.__wrapped__(str(where))[1]


def test_generated_files_do_not_make_the_tree_dirty(clone):
    assert _dirty(clone) is False
    (clone / "dvc.lock").write_text((clone / "dvc.lock").read_text() + "\n# rewritten by dvc repro\n")
    bench = next((clone / "benchmarks" / "results").glob("*.json"))
    bench.write_text(bench.read_text() + "\n")
    assert _dirty(clone) is False, "dvc.lock / benchmark results are run outputs, not code"
    # the source tree: params, code, workflow
    for rel in ("params.yaml", "src/cephalo/provenance.py", "Snakefile"):
        path = clone / rel
        original = path.read_text()
        path.write_text(original + "\n# edited\n")
        assert _dirty(clone) is True, f"an edit of {rel} is a code change"
        path.write_text(original)
    assert _dirty(clone) is False
    # a run from a subfolder sees the same
    assert provenance.git_state.__wrapped__(str(clone / "src" / "cephalo"))[1] is False


def _cephalo(cwd: Path, src: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CEPHALO_ALLOW_FOREIGN_CODE"}
    env["PYTHONPATH"] = os.pathsep.join([str(src), str(REPO / "tests")])
    return subprocess.run(
        [sys.executable, "-m", "cephalo", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_copied_project_running_the_original_code_is_refused(tmp_path):
    copy = tmp_path / "copy"
    (copy / "src").mkdir(parents=True)
    shutil.copytree(REPO / "src" / "cephalo", copy / "src" / "cephalo", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "params.yaml", copy / "params.yaml")
    (copy / "results").mkdir()
    # a byte-identical copy running the original package runs the copy's code: accepted
    r = _cephalo(copy, REPO / "src", "check-params")
    assert r.returncode == 0, r.stderr
    # a code edit in the copy, while its environment imports the ORIGINAL package (the stale
    # editable install): the edit would change nothing - refused
    metrics = copy / "src" / "cephalo" / "evaluate" / "metrics.py"
    metrics.write_text(metrics.read_text() + "\n# an edit in the copy\n")
    r = _cephalo(copy / "results", REPO / "src", "check-params")
    assert r.returncode == 1, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cephalo: error:"), r.stderr
    assert str(copy) in lines[0] and str(REPO / "src" / "cephalo") in lines[0]
    assert "scripts/setup-env.sh" in lines[0] and "pip install -e ." in lines[0]
    # its own code: accepted
    r = _cephalo(copy, copy / "src", "check-params")
    assert r.returncode == 0, r.stderr
    assert "params.yaml: ok" in r.stdout
    # outside any project: nothing to check
    r = _cephalo(tmp_path, REPO / "src", "check-params", str(copy / "params.yaml"))
    assert r.returncode == 0, r.stderr


def test_provenance_records_the_imported_package_folder():
    rec = provenance.collect()
    assert rec["cephalo_path"] == str(Path(provenance.__file__).resolve().parent)
    assert (rec["git_commit"], rec["git_dirty"]) == provenance.git_state()
