# Coarse-to-fine refinement (params refine:, pipeline.refine_source / refine_variants): a refiner
# trained on the source data set (windows from the original images, jittered like the source
# model's validation errors), checked in-domain through its bundle; fine-tuned on the target per
# variant (init: the source refiner, head moved by landmark name) and evaluated through the bundle
# global fine-tuned model + refiner.

REFINER_FILES = TRAIN_FILES + ("refine.json", "bundle.json")

if PIPE.get("refine_source"):
    REFINE_DS, REFINE_SPLIT = next(iter(PIPE["refine_source"].items()))

    rule train_refiner_source:
        input:
            index=get_index(REFINE_DS),
            global_model=SOURCE_CKPT,
        output:
            **{f.split(".")[0]: f"results/models/refiner/source/{f}" for f in REFINER_FILES},
        params:
            section=[get_section("train"), get_section("refine"), get_section("codec"),
                     get_section("model.transfer")],
            out_dir="results/models/refiner/source",
            params_file=PARAMS,
        resources:
            gpu=1,
        log:
            "logs/train_refiner_source.log",
        shell:
            "cephalo train-refiner --index {input.index} --global {input.global_model}"
            " --out {params.out_dir} --stage source --no-progress --params {params.params_file} > {log} 2>&1"

    rule evaluate_refined_source:
        input:
            model="results/models/refiner/source/bundle.json",
            data=get_variant_dir(REFINE_DS, PIPE["source_variant"]),
            index=get_index(REFINE_DS),
        output:
            **{f.split("/")[-1].split(".")[0]: f"results/eval/refined-source-{REFINE_DS}/{f}" for f in EVAL_FILES},
        params:
            section=get_section("evaluate"),
            split=REFINE_SPLIT,
            out_dir=f"results/eval/refined-source-{REFINE_DS}",
            name=f"refined-source-{REFINE_DS}",
            params_file=PARAMS,
        log:
            f"logs/evaluate/refined-source-{REFINE_DS}.log",
        shell:
            "cephalo evaluate --model {input.model} --data {input.data} --split {params.split}"
            " --out {params.out_dir} --name {params.name} --index {input.index} --stage refined_source"
            " --params {params.params_file} > {log} 2>&1"


rule finetune_refiner:
    input:
        index=get_index(PIPE["target"]),
        global_model="results/models/finetuned/{variant}/best.pt",
        init="results/models/refiner/source/best.pt",
    output:
        **{f.split(".")[0]: f"results/models/refiner/finetuned/{{variant}}/{f}" for f in REFINER_FILES},
    params:
        section=[get_section("train"), get_section("refine"), get_section("codec"), get_section("model.transfer")],
        out_dir="results/models/refiner/finetuned/{variant}",
        params_file=PARAMS,
    resources:
        gpu=1,
    log:
        "logs/finetune_refiner/{variant}.log",
    shell:
        "cephalo train-refiner --index {input.index} --global {input.global_model} --init {input.init}"
        " --out {params.out_dir} --stage finetune --no-progress --params {params.params_file} > {log} 2>&1"


rule evaluate_refined:
    input:
        model="results/models/refiner/finetuned/{variant}/bundle.json",
        data=get_variant_dir(PIPE["target"], "{variant}"),
        index=get_index(PIPE["target"]),
    output:
        **{f.split("/")[-1].split(".")[0]: f"results/eval/refined-{{variant}}/{f}" for f in EVAL_FILES},
    params:
        section=get_section("evaluate"),
        split=PIPE["eval_split"],
        out_dir="results/eval/refined-{variant}",
        params_file=PARAMS,
    log:
        "logs/evaluate/refined-{variant}.log",
    shell:
        "cephalo evaluate --model {input.model} --data {input.data} --split {params.split}"
        " --out {params.out_dir} --name refined-{wildcards.variant} --index {input.index} --stage refined"
        " --params {params.params_file} > {log} 2>&1"
