# Raw data sets: the embedded synthetic demo (`cephalo make-demo`) and release downloads
# (`cephalo download`). Data sets already on disk (pipeline.raw -> a local folder) need no rule.

if PIPE["make_demo"]:

    rule make_demo:
        input:
            code=code("make-demo"),
        output:
            isbi2015=directory("{demo_dir}/isbi2015"),
            aariz=directory("{demo_dir}/aariz"),
        log:
            "logs/make_demo/{demo_dir}.log",
        wildcard_constraints:
            demo_dir=_alternatives(PIPE["make_demo"]),
        params:
            section=get_section("demo"),
            params_file=PARAMS,
        shell:
            "cephalo make-demo --out {wildcards.demo_dir} --params {params.params_file} > {log} 2>&1"


rule download:
    input:
        code=code("download"),
    output:
        directory("resources/raw/{dataset}"),
    log:
        "logs/download/{dataset}.log",
    wildcard_constraints:
        dataset=_alternatives(PIPE["download"]),
    params:
        section=lambda w: get_section(f"data.datasets.{w.dataset}.download"),
        params_file=PARAMS,
    shell:
        "cephalo download {wildcards.dataset} --out {output} --params {params.params_file} > {log} 2>&1"
