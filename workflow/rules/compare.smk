# One comparison of every evaluation run (source check, zero-shot, AdaBN and fine-tuned per
# variant) over the landmarks all runs share: tables, a self-contained HTML page, PNG plots and
# one compact summary per run (results/summary/<run>.json, what `dvc metrics show` displays).
# The command globs results/eval/*, the same text DVC runs (dvc.yaml cannot list a variable
# number of run folders); the explicit inputs below make Snakemake build every run first.
# Outputs marked report(...) appear in `snakemake --report report.html`.


rule compare:
    input:
        [f"results/eval/{run}/{f}" for run in get_runs() for f in ("metrics.json", "predictions.parquet")],
        code=code("compare"),
    output:
        csv=report("results/comparison.csv", category="Comparison", labels={"figure": "table (CSV)"}),
        md="results/comparison.md",
        html=report("results/comparison.html", category="Comparison", labels={"figure": "comparison page"}),
        pairs="results/comparison_pairs.csv",
        sdr=report(
            "results/comparison_plots/sdr_curves.png",
            category="Comparison",
            labels={"figure": "SDR curves, shared landmarks"},
        ),
        per_landmark=report(
            "results/comparison_plots/per_landmark.png",
            category="Comparison",
            labels={"figure": "per-landmark MRE with the human limit"},
        ),
        summary=directory("results/summary"),
    log:
        "logs/compare.log",
    params:
        stem="results/comparison",
        params_file=PARAMS,
    shell:
        "cephalo compare results/eval/* --out {params.stem} --summary-dir {output.summary}"
        " --params {params.params_file} > {log} 2>&1"
