# Calibrated uncertainty (params calibrate:): split-conformal per-landmark prediction radii from the
# target's validation split (never training or test images), for every model made for the target:
# results/models/{stage}/{variant}/calibrated.pt (stages adabn, finetune: the same weights + the
# radii and the shape model of the review flags) and results/models/refine/{variant}/calibrated.json
# (a bundle whose radii describe the refined predictions). evaluate.smk evaluates these, so each
# run reports the empirical coverage of the radii on its test split.

CALIBRATED_STAGES = ("adabn", "finetune", "refine")


def get_calibrate_model(wildcards):
    if wildcards.stage == "refine":
        return f"results/models/refine/{wildcards.variant}/bundle.json"
    return f"results/models/{wildcards.stage}/{wildcards.variant}/best.pt"


rule calibrate:
    input:
        code=code("calibrate"),
        model=get_calibrate_model,
        data=get_variant_dir(PIPE["target"], "{variant}"),
    output:
        "results/models/{stage}/{variant}/calibrated.{ext}",
    log:
        "logs/calibrate/{stage}-{variant}.{ext}.log",
    wildcard_constraints:
        stage=_alternatives(CALIBRATED_STAGES),
        ext="pt|json",
    params:
        section=get_section("calibrate"),
        params_file=PARAMS,
    shell:
        "cephalo calibrate --model {input.model} --data {input.data} --out {output} --no-progress"
        " --params {params.params_file} > {log} 2>&1"
