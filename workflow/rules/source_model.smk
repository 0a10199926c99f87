# The source model, results/models/source/best.pt: either trained on the source data set
# (pipeline.train_source: [DATASET]) or the public checkpoint (pipeline.fetch_source: [public]).

if PIPE["train_source"]:

    rule train_source:
        input:
            code=code("train"),
            data=get_variant_dir(PIPE["train_source"][0], PIPE["source_variant"]),
        output:
            **{f.split(".")[0]: f"results/models/source/{f}" for f in TRAIN_FILES},
        log:
            "logs/train_source.log",
        threads: TRAIN_THREADS
        resources:
            gpu=1,
        params:
            section=[get_section("train"), get_section("model"), get_section("codec")],
            out_dir="results/models/source",
            params_file=PARAMS,
        shell:
            "cephalo train --data {input.data} --out {params.out_dir} --stage source"
            " --params {params.params_file} > {log} 2>&1"


if PIPE["fetch_source"]:

    rule fetch_source:
        input:
            code=code("fetch-model"),
        output:
            SOURCE_CKPT,
        log:
            "logs/fetch_source.log",
        params:
            section=get_section("model.source"),
            params_file=PARAMS,
        shell:
            "cephalo fetch-model --out {output} --params {params.params_file} > {log} 2>&1"
