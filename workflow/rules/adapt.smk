# AdaBN (Li et al., 2016): the source model with BatchNorm statistics re-estimated on unlabelled target
# images, per variant -- the label-free adaptation, evaluated beside zero-shot and fine-tuned.


rule adapt:
    input:
        code=code("adapt"),
        model=SOURCE_CKPT,
        data=get_variant_dir(PIPE["target"], "{variant}"),
    output:
        "results/models/adabn/{variant}.pt",
    params:
        section=get_section("adapt"),
        params_file=PARAMS,
    log:
        "logs/adapt/{variant}.log",
    shell:
        "cephalo adapt --model {input.model} --data {input.data} --out {output} --no-progress"
        " --params {params.params_file} > {log} 2>&1"


rule evaluate_adapted:
    input:
        code=code("evaluate"),
        model="results/models/adabn/{variant}.pt",
        data=get_variant_dir(PIPE["target"], "{variant}"),
        index=get_index(PIPE["target"]),
    output:
        **{f.split("/")[-1].split(".")[0]: f"results/eval/adabn-{{variant}}/{f}" for f in EVAL_FILES},
    params:
        section=get_section("evaluate"),
        split=PIPE["eval_split"],
        out_dir="results/eval/adabn-{variant}",
        params_file=PARAMS,
    log:
        "logs/evaluate/adabn-{variant}.log",
    shell:
        "cephalo evaluate --model {input.model} --data {input.data} --split {params.split}"
        " --out {params.out_dir} --name adabn-{wildcards.variant} --index {input.index} --stage adabn"
        " --params {params.params_file} > {log} 2>&1"
