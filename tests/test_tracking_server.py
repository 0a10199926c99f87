"""An MLflow tracking server with a PostgreSQL backend: two machines, one store (issue #25, point 4).

``scripts/mlflow-server.sh start DIR PORT`` starts Debian's PostgreSQL (a cluster in DIR, on
127.0.0.1 only, as the ``postgres`` user when run as root) and ``mlflow server`` with an artifact
root it serves. Two working folders (standing for two machines) log runs with their artifacts
through ``CEPHALO_TRACKING_URI``; both runs land in one experiment and each one's artifacts open
from the other folder. Skipped, with the reason, where PostgreSQL or psycopg2 is missing.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from helpers import REPO

SCRIPT = REPO / "scripts" / "mlflow-server.sh"

LOG = """
import json, sys
from cephalo import tracking
cfg = tracking.config_from_params({"experiment": "shared-store"}, root=".")
rec = tracking.RunRecord(dataset="aariz", stage="evaluate", variant="lb", run_name=sys.argv[1])
rid = tracking.log_run(cfg, rec, params={"machine": sys.argv[1]}, metrics={"mre_mm/all": float(sys.argv[2])},
                       artifacts=["metrics.json"], strict=True)
print(json.dumps({"run_id": rid}))
"""

READ = """
import json, sys
from mlflow.tracking import MlflowClient
from cephalo import tracking
cfg = tracking.config_from_params({}, root=".")
c = MlflowClient(tracking_uri=tracking.tracking_uri(cfg))
exp = c.get_experiment_by_name("shared-store")
runs = c.search_runs([exp.experiment_id])
out = {}
for r in runs:
    local = c.download_artifacts(r.info.run_id, "metrics.json", sys.argv[1])
    out[r.info.run_name] = {"mre": r.data.metrics["mre_mm/all"], "artifact": json.load(open(local)),
                            "kind": exp.tags.get("mlflow.experimentKind")}
print(json.dumps(out))
"""


def _free_port_pair() -> int:
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port < 65000:
            with socket.socket() as s2:
                try:
                    s2.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
    pytest.skip("no free pair of ports on 127.0.0.1")


def _why_not() -> str | None:
    if not glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        return "PostgreSQL is not installed (Debian: apt-get install postgresql)"
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return "psycopg2 is not installed (pip install psycopg2-binary; the 'pipeline' extra)"
    if (
        os.geteuid() == 0
        and subprocess.run(["id", os.environ.get("PG_USER", "postgres")], capture_output=True).returncode
    ):
        return "running as root without a 'postgres' user for PostgreSQL"
    return None


@pytest.fixture
def server():
    why = _why_not()
    if why:
        pytest.skip(why)
    data = Path(tempfile.mkdtemp(prefix="cephalo-mlflow-server-"))  # outside pytest's root-only tmp folders
    port = _free_port_pair()
    env = {**os.environ, "PYTHON": sys.executable}
    r = subprocess.run(
        ["bash", str(SCRIPT), "start", str(data), str(port)], env=env, capture_output=True, text=True, timeout=240
    )
    try:
        if r.returncode:
            logs = "".join(
                p.read_text()[-1500:] for p in (data / "mlflow.log", data / "pg" / "postgres.log") if p.is_file()
            )
            pytest.skip(f"the server did not start: {r.stderr.strip()} {logs}")
        assert f"http://127.0.0.1:{port}" in r.stdout
        yield f"http://127.0.0.1:{port}", data
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(data)], env=env, capture_output=True, timeout=120)
        shutil.rmtree(data, ignore_errors=True)


def _py(code: str, cwd: Path, uri: str, *args: str) -> dict:
    env = {
        **os.environ,
        "CEPHALO_TRACKING_URI": uri,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "tests")]),
    }
    r = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=180
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_two_machines_log_into_one_server(server, tmp_path):
    uri, data = server
    machines = {}
    for name, mre in (("machine-a", 1.5), ("machine-b", 1.2)):
        work = tmp_path / name
        work.mkdir()
        (work / "metrics.json").write_text(json.dumps({"from": name}))
        machines[name] = (work, _py(LOG, work, uri, name, str(mre))["run_id"])
    assert not list(tmp_path.glob("*/mlflow"))  # nothing in the working folders: all in the server
    for work, _ in machines.values():  # each folder reads both runs and both artifacts
        seen = _py(READ, work, uri, str(work / "downloads"))
        assert seen == {
            "machine-a": {"mre": 1.5, "artifact": {"from": "machine-a"}, "kind": "custom_model_development"},
            "machine-b": {"mre": 1.2, "artifact": {"from": "machine-b"}, "kind": "custom_model_development"},
        }
    # the artifacts sit in the server's artifact root, the runs in PostgreSQL (not a SQLite file)
    assert len(list((data / "artifacts").rglob("metrics.json"))) == 2
    assert not list(data.rglob("*.db"))


def test_default_stays_the_local_sqlite_file(tmp_path, monkeypatch):
    from cephalo import tracking

    monkeypatch.delenv("CEPHALO_TRACKING_URI", raising=False)
    cfg = tracking.config_from_params({}, root=tmp_path)
    assert cfg.uri is None and tracking.tracking_uri(cfg) == f"sqlite:///{(tmp_path / 'mlflow/mlflow.db').as_posix()}"
    assert tracking.config_from_params({"uri": "http://h:5000"}, root=tmp_path).uri == "http://h:5000"
    monkeypatch.setenv("CEPHALO_TRACKING_URI", "http://other:5000")
    assert tracking.tracking_uri(tracking.config_from_params({}, root=tmp_path)) == "http://other:5000"
