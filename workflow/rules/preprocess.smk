# Preprocessing variants: the source data set in pipeline.source_variant, the target in every
# pipeline.variants entry (the {variant} wildcard ranges over them).


rule preprocess:
    input:
        code=code("preprocess"),
        index="results/index/{dataset}.parquet",
    output:
        directory("results/variants/{dataset}/{variant}"),
    log:
        "logs/preprocess/{dataset}/{variant}.log",
    params:
        section=lambda w: get_section(f"variants.{w.variant}"),
        params_file=PARAMS,
    shell:
        "cephalo preprocess --index {input.index} --variant {wildcards.variant} --out {output}"
        " --params {params.params_file} > {log} 2>&1"
