"""The reduced demo, end to end, through both engines (what a user runs, at tiny sizes).

Snakemake runs the whole DAG (make-demo -> index -> preprocess -> train source -> in-domain check ->
zero-shot -> AdaBN -> fine-tune -> evaluate -> compare) in a copy of the workflow, then a second run does
nothing; DVC does the same with `dvc repro` and reports the pipeline up to date afterwards. The MLflow
store ends up holding the zero-shot, AdaBN and fine-tuned runs.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import REPO
from helpers import TINY_DEMO as TINY
from helpers import config_set as _config_set
from helpers import copy_workflow as _copy
from helpers import pipeline_env as _env
from helpers import set_dotted as _set

pytestmark = [pytest.mark.pipeline, pytest.mark.slow]


def _run(cmd: list[str], cwd: Path) -> str:
    p = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=900)
    out = p.stdout + p.stderr
    assert p.returncode == 0, f"{' '.join(cmd)} failed:\n{out[-4000:]}"
    return out


def _check_results(d: Path) -> None:
    for run in ("source-isbi2015", "zero_shot-letterbox128", "adabn-letterbox128", "finetune-letterbox128"):
        m = json.loads((d / "results" / "eval" / run / "metrics.json").read_text())
        assert m["overall"]["n"] > 0 and m["overall"]["mre_mm"] > 0, run
        assert m["gt_policy"] and m["data_index_hash"] and m["command"].startswith("cephalo evaluate")
        assert (d / "results" / "eval" / run / "diagnosis.md").read_text().startswith("# Diagnosis")
    table = (d / "results" / "comparison.md").read_text()
    assert "zero_shot-letterbox128" in table and "finetune-letterbox128" in table
    con = sqlite3.connect(d / "mlflow" / "mlflow.db")
    stages = {v for (v,) in con.execute("select value from tags where key = 'stage'")}
    assert {"zero_shot", "adabn", "finetune"} <= stages, stages
    # every evaluation names the training run of its weights (fine-tuned: through calibrated.pt's chain)
    unlinked = [
        name
        for (name,) in con.execute(
            "select r.name from runs r join tags t on t.run_uuid = r.run_uuid and t.key = 'stage' "
            "where t.value in ('zero_shot', 'adabn', 'finetune') and not exists (select 1 from tags l "
            "where l.run_uuid = r.run_uuid and l.key = 'training_run_id')"
        )
    ]
    assert unlinked == [], unlinked
    kinds = {v for (v,) in con.execute("select value from experiment_tags where key = 'mlflow.experimentKind'")}
    assert kinds == {"custom_model_development"}, kinds


def test_snakemake_runs_the_reduced_demo_then_does_nothing(tmp_path):
    d = _copy(tmp_path / "smk")
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--resources", "gpu=1", "--config", _config_set(TINY)]
    _run(cmd, d)
    _check_results(d)
    again = _run(cmd, d)
    assert "Nothing to be done" in again


def test_dvc_repro_runs_the_reduced_demo_then_is_up_to_date(tmp_path):
    d = _copy(tmp_path / "dvc")
    params = yaml.safe_load((d / "params.yaml").read_text())
    for k, v in TINY.items():
        _set(params, k, v)
    (d / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], d)
    _run([sys.executable, "-m", "dvc", "repro"], d)
    _check_results(d)
    status = _run([sys.executable, "-m", "dvc", "status"], d)
    assert "up to date" in status
    # data and checkpoints travel through a DVC remote (here a local one): push, lose them, pull back
    dvc = [sys.executable, "-m", "dvc"]
    _run(dvc + ["remote", "add", "-d", "store", str(tmp_path / "remote")], d)
    _run(dvc + ["push"], d)
    best = d / "results" / "models" / "source" / "best.pt"
    digest = best.read_bytes()
    # checkpoints are DVC-cached outputs, like every output (docs/team.md)
    checkpoints = sorted((d / "results" / "models").rglob("*.pt"))
    # best + last of the source and fine-tuned models, the AdaBN model, and the calibrated copies of the
    # two target models (calibrate stage: adabn and finetune)
    names = sorted(str(p.relative_to(d / "results" / "models")) for p in checkpoints)
    assert len(checkpoints) == 7, names
    assert sum(p.name == "calibrated.pt" for p in checkpoints) == 2, names
    for ckpt in checkpoints:
        ckpt.unlink()
    shutil.rmtree(d / ".dvc" / "cache")
    _run(dvc + ["pull"], d)
    assert best.read_bytes() == digest
    assert "up to date" in _run(dvc + ["status"], d)


def test_snakemake_downloads_an_aariz_release_over_loopback_and_runs_on_it(tmp_path, monkeypatch):
    """The Aariz path of the DAG: `cephalo download aariz` from a (loopback) mirror with a pinned
    checksum, then index -> ... -> compare on the downloaded release, not on generated folders."""
    import hashlib
    import zipfile

    from cephalo.commands.make_demo import make_demo
    from httpserver import LoopbackServer, Route

    demo = {**yaml.safe_load((REPO / "params.yaml").read_text())["demo"]}
    demo["aariz"] = {**demo["aariz"], "n_train": 6, "n_valid": 3, "n_test": 3}
    demo["isbi2015"] = {**demo["isbi2015"], "n_train": 8, "n_test1": 4}
    make_demo(tmp_path / "release", demo)
    buf = tmp_path / "Aariz.zip"
    root = tmp_path / "release" / "aariz"
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(root.rglob("*")):
            zf.write(f, f.relative_to(root).as_posix())
    body = buf.read_bytes()
    d = _copy(tmp_path / "aariz")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("CEPHALO_CACHE", str(tmp_path / "cache"))
    with LoopbackServer() as srv:
        url = srv.add("/files/Aariz.zip", Route(body=body))
        sets = {
            **TINY,
            "pipeline.make_demo": ["resources/demo"],
            "pipeline.download": ["aariz"],
            "pipeline.raw.aariz": "resources/raw/aariz",
            "data.datasets.aariz.download.url": url,
            "data.datasets.aariz.download.known_hash": "sha256:" + hashlib.sha256(body).hexdigest(),
        }
        cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--resources", "gpu=1", "--config", _config_set(sets)]
        p = subprocess.run(
            cmd,
            cwd=d,
            env={**_env(), "NO_PROXY": "127.0.0.1,localhost", "CEPHALO_CACHE": str(tmp_path / "cache")},
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
        assert any(path == "/files/Aariz.zip" for _, path, _ in srv.requests)
    assert (d / "resources" / "raw" / "aariz" / "Aariz" / "cephalogram_machine_mappings.csv").is_file()
    _check_results(d)
