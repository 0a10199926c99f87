"""MLflow answers "which run is better?" (issue #25, point 3).

Every evaluation run names the training run of the weights it used, also through a calibrated
checkpoint or a refine bundle (the ``derived_from`` chain derived checkpoints store); the
experiment is of MLflow 3's model-development kind (it opens on the runs table); each run has a
description (``mlflow.note.content``) and its headline figures as metrics, the per-measurement
errors as a table artifact.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from cephalo import provenance, tracking


def _client(cfg):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking.tracking_uri(cfg))


def test_derived_checkpoints_keep_the_chain_to_their_weights():
    prov = provenance.derive({"seed": 0}, "sha-best", "calibrate")
    again = provenance.derive(prov, "sha-calibrated", "calibrate")  # recalibrated in place
    assert provenance.weights_chain(again) == ["sha-calibrated", "sha-best"]
    assert provenance.weights_chain({"adabn": {"model_sha256": "sha-src"}}) == ["sha-src"]  # older AdaBN files
    assert again["seed"] == 0


def _evaluation(tmp_path, monkeypatch, name, checkpoint_sha, meta_prov, refine=None):
    """Log an evaluation run through ``cephalo evaluate``'s own tracking step."""
    from cephalo.commands.evaluate import _track
    from cephalo.config import Params

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "results" / name
    out.mkdir(parents=True)
    (out / "metrics.json").write_text(json.dumps({"name": name}))
    params = Params()
    result = {
        "split": "test",
        "variant": "letterbox128",
        "gt_policy": "mean",
        "landmarks": ["sella", "nasion"],
        "figures": {"n_images": 3, "n_landmarks/all": 2, "mre_mm/all": 1.25, "sdr_2.0mm/all": 80.0},
        "measurements": {
            "per_measurement": {
                f"m{i}": {"mae": 0.1 * i, "bias": 0.0, "human_mae": None, "accuracy": 0.5} for i in range(15)
            }
        },
    }
    meta = SimpleNamespace(arch="hrnet_w32", input_size=(128, 128), codec={"decoder": "dark"}, provenance=meta_prov)
    info = {
        "stage": "finetune",
        "command": "cephalo evaluate ...",
        "checkpoint_sha256": checkpoint_sha,
        "provenance": provenance.collect(),
    }
    if refine:
        info["refine"] = refine

    class Variant(list):
        datasets = ["aariz"]

    _track(
        params,
        params.evaluate,
        result,
        Variant(["one image"]),
        meta,
        name,
        out,
        tmp_path / "models" / "m.pt",
        info,
    )
    cfg = tracking.config_from_params(params.tracking.model_dump(), root=tmp_path)
    c = _client(cfg)
    runs = c.search_runs(
        [e.experiment_id for e in c.search_experiments()], filter_string=f"attributes.run_name = '{name}'"
    )
    assert len(runs) == 1
    return cfg, c, runs[0]


def test_evaluation_of_calibrated_or_bundled_weights_links_to_its_training_run(tmp_path, monkeypatch):
    from cephalo.config import Params

    cfg = tracking.config_from_params(Params().tracking.model_dump(), root=tmp_path)
    train = tracking.RunRecord(
        dataset="aariz",
        stage="train",
        variant="letterbox128",
        run_name="train-finetune/lb",
        experiment=tracking.experiment_name(cfg, Params(), "aariz"),
        checkpoint_hash="sha-best",
    )
    train_id = tracking.log_run(cfg, train, params={"lr": 1e-4}, metrics={"best_val_mre_mm": 1.3}, strict=True)
    # calibrated.pt: its own hash matches no training run; its provenance names best.pt's
    _, c, r = _evaluation(
        tmp_path, monkeypatch, "finetune-calibrated", "sha-calibrated", provenance.derive({}, "sha-best", "calibrate")
    )
    assert r.data.tags["training_run_id"] == train_id
    # a refine bundle: its global model is a calibrated checkpoint of best.pt
    _, c, r = _evaluation(
        tmp_path,
        monkeypatch,
        "refine-lb",
        "sha-bundle",
        provenance.derive({}, "sha-best", "calibrate"),
        refine={"global_sha256": "sha-global-calibrated"},
    )
    assert r.data.tags["training_run_id"] == train_id
    # the view: the experiment is a model-development one, runs say what they are, headline first
    exp = c.get_experiment(r.info.experiment_id)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    note = r.data.tags["mlflow.note.content"]
    for word in ("finetune", "letterbox128", "aariz", "hrnet_w32", "MRE 1.25 mm", "SDR@2mm 80%", "train-finetune/lb"):
        assert word in note, (word, note)
    assert not [k for k in r.data.metrics if k.startswith("measurements.")]  # not 60 metrics in Compare
    assert r.data.metrics["mre_mm/all"] == 1.25
    local = c.download_artifacts(r.info.run_id, "measurement_errors.json", str(tmp_path / "dl"))
    table = json.loads(Path(local).read_text())
    assert table["columns"][0] == "measurement" and len(table["data"]) == 15
    assert "mlflow.note.content" in c.get_run(train_id).data.tags
    # cephalo compare adds the figures over the shared landmarks: the headline, in the description too
    rid = tracking.log_to_evaluation(
        cfg,
        metrics_sha256=r.data.tags["metrics_sha256"],
        run_name="refine-lb",
        metrics={"mre_mm/shared": 1.1, "sdr_2.0mm/shared": 85.0, "n_landmarks/shared": 2},
        strict=True,
    )
    assert rid == r.info.run_id
    assert "MRE 1.1 mm over the shared landmarks (2), SDR@2mm 85%" in c.get_run(rid).data.tags["mlflow.note.content"]


def test_existing_experiment_gets_the_kind_tag(tmp_path):
    cfg = tracking.config_from_params({"experiment": "old"}, root=tmp_path)
    tracking.log_run(cfg, tracking.RunRecord(dataset="d", stage="train"), strict=True)
    c = _client(cfg)
    exp = c.get_experiment_by_name("old")
    c.delete_experiment_tag(exp.experiment_id, "mlflow.experimentKind")
    tracking.log_run(cfg, tracking.RunRecord(dataset="d", stage="train"), strict=True)
    assert c.get_experiment_by_name("old").tags["mlflow.experimentKind"] == "custom_model_development"
