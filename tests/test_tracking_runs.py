"""MLflow as the comparison surface: training runs with histories, evaluation runs linked to them.

The first test builds a store by hand through ``cephalo.tracking``; the second queries the store a
real demo run left (``scripts/demo.sh`` in this project, or ``CEPHALO_DEMO_PROJECT``), and checks
that MLflow, ``comparison.csv`` and the DVC summaries agree figure for figure.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from cephalo import tracking

REPO = Path(__file__).resolve().parents[1]


def _client(cfg):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking.tracking_uri(cfg))


def test_training_history_and_evaluation_link(tmp_path):
    cfg = tracking.config_from_params({"experiment_prefix": "cephalo-test-"}, root=tmp_path)
    ck = tmp_path / "best.pt"
    ck.write_bytes(b"weights")
    prov = {
        "cephalo_version": "0.1.0",
        "git_commit": "abc",
        "git_dirty": False,
        "packages": {"torch": "2.14.1"},
        "cpu_model": "Test CPU",
        "threads": 2,
        "seed": 0,
        "params_sha256": "p",
    }
    run = tracking.RunRecord(
        dataset="aariz",
        stage="train",
        variant="lb",
        run_name="train-finetune/lb",
        checkpoint=ck,
        checkpoint_hash="sha-ft",
        provenance=prov,
    )
    train_id = tracking.log_run(
        cfg,
        run,
        params={"lr": 1e-4, "epochs": 3},
        series={"val_mre_mm": [2.0, 1.5, 1.2], "train_loss": [0.9, 0.5, 0.4]},
        strict=True,
    )
    ids = {}
    for name, model_hash, derived in (
        ("finetuned-lb", "sha-ft", []),
        ("zeroshot-lb", "sha-src", []),
        ("adabn-lb", "sha-adabn", ["sha-ft"]),
    ):
        run = tracking.RunRecord(
            dataset="aariz",
            stage="evaluate",
            variant="lb",
            run_name=name,
            checkpoint_hash=model_hash,
            provenance=prov,
            link_checkpoints=[model_hash, *derived],
        )
        ids[name] = tracking.log_run(
            cfg,
            run,
            params={"model": f"models/{name}.pt", "split": "test"},
            metrics={"mre_mm/all": 1.0},
            tags={"metrics_sha256": f"m-{name}"},
            strict=True,
        )
    c = _client(cfg)
    exp = c.get_experiment_by_name("cephalo-test-aariz")
    assert exp is not None
    hist = c.get_metric_history(train_id, "val_mre_mm")
    assert [(m.step, m.value) for m in hist] == [(0, 2.0), (1, 1.5), (2, 1.2)]
    tr = c.get_run(train_id)
    assert tr.data.tags["checkpoint_sha256"] == "sha-ft" and tr.data.params["lr"] == "0.0001"
    assert tr.data.tags["prov.torch"] == "2.14.1" and tr.data.tags["prov.git_commit"] == "abc"
    assert c.get_run(ids["finetuned-lb"]).data.tags["training_run_id"] == train_id
    assert c.get_run(ids["adabn-lb"]).data.tags["training_run_id"] == train_id  # via the model it adapted
    assert "training_run_id" not in c.get_run(ids["zeroshot-lb"]).data.tags  # no training run logged for it
    linked = c.search_runs([exp.experiment_id], filter_string=f"tags.training_run_id = '{train_id}'")
    assert {r.info.run_name for r in linked} == {"finetuned-lb", "adabn-lb"}
    # the comparison adds its /shared figures to the evaluation run with that metrics.json
    rid = tracking.log_to_evaluation(
        cfg,
        metrics_sha256="m-zeroshot-lb",
        run_name="zeroshot-lb",
        metrics={"mre_mm/shared": 0.5, "n_landmarks/shared": 19, "x": None},
        strict=True,
    )
    assert rid == ids["zeroshot-lb"]
    assert c.get_run(rid).data.metrics["mre_mm/shared"] == 0.5


def _demo_project() -> Path:
    return Path(os.environ.get("CEPHALO_DEMO_PROJECT") or REPO)


@pytest.mark.skipif(
    not (
        (_demo_project() / "mlflow" / "mlflow.db").is_file()
        and (_demo_project() / "results" / "comparison.csv").is_file()
    ),
    reason="no demo run here: run scripts/demo.sh (or set CEPHALO_DEMO_PROJECT)",
)
def test_demo_store_runs_linked_and_figures_agree():
    import yaml

    proj = _demo_project()
    params = yaml.safe_load((proj / "params.yaml").read_text())
    cfg = tracking.config_from_params(params.get("tracking"), root=proj)
    c = _client(cfg)
    exp = c.get_experiment_by_name(tracking.experiment_name(cfg, params))
    assert exp is not None and not exp.artifact_location.startswith(("file:", "/"))  # relative to the project
    runs = c.search_runs([exp.experiment_id], max_results=500, order_by=["attributes.start_time DESC"])
    train = [r for r in runs if r.data.tags.get("stage") == "train"]
    assert {r.data.params.get("train_stage") for r in train} >= {"source", "finetune"}
    for r in train:
        n_epochs = int(r.data.params["epochs"])
        assert len(c.get_metric_history(r.info.run_id, "val_mre_mm")) == n_epochs > 1
        assert len(c.get_metric_history(r.info.run_id, "train_loss")) == n_epochs
        assert len(r.data.tags["checkpoint_sha256"]) == 64
    train_ids = {r.info.run_id: r for r in train}
    table = pd.read_csv(proj / "results" / "comparison.csv").set_index("run")
    latest = {}
    for r in runs:  # newest first: the run that produced the current results/
        if r.data.tags.get("stage") in ("zero_shot", "adabn", "finetune", "source"):
            latest.setdefault(r.info.run_name, r)
    for name, row in table.iterrows():
        if name.split("-")[0] not in ("zero_shot", "adabn", "finetune", "source"):
            continue  # e.g. refine bundles: evaluated, but not from a tracked training run
        r = latest[name]
        tid = r.data.tags.get("training_run_id")
        assert tid in train_ids, (name, tid)
        want = "finetune" if r.data.tags["stage"] == "finetune" else "source"
        assert train_ids[tid].data.params["train_stage"] == want
        for key in (
            "prov.cephalo_version",
            "prov.git_commit",
            "prov.cpu_model",
            "prov.threads",
            "prov.torch",
            "prov.numpy",
            "prov.params_sha256",
        ):
            assert key in r.data.tags, (name, key)
        # MLflow, comparison.csv and the DVC summary: figure for figure
        summary = json.loads((proj / "results" / "summary" / f"{name}.json").read_text())
        for key in ("mre_mm/shared", "mre_mm/all", "sdr_2.0mm/shared", "n_landmarks/shared"):
            assert r.data.metrics[key] == pytest.approx(row[key], rel=1e-5), (name, key)
        for key, v in summary.items():
            assert v == pytest.approx(row[key], rel=1e-3), (name, key)
    variants = [n[len("finetune-") :] for n in table.index if n.startswith("finetune-")]
    assert variants
    for v in variants:  # over the same landmarks, fine-tuning is not worse than zero-shot
        assert table.loc[f"finetune-{v}", "mre_mm/shared"] < table.loc[f"zero_shot-{v}", "mre_mm/shared"]
