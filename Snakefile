# cephalo pipeline (Snakemake). Thin entry point: config + rule files; every rule `shell:`s a
# `cephalo` subcommand (no `script:`/`run:` bodies), so dvc.yaml can declare the same commands.
#
#   snakemake --cores 2                                   # the embedded demo profile (params.yaml)
#   snakemake --cores 8 --resources gpu=1 --configfile profiles/real.yaml     # another profile
#   snakemake --cores 2 --config set="train.epochs=3 pipeline.variants=[letterbox128]"
#
# Overrides (see workflow/rules/common.smk): the first --configfile REPLACES params.yaml (a
# profile is a complete params file, exactly what DVC sees after `cp profiles/x.yaml params.yaml`);
# later --configfile files are deep-merged on top; `--config set="a.b=v ..."` sets dotted keys
# (values parsed as YAML), like `dvc exp run -S a.b=v`. The resulting params are written to
# results/params/<content hash>.yaml (one file per distinct params, never rewritten) and every command
# of the run reads that file (--params).

from snakemake.utils import min_version

min_version("8.0")


configfile: "params.yaml"


include: "workflow/rules/common.smk"


rule all:
    default_target: True
    input:
        get_final_outputs(),


include: "workflow/rules/data.smk"
include: "workflow/rules/index.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/source_model.smk"
include: "workflow/rules/adapt.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/refine.smk"
include: "workflow/rules/calibrate.smk"
include: "workflow/rules/compare.smk"
include: "workflow/rules/dvc.smk"
