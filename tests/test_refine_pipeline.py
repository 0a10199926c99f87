"""The refinement stages in both engines: same commands, inputs, outputs and params (switched on by params)."""

from __future__ import annotations

import subprocess

import pytest
from test_pipeline_contract import (
    SECTIONS,
    _assert_engines_agree,
    _check_cli,
    _copy_workflow,
    _dvc_for,
    _normalise,
    _opt,
    _parse_dry_run,
    _snakemake_cmd,
)

pytestmark = pytest.mark.pipeline

ON = "pipeline.refine_source.isbi2015=test1 pipeline.refine_variants=[letterbox256]"
#: the same with `dvc exp run -S` (a key new to the empty mapping takes hydra's "+")
ON_DVC = ["+pipeline.refine_source.isbi2015=test1", "pipeline.refine_variants=[letterbox256]"]


@pytest.fixture(scope="module")
def refine_run(tmp_path_factory) -> dict:
    d = _copy_workflow(tmp_path_factory.mktemp("refine_contract") / "on")
    p = subprocess.run(_snakemake_cmd(["--config", f"set={ON}"]), cwd=d, capture_output=True, text=True, timeout=300,
                       check=False)
    return {"dir": d, "rc": p.returncode, "text": p.stdout + p.stderr, "profile": None}


def test_refinement_stages_agree_in_both_engines(refine_run):
    run = refine_run
    assert run["rc"] == 0, run["text"][-3000:]
    jobs = _parse_dry_run(run["text"])
    stages = _dvc_for(run, ON_DVC)
    _assert_engines_agree(jobs, stages)
    cmds = {j["rule"]: _normalise(j["shell"]) for j in jobs}
    for j in jobs:
        _check_cli(_normalise(j["shell"]))
    src = cmds["train_refiner_source"]
    assert _opt(src, "--global") == "results/models/source/best.pt" and _opt(src, "--stage") == "source"
    assert _opt(src, "--out") == "results/models/refine_source"
    ft = cmds["finetune_refiner"]
    assert _opt(ft, "--init") == "results/models/refine_source/best.pt"
    assert _opt(ft, "--global") == "results/models/finetune/letterbox256/best.pt"
    # the one evaluate rule runs the bundles, one name per stage (run folder, --stage, models folder)
    ev = {_opt(c, "--stage"): c for j, c in ((j, _normalise(j["shell"])) for j in jobs) if j["rule"] == "evaluate"}
    assert _opt(ev["refine"], "--model") == "results/models/refine/letterbox256/bundle.json"
    assert _opt(ev["refine"], "--out") == "results/eval/refine-letterbox256"
    assert _opt(ev["refine_source"], "--model") == "results/models/refine_source/bundle.json"
    assert _opt(ev["refine_source"], "--split") == "test1"
    assert _opt(ev["refine_source"], "--data") == "results/variants/isbi2015/letterbox256"
    # the comparison waits for the refined runs; refiner training asks for the GPU resource
    compare = next(j for j in jobs if j["rule"] == "compare")
    assert "results/eval/refine-letterbox256/metrics.json" in compare["input"]
    assert "results/eval/refine_source-isbi2015/metrics.json" in compare["input"]
    gpu = {j["rule"] for j in jobs if "gpu=1" in j["resources"]}
    assert {"train_refiner_source", "finetune_refiner"} <= gpu
    for st in stages:
        if _normalise(st["shell"])[1] == "train-refiner":
            assert st["params"] == sorted(SECTIONS["train-refiner"]), st


def test_refinement_without_a_source_refiner_fails_the_dry_run(tmp_path):
    d = _copy_workflow(tmp_path / "bad")
    p = subprocess.run(_snakemake_cmd(["--config", "set=pipeline.refine_variants=[letterbox256]"]), cwd=d,
                       capture_output=True, text=True, timeout=300, check=False)
    assert p.returncode != 0 and "needs pipeline.refine_source" in p.stdout + p.stderr
