# Landmark index (Parquet) + data-quality report, one per data set in pipeline.raw.


rule index:
    input:
        code=code("index"),
        root=get_raw_root,
    output:
        index="results/index/{dataset}.parquet",
        quality="results/quality/{dataset}/quality.json",
        quality_md="results/quality/{dataset}/quality.md",
    log:
        "logs/index/{dataset}.log",
    params:
        section=lambda w: get_section(f"data.datasets.{w.dataset}"),
        report_dir="results/quality/{dataset}",
        params_file=PARAMS,
    shell:
        "cephalo index --dataset {wildcards.dataset} --root {input.root} --out {output.index}"
        " --report {params.report_dir} --params {params.params_file} > {log} 2>&1"
