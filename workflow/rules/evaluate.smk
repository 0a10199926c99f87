# Evaluate each fine-tuned model on the target's held-out split (MRE/SDR in mm, diagnosis).


rule evaluate_finetuned:
    input:
        code=code("evaluate"),
        model="results/models/finetuned/{variant}/best.pt",
        data=get_variant_dir(PIPE["target"], "{variant}"),
        index=get_index(PIPE["target"]),
    output:
        **{f.split("/")[-1].split(".")[0]: f"results/eval/finetuned-{{variant}}/{f}" for f in EVAL_FILES},
    params:
        section=get_section("evaluate"),
        split=PIPE["eval_split"],
        out_dir="results/eval/finetuned-{variant}",
        params_file=PARAMS,
    log:
        "logs/evaluate/finetuned-{variant}.log",
    shell:
        "cephalo evaluate --model {input.model} --data {input.data} --split {params.split}"
        " --out {params.out_dir} --name finetuned-{wildcards.variant} --index {input.index} --stage fine_tuned"
        " --params {params.params_file} > {log} 2>&1"
