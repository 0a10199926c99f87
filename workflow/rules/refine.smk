# Coarse-to-fine refinement (params refine:, pipeline.refine_source / refine_variants): a refiner
# trained on the source data set (windows from the original images, jittered like the source
# model's validation errors) -> results/models/refine_source/ (+ bundle.json with the source
# model); fine-tuned on the target per variant (init: the source refiner, head moved by landmark
# name) -> results/models/refine/{variant}/ (+ bundle.json with the fine-tuned model). Both
# bundles are evaluated by the one evaluate rule (stages refine_source and refine).

REFINER_FILES = TRAIN_FILES + ("refine.json", "bundle.json")

if PIPE.get("refine_source"):

    rule train_refiner_source:
        input:
            code=code("train-refiner"),
            index=get_index(next(iter(PIPE["refine_source"]))),
            global_model=SOURCE_CKPT,
        output:
            **{f.split(".")[0]: f"results/models/refine_source/{f}" for f in REFINER_FILES},
        log:
            "logs/train_refiner_source.log",
        resources:
            gpu=1,
        params:
            section=[get_section("train"), get_section("refine"), get_section("codec"), get_section("model.transfer")],
            out_dir="results/models/refine_source",
            params_file=PARAMS,
        shell:
            "cephalo train-refiner --index {input.index} --global {input.global_model}"
            " --out {params.out_dir} --stage source --no-progress --params {params.params_file} > {log} 2>&1"


rule finetune_refiner:
    input:
        code=code("train-refiner"),
        index=get_index(PIPE["target"]),
        global_model="results/models/finetune/{variant}/best.pt",
        init="results/models/refine_source/best.pt",
    output:
        **{f.split(".")[0]: f"results/models/refine/{{variant}}/{f}" for f in REFINER_FILES},
    log:
        "logs/finetune_refiner/{variant}.log",
    resources:
        gpu=1,
    params:
        section=[get_section("train"), get_section("refine"), get_section("codec"), get_section("model.transfer")],
        out_dir="results/models/refine/{variant}",
        params_file=PARAMS,
    shell:
        "cephalo train-refiner --index {input.index} --global {input.global_model} --init {input.init}"
        " --out {params.out_dir} --stage finetune --no-progress --params {params.params_file} > {log} 2>&1"
