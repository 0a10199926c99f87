# One table of every evaluation run (source check, zero-shot and fine-tuned per variant).
# The command globs results/eval/*, the same text DVC runs (dvc.yaml cannot list a variable
# number of run folders); the explicit inputs below make Snakemake build every run first.


rule compare:
    input:
        [f"results/eval/{run}/{f}" for run in get_runs() for f in ("metrics.json", "predictions.parquet")],
    output:
        csv="results/comparison.csv",
        md="results/comparison.md",
    params:
        stem="results/comparison",
        params_file=PARAMS,
    log:
        "logs/compare.log",
    shell:
        "cephalo compare results/eval/* --out {params.stem} --params {params.params_file} > {log} 2>&1"
