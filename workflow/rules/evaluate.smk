# Every evaluation run is one job of this rule: `cephalo evaluate` on results/eval/{stage}-{target}
# (MRE/SDR in mm, diagnosis, plots). {stage} is one of EVAL_STAGES (common.smk), the same name as
# the --stage tag, the run-name prefix and the results/models/{stage}/ folder:
#
#   source     the source model on the source data set's test split (in-domain check); target = data set
#   naive      the source model on the target fed and decoded as a clinic first runs a public model
#              (no ImageNet mean/std, soft-argmax over the raw outputs; EVAL_OPTIONS), per variant
#   zero_shot  the source model on the target data set, per variant (with diagnosis)
#   adabn      the source model with BatchNorm statistics re-estimated on the target (adapt.smk)
#   finetune   the source model fine-tuned on the target (finetune.smk)
#   (adabn, finetune and refine evaluate their models with conformal radii: calibrate.smk)
#   refine_source, refine  a global model + refiner bundle (refine.smk; REFINE_STAGES)
#
# The stage-specific inputs and split come from get_eval_* in common.smk.


rule evaluate:
    input:
        code=code("evaluate"),
        model=get_eval_model,
        data=get_eval_data,
        index=get_eval_index,
    output:
        **{f.split("/")[-1].split(".")[0]: f"results/eval/{{stage}}-{{target}}/{f}" for f in EVAL_FILES},
    log:
        "logs/evaluate/{stage}-{target}.log",
    wildcard_constraints:
        stage=_alternatives(EVAL_STAGES + REFINE_STAGES),
        target=_alternatives(set(PIPE["raw"]) | set(PIPE["variants"])),
    params:
        section=get_section("evaluate"),
        split=get_eval_split,
        options=get_eval_options,
        params_file=PARAMS,
    shell:
        "cephalo evaluate --model {input.model} --data {input.data} --split {params.split}"
        " --out results/eval/{wildcards.stage}-{wildcards.target} --name {wildcards.stage}-{wildcards.target}"
        " --index {input.index} --stage {wildcards.stage}{params.options} --params {params.params_file} > {log} 2>&1"
