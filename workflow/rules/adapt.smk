# AdaBN (Li et al., 2016): the source model with BatchNorm statistics re-estimated on unlabelled target
# images, per variant -- the label-free adaptation, evaluated (evaluate.smk, stage adabn) beside
# zero-shot and fine-tuned. The checkpoint sits where every per-variant stage keeps its model:
# results/models/{stage}/{variant}/best.pt (evaluated with its radii as calibrated.pt, calibrate.smk).


rule adapt:
    input:
        code=code("adapt"),
        model=SOURCE_CKPT,
        data=get_variant_dir(PIPE["target"], "{variant}"),
    output:
        "results/models/adabn/{variant}/best.pt",
    log:
        "logs/adapt/{variant}.log",
    params:
        section=get_section("adapt"),
        params_file=PARAMS,
    shell:
        "cephalo adapt --model {input.model} --data {input.data} --out {output} --no-progress"
        " --params {params.params_file} > {log} 2>&1"
