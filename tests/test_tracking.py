"""MLflow tracking: SQLite store inside the project, dotted params, tags, four concurrent writers."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from cephalo import tracking


def test_flatten_params_dotted_like_dvc():
    p = {
        "train": {"lr": 0.001, "epochs": 3, "aug": {"rotate": 10}},
        "variants": {"lb": {"steps": [1, 2]}},
        "evaluate": {},
    }
    assert tracking.flatten_params(p) == {
        "train.lr": "0.001",
        "train.epochs": "3",
        "train.aug.rotate": "10",
        "variants.lb.steps": "[1, 2]",
        "evaluate": "{}",
    }


def test_flatten_metrics_keeps_finite_numbers_only():
    m = {"overall": {"mre_mm": 1.5, "sdr": {"2.0": 0.6}, "n": 10, "bad": float("nan")}, "split": "test", "ok": True}
    assert tracking.flatten_metrics(m) == {"overall.mre_mm": 1.5, "overall.sdr.2.0": 0.6, "overall.n": 10.0}


def test_config_paths_inside_project_and_unknown_key(tmp_path):
    cfg = tracking.config_from_params({"store": "mlflow/x.db", "artifacts": "mlflow/art"}, root=tmp_path)
    assert cfg.store == (tmp_path / "mlflow/x.db").resolve()
    assert tracking.tracking_uri(cfg) == f"sqlite:///{cfg.store.as_posix()}"
    with pytest.raises(ValueError, match="valid"):
        tracking.config_from_params({"stroe": "x"}, root=tmp_path)


def test_disabled_does_nothing(tmp_path):
    cfg = tracking.config_from_params({"enabled": False}, root=tmp_path)
    assert tracking.log_run(cfg, tracking.RunRecord(dataset="d", stage="evaluate"), metrics={"a": 1}) is None
    assert not (tmp_path / "mlflow").exists()


def test_failure_is_a_warning_not_an_error(tmp_path):
    (tmp_path / "blocker").write_text("a file where the store folder should be")
    cfg = tracking.config_from_params({"store": "blocker/mlflow.db"}, root=tmp_path)
    with pytest.warns(UserWarning, match="tracking failed"):
        assert tracking.log_run(cfg, tracking.RunRecord(dataset="d", stage="evaluate")) is None


_WORKER = textwrap.dedent(
    """
    import json, sys
    from cephalo import tracking
    root, i = sys.argv[1], int(sys.argv[2])
    cfg = tracking.config_from_params({"store": "mlflow/mlflow.db", "artifacts": "mlflow/artifacts"}, root=root)
    art = f"{root}/metrics_{i}.json"
    open(art, "w").write(json.dumps({"mre_mm": i}))
    run = tracking.RunRecord(dataset="isbi2015", stage="evaluate", variant=f"v{i}",
                             command=f"cephalo evaluate --name r{i}", data_index_hash="abc123",
                             checkpoint="models/best.pt")
    rid = tracking.log_run(cfg, run, params={"evaluate": {"n_boot": 100 + i, "thresholds": [2, 2.5]}},
                           metrics={"overall": {"mre_mm": 1.0 + i, "sdr": {"2.0": 0.5}}},
                           artifacts=[art], strict=True)
    print(rid)
    """
)


def test_four_processes_log_to_one_store_at_once(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(tmp_path), str(i)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    run_ids = [o.strip().splitlines()[-1] for o, _ in outs]
    assert len(set(run_ids)) == 4

    from mlflow.tracking import MlflowClient

    cfg = tracking.config_from_params({}, root=tmp_path)
    client = MlflowClient(tracking_uri=tracking.tracking_uri(cfg))
    exp = client.get_experiment_by_name("cephalo-isbi2015")
    # artifact locations are stored relative to the project folder (moving the folder keeps them)
    assert exp is not None and exp.artifact_location == "mlflow/artifacts/cephalo-isbi2015"
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 4
    by_variant = {r.data.tags["variant"]: r for r in runs}
    assert sorted(by_variant) == ["v0", "v1", "v2", "v3"]
    r = by_variant["v2"]
    assert r.data.params["evaluate.n_boot"] == "102"
    assert r.data.metrics["overall.mre_mm"] == 3.0 and r.data.metrics["overall.sdr.2.0"] == 0.5
    assert r.data.tags["stage"] == "evaluate" and r.data.tags["data_index_hash"] == "abc123"
    assert r.data.tags["command"] == "cephalo evaluate --name r2"
    assert r.data.tags["checkpoint"] == "models/best.pt"
    assert r.info.status == "FINISHED"
    assert r.info.artifact_uri == f"mlflow/artifacts/cephalo-isbi2015/{r.info.run_id}/artifacts"
    art_dir = tmp_path / r.info.artifact_uri
    assert json.loads((art_dir / "metrics_2.json").read_text()) == {"mre_mm": 2}
    assert not (tmp_path / "mlruns").exists()
    import sqlite3

    con = sqlite3.connect(cfg.store)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()
