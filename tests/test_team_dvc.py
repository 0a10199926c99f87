"""A team's pipeline through DVC (docs/team.md), with real ``git``, ``dvc`` and ``snakemake`` processes.

One throwaway git repository (the "origin") runs the tiny demo with Snakemake, which records its outputs
in dvc.lock; ``dvc push`` sends every output to a remote. A fresh ``git clone`` + ``dvc pull`` must then
be complete for both engines: ``dvc status`` clean, ``snakemake -n`` plans nothing, and ``cephalo
compare`` shows the same figures. Every command docs/team.md shows is run here.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import REPO, pipeline_env
from helpers import TINY_DEMO as TINY
from helpers import copy_workflow as _copy
from helpers import set_dotted as _set

pytestmark = [pytest.mark.pipeline, pytest.mark.slow]

DVC = [sys.executable, "-m", "dvc"]
SMK = [sys.executable, "-m", "snakemake", "--cores", "2", "--resources", "gpu=1"]


def _env() -> dict:
    env = pipeline_env()
    env.update(
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.org",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.org",
        GIT_CONFIG_NOSYSTEM="1",
    )
    env["PYTHONPATH"] = str(REPO / "src")
    return env


def _run(
    cmd: list[str], cwd: Path, check: bool = True, timeout: int = 900, env: dict | None = None
) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, cwd=cwd, env={**_env(), **(env or {})}, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


def _out(cmd: list[str], cwd: Path, **kw) -> str:
    p = _run(cmd, cwd, **kw)
    return p.stdout + p.stderr


def _git(cwd: Path, *args: str) -> str:
    return _out(["git", *args], cwd)


def _smk_jobs(d: Path) -> set[str]:
    text = _out([*SMK, "-n"], d)
    return {m.group(1) for m in re.finditer(r"^\s*(?:local)?rule (\w+):", text, re.M)} - {"all"}


def _figures(d: Path) -> str:
    """What `cephalo compare` shows for the runs in ``d`` (its Markdown table)."""
    out = d.parent / f"figures-{d.name}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    runs = sorted(str(p) for p in (d / "results" / "eval").iterdir())
    _run(["cephalo", "compare", *runs, "--out", str(out / "cmp"), "--params", "params.yaml"], d)
    return (out / "cmp.csv").read_text()


@pytest.fixture(scope="module")
def origin(tmp_path_factory) -> Path:
    """A git + DVC repository whose tiny demo Snakemake ran (recorded in dvc.lock), committed."""
    if shutil.which("git") is None:
        pytest.skip("git not found")
    d = _copy(tmp_path_factory.mktemp("team") / "origin")
    shutil.copy2(REPO / ".gitignore", d / ".gitignore")
    params = yaml.safe_load((d / "params.yaml").read_text())
    for k, v in TINY.items():
        _set(params, k, v)
    (d / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _git(d, "init", "-q", "-b", "main")
    _out(DVC + ["init", "-q"], d)
    _git(d, "add", "-A")
    _git(d, "commit", "-q", "-m", "pipeline")
    text = _out(SMK, d)
    assert "DVC: recorded" in text, text[-3000:]
    assert "up to date" in _out(DVC + ["status"], d)
    _git(d, "add", "-A")
    _git(d, "commit", "-q", "-m", "results recorded in dvc.lock")
    return d


def _fresh_clone(origin: Path, name: str) -> Path:
    dst = origin.parent / name
    shutil.rmtree(dst, ignore_errors=True)
    _git(origin.parent, "clone", "-q", str(origin), str(dst))
    return dst


def _assert_complete(clone: Path, origin: Path) -> None:
    """Both engines agree that nothing is missing, and the figures are the origin's."""
    assert "up to date" in _out(DVC + ["status"], clone)
    assert _smk_jobs(clone) == set()
    assert "up to date" in _out(DVC + ["status"], clone)  # Snakemake's planning changed nothing DVC checks
    assert _figures(clone) == _figures(origin)


def test_every_output_is_cached_so_a_lost_file_comes_back(origin):
    """Point 1: each file either engine checks is a cached out; `dvc checkout` restores a lost one."""
    lost = [
        "results/eval/finetune-letterbox128/metrics.json",
        "results/eval/finetune-letterbox128/plots/sdr_curve.csv",
        "results/models/source/history.csv",
        "results/quality/aariz/quality.json",
        "results/code/evaluate.sha256",
        "results/summary/finetune-letterbox128.json",
        "results/comparison.html",
    ]
    before = {rel: (origin / rel).read_bytes() for rel in lost}
    for rel in lost:
        (origin / rel).unlink()
    assert "up to date" not in _out(DVC + ["status"], origin)
    _out(DVC + ["checkout"], origin)
    assert {rel: (origin / rel).read_bytes() for rel in lost} == before
    assert "up to date" in _out(DVC + ["status"], origin)
    assert _smk_jobs(origin) == set()


def test_local_remote_push_then_pull_in_a_fresh_clone(origin, tmp_path):
    """Points 1 and 2: docs/team.md's local-folder remote, push, then a fresh clone pulls everything."""
    remote = tmp_path / "dvc-store"
    _out(DVC + ["remote", "add", "-d", "store", str(remote)], origin)
    _git(origin, "commit", "-q", "-m", "DVC remote", ".dvc/config")
    _out(DVC + ["push"], origin)
    clone = _fresh_clone(origin, "clone-local")
    assert not (clone / "results").exists()
    _out(DVC + ["pull"], clone)
    _assert_complete(clone, origin)


# --- point 2: an SSH remote against a real sshd on 127.0.0.1 --------------------------------------------
SSHD = Path("/usr/sbin/sshd")


@pytest.fixture
def sshd(tmp_path):
    """A throwaway OpenSSH server on a free 127.0.0.1 port: its own host key, one user key, public key only.

    Yields ``(url_prefix, keyfile, home)``: ``ssh://USER@127.0.0.1:PORT``, the user's private key, and a
    HOME whose ``.ssh/known_hosts`` holds the server's host key (so the client checks it).
    """
    import getpass
    import socket
    import time

    if not SSHD.exists() or shutil.which("ssh-keygen") is None:
        pytest.skip("no OpenSSH server here (Debian: apt-get install openssh-server)")
    if importlib.util.find_spec("dvc_ssh") is None:
        pytest.skip("dvc-ssh is not installed (pip install 'cephalo[pipeline]')")
    d = tmp_path / "sshd"
    d.mkdir()
    for key in ("host", "user"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / key)], check=True, timeout=30)
    shutil.copy2(d / "user.pub", d / "authorized_keys")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host'}\nAuthorizedKeysFile {d / 'authorized_keys'}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
        f"PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\nPidFile {d / 'sshd.pid'}\n"
        "Subsystem sftp internal-sftp\n"
    )
    if os.geteuid() == 0:  # sshd's privilege separation folder
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
    log = open(d / "sshd.log", "w")  # noqa: SIM115 - closed below
    # -D: stays in the foreground (ours to stop); -e: log to stderr
    proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(d / "sshd_config")], stdout=log, stderr=log)
    try:
        end = time.monotonic() + 20
        while time.monotonic() < end and proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        if proc.poll() is not None:
            pytest.skip(f"sshd could not start: {(d / 'sshd.log').read_text()[-500:]}")
        home = tmp_path / "home"
        (home / ".ssh").mkdir(parents=True)
        host_key = (d / "host.pub").read_text().split()
        (home / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
        yield f"ssh://{getpass.getuser()}@127.0.0.1:{port}", d / "user", home
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_ssh_remote_push_then_pull_in_a_fresh_clone(origin, sshd, tmp_path, monkeypatch):
    """Point 2: docs/team.md's SSH remote (dvc-ssh) against a real local sshd: push, fresh clone, pull."""
    url, keyfile, home = sshd
    monkeypatch.setenv("HOME", str(home))  # the client checks the server against this known_hosts
    store = tmp_path / "ssh-store"
    _out(DVC + ["remote", "add", "sshstore", f"{url}{store}"], origin)
    _out(DVC + ["remote", "modify", "--local", "sshstore", "keyfile", str(keyfile)], origin)
    _out(DVC + ["push", "-r", "sshstore"], origin)
    assert any((store / "files" / "md5").iterdir())
    _git(origin, "commit", "-q", "-m", "SSH remote", ".dvc/config")
    clone = _fresh_clone(origin, "clone-ssh")
    _out(DVC + ["remote", "modify", "--local", "sshstore", "keyfile", str(keyfile)], clone)
    _out(DVC + ["pull", "-r", "sshstore"], clone)
    _assert_complete(clone, origin)


def test_dvcignore_lets_dvc_see_exactly_the_declared_evaluation_outputs():
    """The compare stage depends on results/eval; .dvcignore hides the undeclared files of a run folder."""
    sys.path.insert(0, str(REPO / "workflow"))
    try:
        import stages
    finally:
        sys.path.remove(str(REPO / "workflow"))
    declared = {o.removeprefix("results/eval/RUN/") for o in stages.eval_outs("RUN")}
    allowed = {
        line[len("!results/eval/*/") :]
        for line in (REPO / ".dvcignore").read_text().splitlines()
        if line.startswith("!results/eval/*/") and not line.endswith("/")
    }
    assert allowed == declared


# --- point 3: one lock for both engines ------------------------------------------------------------------
def _wait_for_lock_holder(d: Path, proc: subprocess.Popen, word: str, timeout: float = 120) -> None:
    """Until ``proc`` holds .dvc/tmp/lock (zc.lockfile writes the pid only once the lock is taken)."""
    import time

    lock = d / ".dvc" / "tmp" / "lock"
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, f"{word} ended before it took the lock: {proc.communicate()}"
        try:
            if lock.read_text().split()[:1] == [str(proc.pid)]:
                return
        except OSError:
            pass
        time.sleep(0.1)
    pytest.fail(f"{word} did not take the lock in {timeout} s")


def _change_calibration(d: Path, conf_floor: float) -> None:
    """Make calibration, the adabn/finetune evaluations and compare due in both engines (a new params value;
    a value not seen before, or DVC would restore the outputs from its run cache instead of running)."""
    params = yaml.safe_load((d / "params.yaml").read_text())
    params["calibrate"]["conf_floor"] = conf_floor
    (d / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_snakemake_refuses_beside_dvc_repro_and_dvc_repro_beside_snakemake(origin):
    """Point 3: each engine refuses, before writing anything, while the other one writes this project."""
    # a stale lock file of a dead process is no lock
    lock = origin / ".dvc" / "tmp" / "lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text("999999999 dvc repro\n")
    # 1. DVC is running (an experiment, docs/team.md: `dvc exp run -S ...`): Snakemake says so in one line
    #    and stops before its first job
    dvc = subprocess.Popen(
        DVC + ["exp", "run", "-S", "calibrate.conf_floor=0.02"],
        cwd=origin,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_for_lock_holder(origin, dvc, "dvc exp run")
        p = _run(SMK, origin, check=False)
        assert p.returncode != 0
        lines = [ln for ln in (p.stdout + p.stderr).splitlines() if ln.startswith("cephalo: error:")]
        assert lines and "another run writes this project's outputs" in lines[0] and "dvc exp run" in lines[0], (
            p.stdout + p.stderr
        )[-3000:]
    finally:
        out, _ = dvc.communicate(timeout=900)
    assert dvc.returncode == 0, out[-3000:]  # the DVC run was not disturbed
    assert "Running stage 'calibrate@adabn-letterbox128'" in out  # the experiment ran what -S changed
    assert yaml.safe_load((origin / "params.yaml").read_text())["calibrate"]["conf_floor"] == 0.02  # applied
    assert "up to date" in _out(DVC + ["status"], origin)
    # 2. Snakemake is running: it holds the lock from `onstart` (seen on a real run), and `dvc repro` beside
    #    that lock refuses before it runs (or removes) anything. The refusal is shown with the lock held by
    #    the very function `onstart` calls (`engine_lock.acquire`, as a Snakemake run's argv), held until
    #    DVC has answered: on a quiet machine the tiny pipeline's run can end within DVC's start-up.
    _change_calibration(origin, 0.03)
    smk = subprocess.Popen(SMK, cwd=origin, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for_lock_holder(origin, smk, "snakemake")  # its pid in .dvc/tmp/lock: `onstart` took the lock
    finally:
        out, _ = smk.communicate(timeout=900)
    assert smk.returncode == 0, out[-3000:]
    assert "DVC: recorded" in out  # the lock was given back before the record (which takes it)
    assert "up to date" in _out(DVC + ["status"], origin)
    assert _smk_jobs(origin) == set()
    _change_calibration(origin, 0.04)
    hold = (
        "import sys, time; sys.path.insert(0, 'workflow'); import engine_lock; "
        "lock = engine_lock.acquire('.', ['snakemake', '--cores', '2']); print('held', flush=True); "
        "sys.stdin.readline(); engine_lock.release(lock)"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", hold], cwd=origin, env=_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        p = _run(DVC + ["repro"], origin, check=False)
        assert p.returncode != 0 and "Unable to acquire lock" in p.stdout + p.stderr, (p.stdout + p.stderr)[-3000:]
        assert "snakemake" in lock.read_text()
        assert "snakemake" in _out([sys.executable, str(origin / "workflow" / "engine_lock.py")], origin)
    finally:
        holder.communicate("\n", timeout=60)
    assert "up to date" not in _out(DVC + ["status"], origin)  # nothing ran: the change still waits
    _out(DVC + ["repro"], origin)  # the lock given back, DVC runs it
    assert "up to date" in _out(DVC + ["status"], origin)


# --- point 4: DVC's tables at 120 columns ---------------------------------------------------------------
def _width(text: str) -> int:
    return max(len(line.rstrip()) for line in text.splitlines())


def test_metrics_and_experiment_tables_fit_120_columns(origin):
    """docs/team.md's `dvc metrics show`, `dvc exp show ...` and `dvc metrics diff` are readable at 120 columns."""
    cols = {"COLUMNS": "120"}
    if "0.02" not in _out(DVC + ["exp", "show", "--no-pager", "--csv"], origin):
        _out(DVC + ["exp", "run", "-S", "calibrate.conf_floor=0.02"], origin)  # the lock test made it already
    metrics = _out(DVC + ["metrics", "show"], origin, env=cols)
    exps = _out(
        DVC
        + ["exp", "show", "--no-pager", "--only-changed", "--drop", "results/.*|src/.*|Created", "--precision", "3"],
        origin,
        env=cols,
    )
    diff = _out(DVC + ["metrics", "diff", "HEAD", "--all", "--precision", "3"], origin, env=cols)
    # one row per run, four figures, no row for Snakemake's directory stamp
    rows = [ln for ln in metrics.splitlines() if ln.startswith("results/summary/")]
    assert len(rows) == 5 and ".snakemake_timestamp" not in metrics, metrics
    assert {"mre_mm/shared", "mre_mm/all", "sdr_2.0mm/shared", "human_mre_mm/shared"} <= set(metrics.split())
    assert _width(metrics) <= 120, metrics
    # the experiments with the param they changed, not an ellipsis
    assert "calibrate.conf_floor" in exps and "0.02" in exps and "…" not in exps, exps
    assert _width(exps) <= 120, exps
    # and the figures of the workspace against the last commit, one row each
    assert "mre_mm/shared" in diff and "finetune-letterbox128" in diff and _width(diff) <= 120, diff
    # the dry run DVC cannot do here (docs/team.md), Snakemake plans: the stages the value changes
    jobs = _out([*SMK, "-n", "--config", "set=calibrate.conf_floor=0.05"], origin)
    planned = {m.group(1) for m in re.finditer(r"^\s*(?:local)?rule (\w+):", jobs, re.M)} - {"all"}
    assert planned == {"calibrate", "evaluate", "compare"}, jobs[-2000:]


#: the commands docs/results.md ("Reading the results") shows -> what a finished demo project answers
#: (`mlflow ui` is run by test_team_mlflow_doc.py, on the same store layout); `cephalo compare` is named
#: without its arguments there: it is run on every evaluation of the project
READING_COMMANDS = {
    "dvc metrics show": "results/summary",
    "dvc plots show": "dvc_plots/index.html",
    "snakemake --report report.html": "report.html",
    "cephalo code-fingerprint --importers cephalo.evaluate.metrics": "evaluate",
    "cephalo code-fingerprint --closure evaluate": "cephalo.evaluate.metrics",
    "cephalo code-fingerprint --help": "--importers",
    "cephalo compare": "cmp.md",
}


def test_every_reading_the_results_command_runs_on_a_finished_demo(origin, tmp_path):
    """docs/results.md shows these commands for a finished run: each runs there and answers (in a copy)."""
    doc = (REPO / "docs" / "results.md").read_text()
    section = doc[doc.index("## Reading the results") : doc.index("Every figure below comes from one command")]
    shown = set(re.findall(r"`((?:dvc|snakemake|cephalo) [^`]+)`", section))
    assert shown == set(READING_COMMANDS), shown ^ set(READING_COMMANDS)
    d = tmp_path / "project"
    shutil.copytree(origin, d, symlinks=True)
    runs = sorted(str(p.relative_to(d)) for p in (d / "results" / "eval").iterdir())
    for cmd, answer in READING_COMMANDS.items():
        words = cmd.split()
        if cmd == "cephalo compare":
            words += [*runs, "--out", "cmp", "--params", "params.yaml"]
        exe = {"dvc": DVC, "snakemake": [*SMK[:3], "--cores", "1"], "cephalo": ["cephalo"]}[words[0]]
        text = _out([*exe, *words[1:]], d)
        if answer.endswith((".html", ".md")):
            page = (d / answer).read_text(errors="replace")
            assert (d / answer).stat().st_size > 1000, cmd
            assert "<html" in page.lower() if answer.endswith(".html") else "mre_mm/shared" in page, cmd
        else:
            assert answer in text, (cmd, text[-2000:])
    assert "up to date" in _out(DVC + ["status"], d)  # reading changed nothing either engine checks
