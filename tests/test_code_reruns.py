"""Code-aware reruns in both engines, checked in a throwaway clone of the repository.

The pipeline's outputs are stood in by placeholder files made up to date without running anything
(Snakemake ``--touch``; DVC ``commit``), then code, comments and docs are edited and each engine's
dry run (``snakemake -n``, ``dvc status``) says what it would run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cephalo import fingerprint

pytestmark = [pytest.mark.pipeline, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]


# --- the fingerprint itself (fast) -------------------------------------------------------------


def _pkg_copy(tmp_path: Path) -> Path:
    dst = tmp_path / "cephalo"
    shutil.copytree(REPO / "src" / "cephalo", dst, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize("edit", ["comment", "docstring"])
def test_fingerprint_ignores_comments_and_docstrings(tmp_path, edit):
    pkg = _pkg_copy(tmp_path)
    before = fingerprint.code_fingerprints(root=pkg)
    m = pkg / "evaluate" / "metrics.py"
    if edit == "comment":
        _edit(m, "def sdr(", "# a new comment\ndef sdr(")
    else:
        _edit(m, '"""Landmark metrics', '"""Reworded: landmark metrics')
    assert fingerprint.code_fingerprints(root=pkg) == before


def test_fingerprint_follows_the_import_closure(tmp_path):
    pkg = _pkg_copy(tmp_path)
    before = fingerprint.code_fingerprints(root=pkg)
    _edit(pkg / "evaluate" / "metrics.py", "SDR_TOLERANCE_MM: float = 1e-6", "SDR_TOLERANCE_MM: float = 2e-6")
    after = fingerprint.code_fingerprints(root=pkg)
    changed = {k for k in before if before[k] != after[k]}
    assert {"evaluate", "compare", "train"} <= changed  # they all run the metric code
    # the closure is conservative (function-level imports count), but data code does not import
    # evaluation (the index's annotator check measures with cephalo.geometry): a metric edit leaves
    # the data stages alone
    assert not changed & {"download", "index", "preprocess", "make-demo", "check-params"}, changed
    # the granularity is shown with a module that one command alone reaches
    pkg2 = _pkg_copy(tmp_path / "b")
    before2 = fingerprint.code_fingerprints(root=pkg2)
    _edit(pkg2 / "evaluate" / "report_html.py", "max_mm: float = 6.0", "max_mm: float = 7.0")
    after2 = fingerprint.code_fingerprints(root=pkg2)
    assert {k for k in before2 if before2[k] != after2[k]} == {"compare"}


def test_write_only_when_changed(tmp_path):
    out = tmp_path / "code"
    first = fingerprint.write_code_fingerprints(out, ["evaluate"])
    mtime = (out / "evaluate.sha256").stat().st_mtime_ns
    assert first == {"evaluate": True}
    assert fingerprint.write_code_fingerprints(out, ["evaluate"]) == {"evaluate": False}
    assert (out / "evaluate.sha256").stat().st_mtime_ns == mtime
    assert re.fullmatch(r"[0-9a-f]{64}\n", (out / "evaluate.sha256").read_text())


# --- both engines in a throwaway clone (slow) --------------------------------------------------


def _env(clone: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(clone / "src")  # the clone's code is what runs (and is fingerprinted)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.update(DVC_NO_ANALYTICS="1", MPLBACKEND="Agg")
    return env


def _run(cmd: list[str], clone: Path, check: bool = True) -> str:
    p = subprocess.run(cmd, cwd=clone, env=_env(clone), capture_output=True, text=True, timeout=600)
    if check and p.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p.stdout + p.stderr


def _smk(clone: Path, *extra: str) -> str:
    return _run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--cores",
            "1",
            "--resources",
            "gpu=1",
            "--rerun-triggers",
            "mtime",
            *extra,
        ],
        clone,
    )


def _smk_jobs(clone: Path) -> set[str]:
    """Rules a Snakemake dry run would run (empty set: nothing to be done)."""
    text = _smk(clone, "-n")
    return {m.group(1) for m in re.finditer(r"^\s*(?:local)?rule (\w+):", text, re.M)} - {"all"}


def _dvc_changed(clone: Path) -> set[str]:
    text = _run([sys.executable, "-m", "dvc", "status"], clone)
    if "up to date" in text:
        return set()
    return {m.group(1).split("@")[0] for m in re.finditer(r"^([\w@./-]+):\s*$", text, re.M)}


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """A clone whose every pipeline output exists and is up to date in both engines."""
    if shutil.which("git") is None:
        pytest.skip("git not found")
    dst = tmp_path_factory.mktemp("clone") / "repo"
    subprocess.run(["git", "clone", "-q", str(REPO), str(dst)], check=True, timeout=120)
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    if dirty:  # test the working tree's pipeline, not only the last commit's
        for rel in ("Snakefile", "workflow", "dvc.yaml", "params.yaml", "src"):
            src = REPO / rel
            if src.is_dir():
                shutil.rmtree(dst / rel)
                shutil.copytree(src, dst / rel, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(src, dst / rel)
    # placeholder outputs: every output of a forced dry run, directories with one file inside
    text = _run([sys.executable, "-m", "snakemake", "-n", "--forceall", "--cores", "1"], dst)
    outs = [o.strip() for m in re.finditer(r"^    output: (.+)$", text, re.M) for o in m.group(1).split(",")]
    assert outs, text[-2000:]
    dirs = {"resources/demo/isbi2015", "resources/demo/aariz", "results/summary"} | {
        o for o in outs if o.startswith("results/variants/")
    }
    for o in outs:
        p = dst / o
        if o in dirs:
            p.mkdir(parents=True, exist_ok=True)
            (p / "placeholder").write_text(o)
        else:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(o)
    _smk(dst, "--touch")
    assert _smk_jobs(dst) == set()
    _run([sys.executable, "-m", "dvc", "commit", "-f", "-q"], dst)
    assert _dvc_changed(dst) == set()
    return dst


def _git_reset(clone: Path) -> None:
    for rel in (
        "src/cephalo/evaluate/metrics.py",
        "src/cephalo/evaluate/report_html.py",
        "README.md",
        "workflow/rules/evaluate.smk",
    ):
        subprocess.run(["git", "checkout", "-q", "--", rel], cwd=clone, check=True)


def test_docs_and_smk_comments_rerun_nothing(clone):
    _edit(clone / "README.md", "# cephalo", "# cephalo (edited)")
    _edit(clone / "workflow" / "rules" / "evaluate.smk", "# ", "# (edited comment) ")
    _edit(clone / "src" / "cephalo" / "evaluate" / "metrics.py", "def sdr(", "# a comment\ndef sdr(")
    try:
        assert _smk_jobs(clone) == set()
        # DVC: the code stage sees src/ changed, reruns (seconds) and writes the same fingerprints
        _run([sys.executable, "-m", "dvc", "repro", "-q", "code_fingerprint"], clone)
        assert _dvc_changed(clone) == set()
    finally:
        _git_reset(clone)
        _run([sys.executable, "-m", "dvc", "repro", "-q", "code_fingerprint"], clone)


def test_metric_change_reruns_evaluation_in_both_engines(clone):
    _edit(
        clone / "src" / "cephalo" / "evaluate" / "metrics.py",
        "SDR_TOLERANCE_MM: float = 1e-6",
        "SDR_TOLERANCE_MM: float = 2e-6",
    )
    try:
        smk = _smk_jobs(clone)
        assert {"evaluate", "compare"} <= smk, smk
        _run([sys.executable, "-m", "dvc", "repro", "-q", "code_fingerprint"], clone)
        dvc = _dvc_changed(clone)
        assert {"evaluate_source", "evaluate_zero_shot", "evaluate", "compare"} <= dvc, dvc
        # (make_demo reruns too: its closure reaches the metric code through the params schema, see
        # test_fingerprint_follows_the_import_closure; the compare-only case below shows the granularity)
    finally:
        _git_reset(clone)
        _smk(clone, "--touch")
        _run([sys.executable, "-m", "dvc", "repro", "-q", "code_fingerprint"], clone)


def test_compare_only_change_reruns_only_compare(clone):
    _edit(clone / "src" / "cephalo" / "evaluate" / "report_html.py", "max_mm: float = 6.0", "max_mm: float = 7.0")
    try:
        assert _smk_jobs(clone) == {"compare"}
        _run([sys.executable, "-m", "dvc", "repro", "-q", "code_fingerprint"], clone)
        assert _dvc_changed(clone) == {"compare"}
    finally:
        _git_reset(clone)


def test_the_stages_a_metric_edit_reruns_are_printed_by_one_command():
    """`cephalo code-fingerprint --importers MODULE`: the commands (stages) whose fingerprint covers it."""
    from click.testing import CliRunner

    from cephalo.cli import main

    r = CliRunner().invoke(main, ["code-fingerprint", "--importers", "cephalo.evaluate.metrics"])
    assert r.exit_code == 0, r.output
    line = r.output.strip().splitlines()[-1]
    assert line.startswith("cephalo.evaluate.metrics: ")
    stages = set(line.split(": ", 1)[1].split())
    assert {"evaluate", "compare", "train", "calibrate"} <= stages
    assert not stages & {"download", "index", "preprocess", "make-demo", "check-params", "fetch-model"}
    r = CliRunner().invoke(main, ["code-fingerprint", "--closure", "download"])
    assert r.exit_code == 0 and "cephalo.evaluate.metrics" not in r.output and "cephalo.commands.download" in r.output
    r = CliRunner().invoke(main, ["code-fingerprint"])
    assert r.exit_code == 2
