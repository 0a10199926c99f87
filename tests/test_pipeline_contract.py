"""Contract: Snakemake and DVC run the same `cephalo` commands with the same inputs/outputs.

Snakemake side: ``snakemake --dry-run --forceall --printshellcmds`` in a copy of the workflow
(parsed job blocks). DVC side: DVC's own stage resolution (``dvc.repo.Repo(...).index.stages``,
after ``dvc init --no-scm``) and DVC's own ``-S`` override code (``dvc.utils.hydra.apply_overrides``,
what ``dvc exp run -S`` calls). Every command must name a real subcommand
(``cephalo.cli.SUBCOMMANDS``) whose click command accepts its options.
"""

from __future__ import annotations

import shlex
import subprocess
import sys

import pytest
import yaml

from helpers import (
    REPO,
    SECTIONS,
    SHARED,
    assert_engines_agree,
    check_cli,
    cmd_option,
    copy_workflow,
    dvc_stages_for,
    effective_params_path,
    normalise_command,
    parse_dry_run,
    snakemake_dry_run_cmd,
)

pytestmark = pytest.mark.pipeline

OVERRIDE = "pipeline.variants=[letterbox256,letterbox768] evaluate.n_boot=17 pipeline.zero_shot_split=valid"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """Dry-run every configuration at once (parallel processes: Snakemake's start-up dominates)."""
    base = tmp_path_factory.mktemp("contract")
    configs = {
        "default": ([], None),
        "override": (["--config", f"set={OVERRIDE}"], None),
        "aariz": (["--configfile", "profiles/aariz.yaml"], "profiles/aariz.yaml"),
        "bad": (["--config", "set=pipeline.fetch_source=[public]"], None),  # two source models
        "threads": (["--cores", "2", "--config", "set=pipeline.train_threads=4"], None),
    }
    if (SHARED / "data" / "isbi2015").is_dir():
        configs["real"] = (["--configfile", "profiles/real.yaml"], "profiles/real.yaml")
        (base / "shared").symlink_to(SHARED, target_is_directory=True)  # ../shared as seen from the copy
    procs = {}
    for name, (extra, _) in configs.items():
        d = copy_workflow(base / name)  # base/shared -> ../shared/data as seen from every copy
        procs[name] = (
            d,
            subprocess.Popen(
                snakemake_dry_run_cmd(extra), cwd=d, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            ),
        )
    result = {}
    for name, (d, p) in procs.items():
        text, _ = p.communicate(timeout=300)
        result[name] = {"dir": d, "rc": p.returncode, "text": text, "profile": configs[name][1]}
    return result


# ------------------------------------------------------------------------------------------


def test_snakemake_dry_runs_succeed(runs):
    for name, run in runs.items():
        if name == "bad":
            continue
        assert run["rc"] == 0, f"snakemake -n ({name}) failed:\n{run['text'][-3000:]}"
        assert parse_dry_run(run["text"]), name


def test_default_profile_engines_agree_and_commands_are_real(runs):
    run = runs["default"]
    jobs = parse_dry_run(run["text"])
    stages = dvc_stages_for(run)
    assert_engines_agree(jobs, stages)
    seen = {check_cli(normalise_command(j["shell"])) for j in jobs}
    assert seen == {"make-demo", "index", "preprocess", "train", "adapt", "calibrate", "evaluate", "compare"}
    # the effective params Snakemake hands to the CLI are params.yaml itself when nothing is overridden
    eff_path = effective_params_path(jobs)
    eff = yaml.safe_load((run["dir"] / eff_path).read_text())
    assert eff == yaml.safe_load((REPO / "params.yaml").read_text())
    for j in jobs:
        assert cmd_option(normalise_command(j["shell"]) + ("",), "--params") == "PARAMS"
        assert shlex.split(j["shell"])[shlex.split(j["shell"]).index("--params") + 1] == eff_path
    # training jobs (source model, fine-tuning) ask for the GPU resource; nothing else does
    gpu = {j["rule"] for j in jobs if "gpu=1" in j["resources"]}
    assert gpu == {"train_source", "finetune"}


EVAL_STAGES = ("source", "naive", "zero_shot", "adabn", "finetune")


def test_one_evaluate_rule_and_one_name_per_stage(runs):
    """Every evaluation is one job of the single `evaluate` rule; a stage has one name everywhere:
    the --stage tag, the run name/folder prefix and, per variant, results/models/<stage>/."""
    run = runs["override"]
    jobs = parse_dry_run(run["text"])
    ev = [j for j in jobs if shlex.split(j["shell"])[1] == "evaluate"]
    assert {j["rule"] for j in ev} == {"evaluate"}
    variants = ["letterbox256", "letterbox768"]
    want = {f"source-{d}" for d in yaml.safe_load((REPO / "params.yaml").read_text())["pipeline"]["source"]}
    want |= {f"{s}-{v}" for s in EVAL_STAGES[1:] for v in variants}
    names = set()
    for j in ev:
        c = normalise_command(j["shell"])
        stage, name = cmd_option(c, "--stage"), cmd_option(c, "--name")
        assert stage in EVAL_STAGES and name.startswith(f"{stage}-"), c
        assert cmd_option(c, "--out") == f"results/eval/{name}", c
        target = name[len(stage) + 1 :]
        model = cmd_option(c, "--model")
        assert model == (
            "results/models/source/best.pt"
            if stage in ("source", "naive", "zero_shot")
            else f"results/models/{stage}/{target}/calibrated.pt"
        ), c
        # the naive run (the clinic's first try) alone overrides the model's normalisation and decoder
        assert (
            "--normalisation" in c
            and cmd_option(c, "--normalisation") == "unit"
            and cmd_option(c, "--decoder") == "soft_argmax"
        ) == (stage == "naive"), c
        names.add(name)
    assert names == want
    # the models the per-variant stages evaluate are written under the same stage names
    made = {o for j in jobs if j["rule"] in ("adapt", "finetune") for o in j["output"] if o.endswith("best.pt")}
    assert made == {f"results/models/{s}/{v}/best.pt" for s in ("adabn", "finetune") for v in variants}
    assert {cmd_option(normalise_command(j["shell"]), "--stage") for j in jobs if j["rule"] == "finetune"} == {
        "finetune"
    }
    # ... and calibrated on the target's validation split (params calibrate.split) before evaluation
    cal = {
        cmd_option(normalise_command(j["shell"]), "--model"): cmd_option(normalise_command(j["shell"]), "--out")
        for j in jobs
        if j["rule"] == "calibrate"
    }
    assert cal == {m: m.replace("best.pt", "calibrated.pt") for m in made}
    # DVC: one matrix stage for the per-variant models, plus the source, naive and zero-shot stages (and the
    # two refinement bundles, tests/test_refine_pipeline.py)
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert sorted(k for k, st in dvc.items() if "cephalo evaluate" in str(st)) == [
        "evaluate",
        "evaluate_naive",
        "evaluate_refine",
        "evaluate_refine_source",
        "evaluate_source",
        "evaluate_zero_shot",
    ]
    assert dvc["evaluate"]["matrix"]["stage"] == ["adabn", "finetune"]


def test_dvc_stage_params_cover_what_each_command_reads(runs):
    for st in dvc_stages_for(runs["default"]) + dvc_stages_for(runs["aariz"]):
        cmd = normalise_command(st["shell"])
        sub = cmd[1]
        ds = cmd_option(cmd, "--dataset") if "--dataset" in cmd else (cmd[2] if sub == "download" else None)
        v = cmd_option(cmd, "--variant") if "--variant" in cmd else None
        want = [s.format(ds=ds, v=v) for s in SECTIONS[sub]]
        assert sorted(want) == st["params"], (st["name"], want, st["params"])
        for m in st["metrics"]:  # compact summaries only, cached like every out (docs/team.md)
            assert m == "results/summary" and m not in st["uncached"] and sub == "compare"


def test_override_reaches_the_cli_in_both_engines(runs):
    run = runs["override"]
    jobs = parse_dry_run(run["text"])
    stages = dvc_stages_for(run, shlex.split(OVERRIDE))
    assert_engines_agree(jobs, stages)
    cmds = [normalise_command(j["shell"]) for j in jobs]
    # structural override: a second variant appears (preprocess, zero-shot, fine-tune, evaluate) ...
    zs = [c for c in cmds if "--stage" in c and cmd_option(c, "--stage") == "zero_shot"]
    assert sorted(cmd_option(c, "--name") for c in zs) == ["zero_shot-letterbox256", "zero_shot-letterbox768"]
    assert {cmd_option(c, "--split") for c in zs} == {"valid"}
    assert sum(c[1] == "train" and "--init" in c for c in cmds) == 2
    # ... and a value override reaches the CLI through the params file it reads, in both engines
    eff = yaml.safe_load((run["dir"] / effective_params_path(jobs)).read_text())
    dvc_params = yaml.safe_load(next(run["dir"].glob("dvcside-*/params.yaml")).read_text())
    assert eff["evaluate"]["n_boot"] == dvc_params["evaluate"]["n_boot"] == 17
    base = yaml.safe_load((REPO / "params.yaml").read_text())
    for p in (eff, dvc_params):  # nothing else changed
        assert {k: v for k, v in p.items() if k not in ("evaluate", "pipeline")} == {
            k: v for k, v in base.items() if k not in ("evaluate", "pipeline")
        }
    from cephalo.config import validate_params

    assert validate_params(eff).evaluate.n_boot == 17


def test_aariz_profile_downloads_and_fetches(runs):
    run = runs["aariz"]
    jobs = parse_dry_run(run["text"])
    assert_engines_agree(jobs, dvc_stages_for(run))
    cmds = [normalise_command(j["shell"]) for j in jobs]
    subs = {c[1] for c in cmds}
    assert {"download", "fetch-model", "index", "preprocess", "evaluate", "train", "compare"} <= subs
    assert "make-demo" not in subs
    assert ("cephalo", "download", "aariz", "--out", "resources/raw/aariz", "--params", "PARAMS") in cmds
    for c in cmds:
        check_cli(c)


def test_real_profile_reads_shared_data(runs, shared_data):
    run = runs["real"]
    jobs = parse_dry_run(run["text"])
    assert_engines_agree(jobs, dvc_stages_for(run))
    roots = sorted(cmd_option(normalise_command(j["shell"]), "--root") for j in jobs if j["rule"] == "index")
    assert roots == ["../shared/data/hamedan", "../shared/data/isbi2015"]
    for j in jobs:
        check_cli(normalise_command(j["shell"]))


def test_profiles_are_complete_params_files():
    base = yaml.safe_load((REPO / "params.yaml").read_text())
    for prof in ("real", "aariz"):
        p = yaml.safe_load((REPO / "profiles" / f"{prof}.yaml").read_text())
        assert set(base) - {"demo"} <= set(p), (prof, sorted(set(base) - set(p)))
        assert set(p["pipeline"]) == set(base["pipeline"]), prof


def test_training_jobs_get_the_train_threads_up_to_the_cores(runs):
    """pipeline.train_threads is the training rules' threads (Snakemake sets OMP_NUM_THREADS from it),
    capped at --cores; every other job keeps one thread. The default gives training one thread."""
    train_rules = {"train_source", "finetune", "train_refiner_source", "finetune_refiner"}
    for name, expected in (("threads", 2), ("default", 1)):
        jobs = parse_dry_run(runs[name]["text"])
        assert {j["threads"] for j in jobs if j["rule"] in train_rules} == {expected}, name
        assert {j["threads"] for j in jobs if j["rule"] not in train_rules} == {1}, name


def test_bad_pipeline_params_fail_the_dry_run(runs):
    run = runs["bad"]
    assert run["rc"] != 0 and "exactly one of train_source" in run["text"]


def test_profiles_are_generated_from_params_and_overlays():
    """profiles/*.yaml = params.yaml + profiles/overlays/*.yaml (python profiles/build.py)."""
    p = subprocess.run([sys.executable, str(REPO / "profiles" / "build.py"), "--check"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def test_dvc_yaml_is_generated_from_the_stage_table():
    """dvc.yaml = workflow/stages.py written out (python workflow/build_dvc.py)."""
    p = subprocess.run(
        [sys.executable, str(REPO / "workflow" / "build_dvc.py"), "--check"], capture_output=True, text=True
    )
    assert p.returncode == 0, p.stderr
