"""The refinement stages in both engines: same commands, inputs, outputs and params (switched on by params)."""

from __future__ import annotations

import subprocess

import pytest

from helpers import (
    SECTIONS,
    assert_engines_agree,
    check_cli,
    cmd_option,
    copy_workflow,
    dvc_stages_for,
    normalise_command,
    parse_dry_run,
    snakemake_dry_run_cmd,
)

pytestmark = pytest.mark.pipeline

ON = "pipeline.refine_source.isbi2015=test1 pipeline.refine_variants=[letterbox256]"
#: the same with `dvc exp run -S` (a key new to the empty mapping takes hydra's "+")
ON_DVC = ["+pipeline.refine_source.isbi2015=test1", "pipeline.refine_variants=[letterbox256]"]


@pytest.fixture(scope="module")
def refine_run(tmp_path_factory) -> dict:
    d = copy_workflow(tmp_path_factory.mktemp("refine_contract") / "on")
    p = subprocess.run(
        snakemake_dry_run_cmd(["--config", f"set={ON}"]),
        cwd=d,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return {"dir": d, "rc": p.returncode, "text": p.stdout + p.stderr, "profile": None}


def test_refinement_stages_agree_in_both_engines(refine_run):
    run = refine_run
    assert run["rc"] == 0, run["text"][-3000:]
    jobs = parse_dry_run(run["text"])
    stages = dvc_stages_for(run, ON_DVC)
    assert_engines_agree(jobs, stages)
    cmds = {j["rule"]: normalise_command(j["shell"]) for j in jobs}
    for j in jobs:
        check_cli(normalise_command(j["shell"]))
    src = cmds["train_refiner_source"]
    assert cmd_option(src, "--global") == "results/models/source/best.pt" and cmd_option(src, "--stage") == "source"
    assert cmd_option(src, "--out") == "results/models/refine_source"
    ft = cmds["finetune_refiner"]
    assert cmd_option(ft, "--init") == "results/models/refine_source/best.pt"
    assert cmd_option(ft, "--global") == "results/models/finetune/letterbox256/best.pt"
    # the one evaluate rule runs the bundles, one name per stage (run folder, --stage, models folder)
    ev = {
        cmd_option(c, "--stage"): c
        for j, c in ((j, normalise_command(j["shell"])) for j in jobs)
        if j["rule"] == "evaluate"
    }
    assert cmd_option(ev["refine"], "--model") == "results/models/refine/letterbox256/calibrated.json"
    assert cmd_option(ev["refine"], "--out") == "results/eval/refine-letterbox256"
    assert cmd_option(ev["refine_source"], "--model") == "results/models/refine_source/bundle.json"
    assert cmd_option(ev["refine_source"], "--split") == "test1"
    assert cmd_option(ev["refine_source"], "--data") == "results/variants/isbi2015/letterbox256"
    # the comparison waits for the refined runs; refiner training asks for the GPU resource
    compare = next(j for j in jobs if j["rule"] == "compare")
    assert "results/eval/refine-letterbox256/metrics.json" in compare["input"]
    assert "results/eval/refine_source-isbi2015/metrics.json" in compare["input"]
    gpu = {j["rule"] for j in jobs if "gpu=1" in j["resources"]}
    assert {"train_refiner_source", "finetune_refiner"} <= gpu
    for st in stages:
        if normalise_command(st["shell"])[1] == "train-refiner":
            assert st["params"] == sorted(SECTIONS["train-refiner"]), st


def test_refinement_without_a_source_refiner_fails_the_dry_run(tmp_path):
    d = copy_workflow(tmp_path / "bad")
    p = subprocess.run(
        snakemake_dry_run_cmd(["--config", "set=pipeline.refine_variants=[letterbox256]"]),
        cwd=d,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert p.returncode != 0 and "needs pipeline.refine_source" in p.stdout + p.stderr
