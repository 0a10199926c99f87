"""The refinement stages in both engines: same commands, inputs, outputs and params (switched on by params)."""

from __future__ import annotations

import subprocess

import pytest

from test_pipeline_contract import (SECTIONS, _assert_engines_agree, _check_cli, _copy_workflow, _dvc_for, _normalise,
                                    _opt, _parse_dry_run, _snakemake_cmd)

pytestmark = pytest.mark.pipeline

ON = "pipeline.refine_source.isbi2015=test1 pipeline.refine_variants=[letterbox256]"
#: the same with `dvc exp run -S` (a key new to the empty mapping takes hydra's "+")
ON_DVC = ["+pipeline.refine_source.isbi2015=test1", "pipeline.refine_variants=[letterbox256]"]


@pytest.fixture(scope="module")
def refine_run(tmp_path_factory) -> dict:
    d = _copy_workflow(tmp_path_factory.mktemp("refine_contract") / "on")
    p = subprocess.run(_snakemake_cmd(["--config", f"set={ON}"]), cwd=d, capture_output=True, text=True, timeout=300)
    return {"dir": d, "rc": p.returncode, "text": p.stdout + p.stderr, "profile": None}


def test_refinement_stages_agree_in_both_engines(refine_run):
    run = refine_run
    assert run["rc"] == 0, run["text"][-3000:]
    jobs = _parse_dry_run(run["text"])
    stages = _dvc_for(run, ON_DVC)
    _assert_engines_agree(jobs, stages)
    cmds = {j["rule"]: _normalise(j["shell"]) for j in jobs}
    for c in cmds.values():
        _check_cli(c)
    src = cmds["train_refiner_source"]
    assert _opt(src, "--global") == "results/models/source/best.pt" and _opt(src, "--stage") == "source"
    ft = cmds["finetune_refiner"]
    assert _opt(ft, "--init") == "results/models/refiner/source/best.pt"
    assert _opt(ft, "--global") == "results/models/finetuned/letterbox256/best.pt"
    assert _opt(cmds["evaluate_refined"], "--model") == "results/models/refiner/finetuned/letterbox256/bundle.json"
    assert _opt(cmds["evaluate_refined_source"], "--split") == "test1"
    # the comparison waits for the refined runs; refiner training asks for the GPU resource
    compare = next(j for j in jobs if j["rule"] == "compare")
    assert "results/eval/refined-letterbox256/metrics.json" in compare["input"]
    assert "results/eval/refined-source-isbi2015/metrics.json" in compare["input"]
    gpu = {j["rule"] for j in jobs if "gpu=1" in j["resources"]}
    assert {"train_refiner_source", "finetune_refiner"} <= gpu
    for st in stages:
        if _normalise(st["shell"])[1] == "train-refiner":
            assert st["params"] == sorted(SECTIONS["train-refiner"]), st


def test_refinement_without_a_source_refiner_fails_the_dry_run(tmp_path):
    d = _copy_workflow(tmp_path / "bad")
    p = subprocess.run(_snakemake_cmd(["--config", "set=pipeline.refine_variants=[letterbox256]"]), cwd=d,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode != 0 and "needs pipeline.refine_source" in p.stdout + p.stderr
