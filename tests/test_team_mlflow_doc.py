"""Every command docs/team-mlflow.md shows is run by a test (this module or the one it names).

The page's ``$ `` lines are matched against :data:`RUN_BY`; the cheap ones are run here as shown
(in a temporary project, on a free 127.0.0.1 port), the server's in ``test_tracking_server.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from helpers import REPO

DOC = REPO / "docs" / "team-mlflow.md"

#: the page's commands -> the test file that runs them (with another folder / port where noted)
RUN_BY = {
    "mlflow ui --backend-store-uri sqlite:///mlflow/mlflow.db --host 127.0.0.1 --port 5000": "test_team_mlflow_doc.py",
    "scripts/mlflow-server.sh start mlflow-server 5000": "test_tracking_server.py",
    "scripts/mlflow-server.sh stop mlflow-server": "test_tracking_server.py",
    "export CEPHALO_TRACKING_URI=http://127.0.0.1:5000": "test_tracking_server.py",
    "python scripts/mlflow_screenshots.py --out docs/screenshots": "test_team_mlflow_doc.py",
}


def _doc_commands() -> list[str]:
    return [ln.strip()[2:] for ln in DOC.read_text().splitlines() if ln.strip().startswith("$ ")]


def test_every_command_on_the_page_is_run_by_a_test():
    cmds = _doc_commands()
    assert cmds and set(cmds) == set(RUN_BY), set(cmds) ^ set(RUN_BY)
    server_test = (REPO / "tests" / "test_tracking_server.py").read_text()
    assert '"start", str(data), str(port)' in server_test and '"stop", str(data)' in server_test
    assert '"CEPHALO_TRACKING_URI": uri' in server_test


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mlflow_ui_command_serves_the_project_store(tmp_path):
    from cephalo import tracking

    cfg = tracking.config_from_params({"experiment": "doc"}, root=tmp_path)
    tracking.log_run(cfg, tracking.RunRecord(dataset="d", stage="train"), strict=True)
    port = _free_port()
    cmd = next(c for c in RUN_BY if c.startswith("mlflow ui")).replace("--port 5000", f"--port {port}").split()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    proc = subprocess.Popen(
        [sys.executable, "-m", *cmd], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.time() + 90
        while True:
            try:
                body = json.dumps({"max_results": 10}).encode()
                req = urllib.request.Request(
                    f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search",
                    data=body,
                    headers={"Content-Type": "application/json"},
                )
                exps = json.load(urllib.request.urlopen(req, timeout=5))["experiments"]
                break
            except OSError:
                assert time.time() < deadline and proc.poll() is None, "mlflow ui did not start"
                time.sleep(0.5)
        assert "doc" in {e["name"] for e in exps}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.skipif(
    not (shutil.which("chromium") or shutil.which("chromium-browser")),
    reason="chromium is not installed (apt-get install chromium)",
)
def test_screenshot_script(tmp_path):
    cmd = next(c for c in RUN_BY if "mlflow_screenshots" in c).split()
    out = tmp_path / "shots"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "tests")])}
    r = subprocess.run(
        [sys.executable, str(REPO / cmd[1]), "--out", str(out)], env=env, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr[-2000:]
    for name in ("mlflow-runs-table.png", "mlflow-compare.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, name
