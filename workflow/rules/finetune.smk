# Fine-tune the source model on the target data set, per variant (one GPU each); evaluated by
# evaluate.smk (stage finetune).


rule finetune:
    input:
        code=code("train"),
        data=get_variant_dir(PIPE["target"], "{variant}"),
        init=SOURCE_CKPT,
    output:
        **{f.split(".")[0]: f"results/models/finetune/{{variant}}/{f}" for f in TRAIN_FILES},
    log:
        "logs/finetune/{variant}.log",
    threads: TRAIN_THREADS
    resources:
        gpu=1,
    params:
        section=[get_section("train"), get_section("model"), get_section("codec")],
        out_dir="results/models/finetune/{variant}",
        params_file=PARAMS,
    shell:
        "cephalo train --data {input.data} --init {input.init} --out {params.out_dir} --stage finetune"
        " --params {params.params_file} > {log} 2>&1"
