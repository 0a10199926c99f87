# Shared helpers: effective params (profiles + overrides), schema validation, get_* functions.
#
# Layout (snakemake-workflows): resources/ (raw inputs: demo data, downloads), results/ (every
# product: index, variants, models, eval runs, comparison), logs/<rule>/... (one log per job).
# Paths are fixed here and in dvc.yaml; params.yaml `pipeline:` says which data/variants run.

import copy
import shlex
from pathlib import Path

import yaml
from snakemake.utils import update_config, validate


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
        return
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


_apply_profiles_and_overrides(config)
validate(config, schema="../schemas/config.schema.yaml")

PIPE = config["pipeline"]

#: the params file every command reads: the effective config, written at parse time (only
#: rewritten when its content changes). Rules also list the sections they read under `params:`,
#: so Snakemake's params rerun-trigger re-runs exactly the jobs whose params changed.
PARAMS = "results/params.effective.yaml"


def _write_effective_params(cfg, path=PARAMS):
    text = yaml.safe_dump(cfg, sort_keys=False, default_flow_style=False, allow_unicode=True)
    p = Path(path)
    if p.is_file() and p.read_text() == text:
        return
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_text(text)
    tmp.replace(p)


_write_effective_params(config)


# --- consistency checks the JSON schema cannot express ------------------------------------
def _check_pipeline(cfg):
    pipe = cfg["pipeline"]
    datasets = cfg.get("data", {}).get("datasets", {}) or {}
    variants = cfg.get("variants", {}) or {}
    errors = []
    for name in list(pipe["raw"]) + list(pipe["download"]):
        if name not in datasets:
            errors.append(f"pipeline: data set {name!r} has no data.datasets.{name} entry")
    for name in pipe["download"]:
        if pipe["raw"].get(name) != f"resources/raw/{name}":
            errors.append(f"pipeline.raw.{name}: a downloaded data set lives in resources/raw/{name}")
    if pipe["target"] not in pipe["raw"]:
        errors.append(f"pipeline.target {pipe['target']!r} is not in pipeline.raw")
    for name in pipe["source"]:
        if name not in pipe["raw"]:
            errors.append(f"pipeline.source {name!r} is not in pipeline.raw")
        if name == pipe["target"]:
            errors.append(f"pipeline.source {name!r} is also the target")
    for v in list(pipe["variants"]) + [pipe["source_variant"]]:
        if v not in variants:
            errors.append(f"pipeline: variant {v!r} has no variants.{v} entry")
    if len(pipe["train_source"]) + len(pipe["fetch_source"]) != 1:
        errors.append("pipeline: exactly one of train_source ([DATASET]) and fetch_source ([public]) "
                      "must name the source model")
    for name in pipe["train_source"]:
        if name not in pipe["source"]:
            errors.append(f"pipeline.train_source {name!r} is not in pipeline.source")
    if errors:
        raise ValueError("invalid params: " + "; ".join(errors))


_check_pipeline(config)


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
EVAL_FILES = ("metrics.json", "per_landmark.csv", "per_image.csv", "predictions.parquet", "diagnosis.md",
              "plots/sdr_curve.csv")


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


def get_source_split(wildcards):
    return PIPE["source"][wildcards.dataset]


def eval_outputs(run):
    return [f"results/eval/{run}/{f}" for f in EVAL_FILES]


def get_runs():
    """Evaluation run names, in comparison order."""
    runs = [f"source-{d}" for d in PIPE["source"]]
    runs += [f"naive-{v}" for v in PIPE["variants"]]
    runs += [f"zeroshot-{v}" for v in PIPE["variants"]]
    runs += [f"adabn-{v}" for v in PIPE["variants"]]
    runs += [f"finetuned-{v}" for v in PIPE["variants"]]
    return runs


def get_final_outputs():
    out = ["results/comparison.csv", "results/comparison.md"]
    out += [f"results/quality/{d}/quality.json" for d in PIPE["raw"]]
    for run in get_runs():
        out += eval_outputs(run)
    return out
