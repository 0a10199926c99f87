# Zero-shot: the source model on the target data set, per variant, with diagnosis
# (diagnosis.md, plots); the in-domain check on the source data set's test split; and the naive
# run: the source model on the target the way a clinic first runs a public model (grey values
# 0-1 without the ImageNet mean/std, heatmaps read by soft-argmax over the raw outputs, as the
# public HRNet demo does), whose diagnosis names the preprocessing mismatch.


rule evaluate_source:
    input:
        model=SOURCE_CKPT,
        data=lambda w: get_variant_dir(w.dataset, PIPE["source_variant"]),
        index="results/index/{dataset}.parquet",
    output:
        **{f.split("/")[-1].split(".")[0]: f"results/eval/source-{{dataset}}/{f}" for f in EVAL_FILES},
    params:
        section=get_section("evaluate"),
        split=get_source_split,
        out_dir="results/eval/source-{dataset}",
        params_file=PARAMS,
    log:
        "logs/evaluate/source-{dataset}.log",
    shell:
        "cephalo evaluate --model {input.model} --data {input.data} --split {params.split}"
        " --out {params.out_dir} --name source-{wildcards.dataset} --index {input.index} --stage source"
        " --params {params.params_file} > {log} 2>&1"


rule zero_shot:
    input:
        model=SOURCE_CKPT,
        data=get_variant_dir(PIPE["target"], "{variant}"),
        index=get_index(PIPE["target"]),
    output:
        **{f.split("/")[-1].split(".")[0]: f"results/eval/zeroshot-{{variant}}/{f}" for f in EVAL_FILES},
    params:
        section=get_section("evaluate"),
        split=PIPE["zero_shot_split"],
        out_dir="results/eval/zeroshot-{variant}",
        params_file=PARAMS,
    log:
        "logs/evaluate/zeroshot-{variant}.log",
    shell:
        "cephalo evaluate --model {input.model} --data {input.data} --split {params.split}"
        " --out {params.out_dir} --name zeroshot-{wildcards.variant} --index {input.index} --stage zero_shot"
        " --params {params.params_file} > {log} 2>&1"


rule naive:
    input:
        model=SOURCE_CKPT,
        data=get_variant_dir(PIPE["target"], "{variant}"),
        index=get_index(PIPE["target"]),
    output:
        **{f.split("/")[-1].split(".")[0]: f"results/eval/naive-{{variant}}/{f}" for f in EVAL_FILES},
    params:
        section=get_section("evaluate"),
        split=PIPE["zero_shot_split"],
        out_dir="results/eval/naive-{variant}",
        params_file=PARAMS,
    log:
        "logs/evaluate/naive-{variant}.log",
    shell:
        "cephalo evaluate --model {input.model} --data {input.data} --split {params.split}"
        " --out {params.out_dir} --name naive-{wildcards.variant} --index {input.index} --stage naive"
        " --normalisation unit --decoder soft_argmax --params {params.params_file} > {log} 2>&1"
