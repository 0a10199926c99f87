# Shared helpers: effective params (profiles + overrides), typed validation (cephalo.config), get_* functions.
#
# Layout (snakemake-workflows): resources/ (raw inputs: demo data, downloads), results/ (every
# product: index, variants, models, eval runs, comparison), logs/<rule>/... (one log per job).
# Paths are fixed here and in dvc.yaml; params.yaml `pipeline:` says which data/variants run.

import copy
import shlex
from pathlib import Path

import yaml
from snakemake.utils import update_config


# --- effective params: profile replacement and `--config set="a.b=v ..."` -----------------
def _apply_profiles_and_overrides(cfg):
    """Rebuild ``cfg`` in place: CLI configfiles replace params.yaml, then `set=` overrides."""
    settings = workflow.config_settings
    if settings.configfiles and not getattr(settings, "replace_workflow_config", False):
        # the first --configfile is a complete params file (a profile) and replaces params.yaml;
        # overwrite_config = all CLI configfiles deep-merged in order + --config entries
        fresh = {}
        update_config(fresh, copy.deepcopy(settings.overwrite_config))
        cfg.clear()
        cfg.update(fresh)
    sets = cfg.pop("set", None)
    if sets is None:
        return []
    keys = []
    for item in shlex.split(str(sets)):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f'--config set=...: expected KEY=VALUE items like "train.epochs=3", got {item!r}')
        node = cfg
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = yaml.safe_load(value)
        keys.append(key)
    return keys


_SET_KEYS = _apply_profiles_and_overrides(config)

# The effective params are validated with the same typed schema every `cephalo` command uses
# (cephalo.config): `snakemake -n` rejects exactly what a run would reject, with the same one-line
# message naming the dotted key (the source here: the params file(s) and the --config overrides).
import sys

from cephalo.config import validate_params
from cephalo.config.load import check_pipeline
from cephalo.errors import ConfigError

_PARAMS_SOURCE = " + ".join([str(f) for f in (workflow.config_settings.configfiles or [])] or ["params.yaml"])
if _SET_KEYS:
    _PARAMS_SOURCE += " + --config set=" + ",".join(_SET_KEYS)
try:
    PARAMS_TYPED = validate_params(config, source=_PARAMS_SOURCE)
    check_pipeline(PARAMS_TYPED, source=_PARAMS_SOURCE)
except ConfigError as e:
    sys.exit(f"cephalo: error: {e}")

PIPE = config["pipeline"]


# --- effective params of THIS run: content-addressed, written atomically ----------------------
#: the params file every command of this run reads: results/params/<sha256[:16]>.yaml, named by its
#: content, so that a dry run or a second run with other params (another --config) writes another
#: file and never changes what a running job reads. It is written atomically (temporary + rename;
#: identical content when two runs agree) and never rewritten. It is a Path, not a str: Snakemake's
#: params rerun-trigger ignores it (only the sections that rules list under `params:` count), so
#: changing one section re-runs exactly the jobs that read it.
def _write_effective_params(cfg, folder="results/params"):
    import hashlib
    from pathlib import PurePosixPath

    from cephalo.io import atomic_path

    text = yaml.safe_dump(cfg, sort_keys=False, default_flow_style=False, allow_unicode=True)
    path = Path(folder) / f"{hashlib.sha256(text.encode()).hexdigest()[:16]}.yaml"
    if not (path.is_file() and path.read_text() == text):
        with atomic_path(path) as tmp:
            tmp.write_text(text)
    return PurePosixPath(path.as_posix())


PARAMS = _write_effective_params(config)


# --- code-aware reruns: results/code/<command>.sha256, rewritten at parse time only when the code
# a subcommand can run changed (its import closure, by syntax tree: comments and docstrings do not
# count). Every rule lists its command's file as input, so Snakemake's mtime trigger reruns exactly
# the jobs whose code changed and what follows; DVC's code_fingerprint stage writes the same files.
from cephalo.fingerprint import write_code_fingerprints as _write_code_fingerprints

CODE_DIR = "results/code"
_write_code_fingerprints(CODE_DIR)


def code(command):
    """The code fingerprint file of a cephalo subcommand (a rule input)."""
    return f"{CODE_DIR}/{command}.sha256"


# --- wildcard domains ---------------------------------------------------------------------
def _alternatives(names):
    import re

    return "|".join(re.escape(str(n)) for n in names) or "(?!)"


wildcard_constraints:
    dataset=_alternatives(PIPE["raw"]),
    variant=_alternatives(set(PIPE["variants"]) | {PIPE["source_variant"]}),


# --- get_* helpers ------------------------------------------------------------------------
SOURCE_CKPT = "results/models/source/best.pt"
TRAIN_FILES = ("best.pt", "last.pt", "history.csv", "train.json")
#: threads of each training job (pipeline.train_threads): Snakemake sets OMP_NUM_THREADS to a job's threads
#: (1 unless a rule says otherwise), and torch follows it; Snakemake never gives a job more than --cores
TRAIN_THREADS = int(PIPE.get("train_threads", 1))
#: refine: settings only a bundle reads (cephalo bundle); the refiner's training depends on the others
from cephalo.config.schema import RefineConfig as _RefineConfig

REFINE_INFERENCE_KEYS = _RefineConfig.INFERENCE_KEYS
EVAL_FILES = (
    "metrics.json",
    "per_landmark.csv",
    "per_image.csv",
    "predictions.parquet",
    "diagnosis.md",
    "plots/sdr_curve.csv",
)


def get_section(dotted, default=None):
    """A params entry by dotted path (for `params:` so that a change re-runs the job)."""
    node = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def get_raw_root(wildcards):
    """Release root of a data set (made by make_demo / download, or a local folder)."""
    return PIPE["raw"][wildcards.dataset]


def get_index(dataset):
    return f"results/index/{dataset}.parquet"


def get_variant_dir(dataset, variant):
    return f"results/variants/{dataset}/{variant}"


def eval_outputs(run):
    return [f"results/eval/{run}/{f}" for f in EVAL_FILES]


#: evaluation stages, in comparison order; each name is also the --stage tag, the run-name prefix
#: (results/eval/{stage}-{target}) and, per variant, the results/models/{stage}/ folder
#: naive = the source model on the target fed and decoded the way a clinic first runs a public model
#: (get_eval_options), per variant
EVAL_STAGES = ("source", "naive", "zero_shot", "adabn", "finetune")
#: refinement stages (refine.smk), evaluated through a bundle (global model + refiner):
#: refine_source = the source refiner with the source model on the source test split (target =
#: data set), refine = the fine-tuned refiner with the fine-tuned model, per variant
REFINE_STAGES = ("refine_source", "refine")


def get_runs():
    """Evaluation run names ``{stage}-{target}``, in comparison order."""
    runs = [f"source-{d}" for d in PIPE["source"]]
    runs += [f"{stage}-{v}" for stage in EVAL_STAGES[1:] for v in PIPE["variants"]]
    runs += [f"refine_source-{d}" for d in PIPE.get("refine_source", {})]
    runs += [f"refine-{v}" for v in PIPE.get("refine_variants", [])]
    return runs


def get_eval_model(wildcards):
    """The checkpoint a run evaluates: the source model, or the stage's per-variant model with its
    conformal radii (calibrate.smk: calibrated.pt, or calibrated.json for a refiner bundle)."""
    if wildcards.stage in ("source", "naive", "zero_shot"):
        return SOURCE_CKPT
    if wildcards.stage == "refine_source":
        return "results/models/refine_source/bundle.json"
    if wildcards.stage == "refine":
        return f"results/models/refine/{wildcards.target}/calibrated.json"
    return f"results/models/{wildcards.stage}/{wildcards.target}/calibrated.pt"


def get_eval_data(wildcards):
    if wildcards.stage in ("source", "refine_source"):
        return get_variant_dir(wildcards.target, PIPE["source_variant"])
    return get_variant_dir(PIPE["target"], wildcards.target)


def get_eval_index(wildcards):
    return get_index(wildcards.target if wildcards.stage in ("source", "refine_source") else PIPE["target"])


def get_eval_split(wildcards):
    if wildcards.stage == "source":
        return PIPE["source"][wildcards.target]
    if wildcards.stage == "refine_source":
        return PIPE["refine_source"][wildcards.target]
    return PIPE["zero_shot_split"] if wildcards.stage in ("naive", "zero_shot") else PIPE["eval_split"]


#: extra `cephalo evaluate` options of a stage: the naive run feeds grey values 0-1 without the
#: ImageNet mean/std and reads the heatmaps by soft-argmax over the raw outputs (the public HRNet demo)
EVAL_OPTIONS = {"naive": " --normalisation unit --decoder soft_argmax"}


def get_eval_options(wildcards):
    return EVAL_OPTIONS.get(wildcards.stage, "")


def get_final_outputs():
    out = ["results/comparison.csv", "results/comparison.md", "results/comparison.html", "results/summary"]
    out += [f"results/quality/{d}/quality.json" for d in PIPE["raw"]]
    for run in get_runs():
        out += eval_outputs(run)
    return out
