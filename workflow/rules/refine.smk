# Coarse-to-fine refinement (params refine:, pipeline.refine_source / refine_variants): a refiner
# trained on the source data set (windows from the original images, jittered like the source
# model's validation errors) -> results/models/refine_source/; fine-tuned on the target per variant
# (init: the source refiner, head moved by landmark name) -> results/models/refine/{variant}/.
# `cephalo bundle` pairs each refiner with its global model and the inference settings (refine.
# iterations / batch_size / tta) in bundle.json, a step of its own: a change of those settings
# re-writes the bundles and re-evaluates, and trains nothing. Both bundles are evaluated by the one
# evaluate rule (stages refine_source and refine).

REFINER_FILES = TRAIN_FILES + ("refine.json",)


def refine_training_section():
    """params refine: without the inference settings (what a trained refiner depends on)."""
    return {k: v for k, v in (get_section("refine") or {}).items() if k not in REFINE_INFERENCE_KEYS}


def refine_inference_section():
    """params refine: inference settings only (what a bundle carries)."""
    return {k: v for k, v in (get_section("refine") or {}).items() if k in REFINE_INFERENCE_KEYS}


def bundle_global_model(wildcards):
    """The global model a refiner follows: the source model, or the fine-tuned model of its variant."""
    if wildcards.folder == "refine_source":
        return SOURCE_CKPT
    return f"results/models/finetune/{wildcards.folder.split('/', 1)[1]}/best.pt"


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
        threads: TRAIN_THREADS
        resources:
            gpu=1,
        params:
            section=[
                get_section("train"),
                refine_training_section(),
                get_section("codec"),
                get_section("model.transfer"),
            ],
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
    threads: TRAIN_THREADS
    resources:
        gpu=1,
    params:
        section=[get_section("train"), refine_training_section(), get_section("codec"), get_section("model.transfer")],
        out_dir="results/models/refine/{variant}",
        params_file=PARAMS,
    shell:
        "cephalo train-refiner --index {input.index} --global {input.global_model} --init {input.init}"
        " --out {params.out_dir} --stage finetune --no-progress --params {params.params_file} > {log} 2>&1"


rule bundle_refiner:
    input:
        code=code("bundle"),
        global_model=bundle_global_model,
        refiner="results/models/{folder}/best.pt",
    output:
        "results/models/{folder}/bundle.json",
    log:
        "logs/bundle/{folder}.log",
    wildcard_constraints:
        folder="refine_source|refine/[^/]+",
    params:
        section=refine_inference_section(),
        params_file=PARAMS,
    shell:
        "cephalo bundle --global {input.global_model} --refiner {input.refiner} --out {output}"
        " --params {params.params_file} > {log} 2>&1"
