"""Contract: Snakemake and DVC run the same `cephalo` commands with the same inputs/outputs.

Snakemake side: ``snakemake --dry-run --forceall --printshellcmds`` in a copy of the workflow
(parsed job blocks). DVC side: DVC's own stage resolution (``dvc.repo.Repo(...).index.stages``,
after ``dvc init --no-scm``) and DVC's own ``-S`` override code (``dvc.utils.hydra.apply_overrides``,
what ``dvc exp run -S`` calls). Every command must name a real subcommand
(``cephalo.cli.SUBCOMMANDS``) whose click command accepts its options.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import click
import pytest
import yaml

from helpers import SHARED

pytestmark = pytest.mark.pipeline

REPO = Path(__file__).resolve().parents[1]
WORKFLOW_FILES = ["Snakefile", "workflow", "dvc.yaml", "params.yaml", "profiles", ".dvcignore"]
OVERRIDE = 'pipeline.variants=[letterbox256,letterbox768] evaluate.n_boot=17 pipeline.zero_shot_split=valid'

# which params sections each subcommand reads (docs/DESIGN.md CLI contract); {ds}/{v} = its data set/variant
SECTIONS = {"make-demo": ["demo"], "download": ["data.datasets.{ds}"], "index": ["data.datasets.{ds}"],
            "preprocess": ["variants.{v}"], "fetch-model": ["model.source"], "train": ["train", "model", "codec"],
            "evaluate": ["evaluate"], "adapt": ["adapt"], "compare": [], "code-fingerprint": [],
            "train-refiner": ["train", "refine", "codec", "model.transfer"]}
#: DVC-only stage: Snakemake writes the same results/code/<command>.sha256 files at parse time
CODE_STAGE = "code_fingerprint"


def _copy_workflow(dst: Path) -> Path:
    dst.mkdir(parents=True)
    for name in WORKFLOW_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy2(src, dst / name)
    return dst


def _snakemake_cmd(extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--dry-run", "--forceall", "--printshellcmds", "--cores", "1",
            *extra]


def _parse_dry_run(text: str) -> list[dict]:
    """Job blocks of a Snakemake dry run: rule, input, output, log, shell."""
    jobs, cur = [], None
    for line in text.splitlines():
        s = line.strip()
        if line.startswith(("rule ", "localrule ")) and s.endswith(":"):
            cur = {"rule": s.split()[1].rstrip(":"), "input": [], "output": [], "log": [], "resources": [],
                   "shell": None}
            jobs.append(cur)
        elif cur is not None and line.startswith("    ") and ":" in s:
            key, _, val = s.partition(": ")
            if key in ("input", "output", "log", "resources"):
                cur[key] = [v.strip() for v in val.split(",") if v.strip()]
        elif cur is not None and s.startswith("Shell command:"):
            cur["shell"] = s[len("Shell command:"):].strip()
    return [j for j in jobs if j["rule"] != "all"]


def _effective_params_path(jobs: list[dict]) -> str:
    """The one params file every job of a run reads: results/params/<content hash>.yaml."""
    import re

    paths = {shlex.split(j["shell"])[shlex.split(j["shell"]).index("--params") + 1] for j in jobs}
    assert len(paths) == 1, paths
    path = paths.pop()
    assert re.fullmatch(r"results/params/[0-9a-f]{16}\.yaml", path), path
    return path


def _normalise(cmd: str) -> tuple[str, ...]:
    """Drop the log redirection and unify the params file (both engines pass the effective params)."""
    toks = shlex.split(cmd)
    if ">" in toks:
        toks = toks[: toks.index(">")]
    if "--params" in toks:
        i = toks.index("--params")
        toks[i + 1] = "PARAMS"
    return tuple(toks)


def _dvc_stages(repo_dir: Path) -> list[dict]:
    from dvc.repo import Repo

    out = []
    with Repo(str(repo_dir)) as repo:
        for st in repo.index.stages:
            params = [p for d in st.deps if hasattr(d, "params") for p in (d.params or [])]
            out.append({
                "name": st.addressing,
                "shell": st.cmd if isinstance(st.cmd, str) else " && ".join(st.cmd),
                "deps": sorted(d.def_path for d in st.deps if not hasattr(d, "params")),
                "params": sorted(params),
                "outs": sorted(o.def_path for o in st.outs),
                "metrics": sorted(o.def_path for o in st.outs if o.metric),
                "uncached": sorted(o.def_path for o in st.outs if not o.use_cache),
            })
    return out


def _init_dvc(repo_dir: Path) -> None:
    from dvc.repo import Repo

    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    Repo.init(str(repo_dir), no_scm=True).close()


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """Dry-run every configuration at once (parallel processes: Snakemake's start-up dominates)."""
    base = tmp_path_factory.mktemp("contract")
    configs = {
        "default": ([], None),
        "override": (["--config", f"set={OVERRIDE}"], None),
        "aariz": (["--configfile", "profiles/aariz.yaml"], "profiles/aariz.yaml"),
        "bad": (["--config", "set=pipeline.fetch_source=[public]"], None),  # two source models
    }
    if (SHARED / "data" / "isbi2015").is_dir():
        configs["real"] = (["--configfile", "profiles/real.yaml"], "profiles/real.yaml")
        (base / "shared").symlink_to(SHARED, target_is_directory=True)  # ../shared as seen from the copy
    procs = {}
    for name, (extra, _) in configs.items():
        d = _copy_workflow(base / name)  # base/shared -> ../shared/data as seen from every copy
        procs[name] = (d, subprocess.Popen(_snakemake_cmd(extra), cwd=d, stdout=subprocess.PIPE,
                                           stderr=subprocess.STDOUT, text=True))
    result = {}
    for name, (d, p) in procs.items():
        text, _ = p.communicate(timeout=300)
        result[name] = {"dir": d, "rc": p.returncode, "text": text, "profile": configs[name][1]}
    return result


def _dvc_for(run: dict, overrides: list[str] | None = None) -> list[dict]:
    d = Path(tempfile.mkdtemp(prefix="dvcside-", dir=run["dir"]))
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy2(run["dir"] / name, d / name)
    # a profile with DVC = the params file override; a single value = `dvc exp run -S`
    shutil.copy2(run["dir"] / (run["profile"] or "params.yaml"), d / "params.yaml")
    if overrides:
        from dvc.utils.hydra import apply_overrides

        apply_overrides(d / "params.yaml", overrides)  # what `dvc exp run -S` does to params.yaml
        try:
            yaml.safe_load((d / "params.yaml").read_text())
        except yaml.YAMLError as e:
            pytest.fail(f"`dvc exp run -S` (ruamel round trip) corrupts params.yaml: {e}".replace("\n", " "))
    _init_dvc(d)
    return _dvc_stages(d)


def _assert_engines_agree(smk_jobs: list[dict], dvc_stages: list[dict]) -> None:
    is_code = [s["name"].split(":")[-1] == CODE_STAGE for s in dvc_stages]
    code = [s for s, c in zip(dvc_stages, is_code) if c]
    assert len(code) == 1 and code[0]["outs"] == ["results/code"], code
    dvc_stages = [s for s, c in zip(dvc_stages, is_code) if not c]
    for job in smk_jobs:  # every job depends on its command's code fingerprint, in both engines
        sub = _normalise(job["shell"])[1]
        assert f"results/code/{sub}.sha256" in job["input"], (job["rule"], job["input"])
    smk = {_normalise(j["shell"]): j for j in smk_jobs}
    dvc = {_normalise(s["shell"]): s for s in dvc_stages}
    assert len(smk) == len(smk_jobs) and len(dvc) == len(dvc_stages), "duplicate commands"
    assert set(smk) == set(dvc), (sorted(set(smk) - set(dvc)), sorted(set(dvc) - set(smk)))
    for cmd, job in smk.items():
        st = dvc[cmd]
        assert sorted(job["output"]) == st["outs"], (cmd, job["output"], st["outs"])
        # inputs: equal, except that a DVC directory dep may stand for files inside it (compare)
        for path in job["input"]:
            assert any(path == dep or path.startswith(dep.rstrip("/") + "/") for dep in st["deps"]), (cmd, path)
        for dep in st["deps"]:
            assert any(p == dep or p.startswith(dep.rstrip("/") + "/") for p in job["input"]), (cmd, dep)
        assert job["log"], f"rule {job['rule']} has no log"


def _check_cli(cmd: tuple[str, ...]) -> str:
    """The command is `cephalo <real subcommand>` and its click command accepts the arguments."""
    from cephalo.cli import SUBCOMMANDS, main

    assert cmd[0] == "cephalo", cmd
    assert cmd[1] in SUBCOMMANDS, f"{cmd[1]!r} is not a cephalo subcommand"
    sub = main.get_command(click.Context(main), cmd[1])
    args = [a for a in cmd[2:] if a != "results/eval/*"] + (["results/eval/x"] if "results/eval/*" in cmd else [])
    ctx = click.Context(sub, resilient_parsing=True)
    parser = sub.make_parser(ctx)
    opts, largs, _ = parser.parse_args(args=list(args))  # raises NoSuchOption / BadOptionUsage
    assert not largs, f"cephalo {cmd[1]}: unexpected arguments {largs}"
    for param in sub.params:
        if param.required:
            assert opts.get(param.name) not in (None, ()), f"cephalo {cmd[1]}: required {param.name} missing"
    return cmd[1]


def _opt(cmd: tuple[str, ...], name: str) -> str:
    return cmd[cmd.index(name) + 1]


# ------------------------------------------------------------------------------------------


def test_snakemake_dry_runs_succeed(runs):
    for name, run in runs.items():
        if name == "bad":
            continue
        assert run["rc"] == 0, f"snakemake -n ({name}) failed:\n{run['text'][-3000:]}"
        assert _parse_dry_run(run["text"]), name


def test_default_profile_engines_agree_and_commands_are_real(runs):
    run = runs["default"]
    jobs = _parse_dry_run(run["text"])
    stages = _dvc_for(run)
    _assert_engines_agree(jobs, stages)
    seen = {_check_cli(_normalise(j["shell"])) for j in jobs}
    assert seen == {"make-demo", "index", "preprocess", "train", "adapt", "evaluate", "compare"}
    # the effective params Snakemake hands to the CLI are params.yaml itself when nothing is overridden
    eff_path = _effective_params_path(jobs)
    eff = yaml.safe_load((run["dir"] / eff_path).read_text())
    assert eff == yaml.safe_load((REPO / "params.yaml").read_text())
    for j in jobs:
        assert _opt(_normalise(j["shell"]) + ("",), "--params") == "PARAMS"
        assert shlex.split(j["shell"])[shlex.split(j["shell"]).index("--params") + 1] == eff_path
    # training jobs (source model, fine-tuning) ask for the GPU resource; nothing else does
    gpu = {j["rule"] for j in jobs if "gpu=1" in j["resources"]}
    assert gpu == {"train_source", "finetune"}


EVAL_STAGES = ("source", "naive", "zero_shot", "adabn", "finetune")


def test_one_evaluate_rule_and_one_name_per_stage(runs):
    """Every evaluation is one job of the single `evaluate` rule; a stage has one name everywhere:
    the --stage tag, the run name/folder prefix and, per variant, results/models/<stage>/."""
    run = runs["override"]
    jobs = _parse_dry_run(run["text"])
    ev = [j for j in jobs if shlex.split(j["shell"])[1] == "evaluate"]
    assert {j["rule"] for j in ev} == {"evaluate"}
    variants = ["letterbox256", "letterbox768"]
    want = {f"source-{d}" for d in yaml.safe_load((REPO / "params.yaml").read_text())["pipeline"]["source"]}
    want |= {f"{s}-{v}" for s in EVAL_STAGES[1:] for v in variants}
    names = set()
    for j in ev:
        c = _normalise(j["shell"])
        stage, name = _opt(c, "--stage"), _opt(c, "--name")
        assert stage in EVAL_STAGES and name.startswith(f"{stage}-"), c
        assert _opt(c, "--out") == f"results/eval/{name}", c
        target = name[len(stage) + 1:]
        model = _opt(c, "--model")
        assert model == ("results/models/source/best.pt" if stage in ("source", "naive", "zero_shot")
                         else f"results/models/{stage}/{target}/best.pt"), c
        # the naive run (the clinic's first try) alone overrides the model's normalisation and decoder
        assert (("--normalisation" in c and _opt(c, "--normalisation") == "unit"
                 and _opt(c, "--decoder") == "soft_argmax") == (stage == "naive")), c
        names.add(name)
    assert names == want
    # the models the per-variant stages evaluate are written under the same stage names
    made = {o for j in jobs if j["rule"] in ("adapt", "finetune") for o in j["output"] if o.endswith("best.pt")}
    assert made == {f"results/models/{s}/{v}/best.pt" for s in ("adabn", "finetune") for v in variants}
    assert {_opt(_normalise(j["shell"]), "--stage") for j in jobs if j["rule"] == "finetune"} == {"finetune"}
    # DVC: one matrix stage for the per-variant models, plus the source, naive and zero-shot stages (and the
    # two refinement bundles, tests/test_refine_pipeline.py)
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert sorted(k for k, st in dvc.items() if "cephalo evaluate" in str(st)) == \
        ["evaluate", "evaluate_naive", "evaluate_refine", "evaluate_refine_source", "evaluate_source",
         "evaluate_zero_shot"]
    assert dvc["evaluate"]["matrix"]["stage"] == ["adabn", "finetune"]


def test_dvc_stage_params_cover_what_each_command_reads(runs):
    for st in _dvc_for(runs["default"]) + _dvc_for(runs["aariz"]):
        cmd = _normalise(st["shell"])
        sub = cmd[1]
        ds = _opt(cmd, "--dataset") if "--dataset" in cmd else (cmd[2] if sub == "download" else None)
        v = _opt(cmd, "--variant") if "--variant" in cmd else None
        want = [s.format(ds=ds, v=v) for s in SECTIONS[sub]]
        assert sorted(want) == st["params"], (st["name"], want, st["params"])
        for m in st["metrics"]:  # compact summaries only (full metrics.json files are plain outs)
            assert m == "results/summary" and m in st["uncached"] and sub == "compare"


def test_override_reaches_the_cli_in_both_engines(runs):
    run = runs["override"]
    jobs = _parse_dry_run(run["text"])
    stages = _dvc_for(run, shlex.split(OVERRIDE))
    _assert_engines_agree(jobs, stages)
    cmds = [_normalise(j["shell"]) for j in jobs]
    # structural override: a second variant appears (preprocess, zero-shot, fine-tune, evaluate) ...
    zs = [c for c in cmds if "--stage" in c and _opt(c, "--stage") == "zero_shot"]
    assert sorted(_opt(c, "--name") for c in zs) == ["zero_shot-letterbox256", "zero_shot-letterbox768"]
    assert {_opt(c, "--split") for c in zs} == {"valid"}
    assert sum(c[1] == "train" and "--init" in c for c in cmds) == 2
    # ... and a value override reaches the CLI through the params file it reads, in both engines
    eff = yaml.safe_load((run["dir"] / _effective_params_path(jobs)).read_text())
    dvc_params = yaml.safe_load(next(run["dir"].glob("dvcside-*/params.yaml")).read_text())
    assert eff["evaluate"]["n_boot"] == dvc_params["evaluate"]["n_boot"] == 17
    base = yaml.safe_load((REPO / "params.yaml").read_text())
    for p in (eff, dvc_params):  # nothing else changed
        assert {k: v for k, v in p.items() if k not in ("evaluate", "pipeline")} == \
            {k: v for k, v in base.items() if k not in ("evaluate", "pipeline")}
    from cephalo.config import validate_params

    assert validate_params(eff).evaluate.n_boot == 17


def test_aariz_profile_downloads_and_fetches(runs):
    run = runs["aariz"]
    jobs = _parse_dry_run(run["text"])
    _assert_engines_agree(jobs, _dvc_for(run))
    cmds = [_normalise(j["shell"]) for j in jobs]
    subs = {c[1] for c in cmds}
    assert {"download", "fetch-model", "index", "preprocess", "evaluate", "train", "compare"} <= subs
    assert "make-demo" not in subs
    assert ("cephalo", "download", "aariz", "--out", "resources/raw/aariz", "--params", "PARAMS") in cmds
    for c in cmds:
        _check_cli(c)


def test_real_profile_reads_shared_data(runs, shared_data):
    run = runs["real"]
    jobs = _parse_dry_run(run["text"])
    _assert_engines_agree(jobs, _dvc_for(run))
    roots = sorted(_opt(_normalise(j["shell"]), "--root") for j in jobs if j["rule"] == "index")
    assert roots == ["../shared/data/hamedan", "../shared/data/isbi2015"]
    for j in jobs:
        _check_cli(_normalise(j["shell"]))


def test_profiles_are_complete_params_files():
    base = yaml.safe_load((REPO / "params.yaml").read_text())
    for prof in ("real", "aariz"):
        p = yaml.safe_load((REPO / "profiles" / f"{prof}.yaml").read_text())
        assert set(base) - {"demo"} <= set(p), (prof, sorted(set(base) - set(p)))
        assert set(p["pipeline"]) == set(base["pipeline"]), prof


def test_bad_pipeline_params_fail_the_dry_run(runs):
    run = runs["bad"]
    assert run["rc"] != 0 and "exactly one of train_source" in run["text"]


def test_profiles_are_generated_from_params_and_overlays():
    """profiles/*.yaml = params.yaml + profiles/overlays/*.yaml (python profiles/build.py)."""
    p = subprocess.run([sys.executable, str(REPO / "profiles" / "build.py"), "--check"], capture_output=True,
                       text=True)
    assert p.returncode == 0, p.stderr
