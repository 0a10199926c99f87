"""The DVC stage table: every stage of ``dvc.yaml``, written once, in Python.

``dvc.yaml`` is generated from this table (``python workflow/build_dvc.py``; ``--check`` fails when
the file is out of date, and the test suite runs it). The Snakemake rules (``workflow/rules/*.smk``)
declare the same commands, inputs and outputs; ``tests/test_pipeline_contract.py`` runs both engines'
own planners and checks that they agree.

A stage is a :class:`Stage`: its ``cmd`` is a list of words (joined by spaces; DVC interpolates
``${...}``), ``loop`` is DVC's ``foreach`` value or a ``matrix`` mapping; ``doc`` and ``heading``
become comments in dvc.yaml. The outputs shared by stages of one kind (an evaluation run folder, a
training run folder) come from one function each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: the comment at the top of dvc.yaml
HEADER = """\
cephalo pipeline (DVC). The same stages, commands, inputs and outputs as the Snakefile
(workflow/rules/*.smk); tests/test_pipeline_contract.py checks that the two agree.
GENERATED from workflow/stages.py by `python workflow/build_dvc.py`: edit the table, not this file.

  dvc repro                                   # the embedded demo profile (params.yaml)
  dvc exp run -S train.epochs=3               # one value (= snakemake --config set="train.epochs=3")
  cp profiles/real.yaml params.yaml && dvc repro     # a whole profile (params file override)

Which stages exist is data: `foreach` over a params list/dict that is empty switches a stage
off (pipeline.make_demo, download, source, train_source, fetch_source); per-variant stages
iterate pipeline.variants.

What DVC shows: `dvc metrics show` = results/summary/<run>.json (a few figures per run over the
landmarks all runs share, written by `cephalo compare`); full detail stays in each run's
metrics.json. `dvc plots show` = the PNG plots at the end (no network needed).

Every output is cached (no `cache: false`): results/ is not in git, so `dvc push` / `dvc pull`
(or `dvc checkout`) is how every file either engine checks comes back (docs/team.md).

Code-aware reruns: every stage depends on results/code/<command>.sha256, the fingerprint of the
code its cephalo subcommand can run (stage code_fingerprint; Snakemake writes the same files at
parse time). A change to that code reruns the stage and what follows; a comment, a docstring,
a .smk file or the README reruns nothing.
Evaluation runs are results/eval/<stage>-<target> with one name per stage everywhere (run
folder, --stage tag, results/models/<stage>/): source, naive, zero_shot, adabn, finetune. Snakemake has
one rule for all five (workflow/rules/evaluate.smk); DVC needs four stage definitions, because
the in-domain, naive and zero-shot runs evaluate one model that no per-variant path names."""

#: the comment above the top-level ``plots`` entry
PLOTS_DOC = """\
`dvc plots show` renders these images into dvc_plots/index.html (no network, no JavaScript);
`results/comparison.html` is the same comparison as one self-contained page."""

PLOTS = ["results/comparison_plots/sdr_curves.png", "results/comparison_plots/per_landmark.png"]

#: the params file every command reads
PARAMS = "--params params.yaml"

#: params refine: settings that only ``cephalo bundle`` reads (RefineConfig.INFERENCE_KEYS; a test checks) ...
REFINE_INFERENCE = ["refine.iterations", "refine.batch_size", "refine.tta"]
#: ... and the others, which a trained refiner depends on
REFINE_TRAINING = [
    "refine.spacing_mm",
    "refine.window",
    "refine.fallback_spacing_mm",
    "refine.arch",
    "refine.kwargs",
    "refine.jitter_mm",
    "refine.jitter_scale",
    "refine.min_jitter_mm",
    "refine.max_jitter_mm",
    "refine.crops_per_landmark",
    "refine.train",
    "refine.stages",
]


def code(command: str) -> str:
    """The code fingerprint of a ``cephalo`` subcommand (written by stage ``code_fingerprint``)."""
    return f"results/code/{command}.sha256"


def eval_outs(run: str) -> list:
    """The outputs of one ``cephalo evaluate`` run folder, ``results/eval/<run>``."""
    d = f"results/eval/{run}"
    return [
        f"{d}/per_landmark.csv",
        f"{d}/per_image.csv",
        f"{d}/predictions.parquet",
        f"{d}/diagnosis.md",
        f"{d}/metrics.json",
        f"{d}/plots/sdr_curve.csv",
    ]


def train_outs(folder: str, refiner: bool = False) -> list:
    """The outputs of one ``cephalo train`` (or ``train-refiner``) run folder."""
    extra = [f"{folder}/refine.json"] if refiner else []
    return [f"{folder}/best.pt", f"{folder}/last.pt", f"{folder}/train.json", *extra, f"{folder}/history.csv"]


@dataclass
class Stage:
    """One DVC stage (see the module doc)."""

    name: str
    cmd: list[str]
    deps: list[str] = field(default_factory=list)
    params: list[str] = field(default_factory=list)
    outs: list = field(default_factory=list)
    metrics: list = field(default_factory=list)
    loop: Any = None  # foreach value (str) or {"matrix": {...}}
    doc: str = ""  # the comment at the top of the stage's entry
    heading: str = ""  # a comment above the stage's name (a group of stages starts)
    blank_after: bool = True  # an empty line after the stage in dvc.yaml

    def body(self) -> dict:
        """The stage's definition as DVC reads it (what goes under ``do:`` for a foreach stage)."""
        out: dict[str, Any] = {"cmd": " ".join(self.cmd)}
        for key in ("deps", "params", "outs", "metrics"):
            if getattr(self, key):
                out[key] = list(getattr(self, key))
        return out

    def to_dvc(self) -> dict:
        """The ``stages.<name>`` entry of dvc.yaml."""
        if self.loop is None:
            return self.body()
        if isinstance(self.loop, dict):  # matrix: the body sits beside it
            return {**self.loop, **self.body()}
        return {"foreach": self.loop, "do": self.body()}


SRC = "results/variants/${key}/${pipeline.source_variant}"  # a source data set's variant (foreach over a dict)
TGT_INDEX = "results/index/${pipeline.target}.parquet"
SOURCE_MODEL = "results/models/source/best.pt"
MATRIX = {"matrix": {"stage": ["adabn", "finetune"], "variant": "${pipeline.variants}"}}
MODEL_DIR = "results/models/${item.stage}/${item.variant}"

STAGES: list[Stage] = [
    Stage(
        "code_fingerprint",
        ["cephalo code-fingerprint --out results/code"],
        deps=["src/cephalo"],
        outs=["results/code"],
        blank_after=False,
    ),
    Stage(
        "make_demo",
        ["cephalo make-demo --out ${item}", PARAMS],
        loop="${pipeline.make_demo}",
        deps=[code("make-demo")],
        params=["demo"],
        outs=["${item}/isbi2015", "${item}/aariz"],
    ),
    Stage(
        "download",
        ["cephalo download ${item} --out resources/raw/${item}", PARAMS],
        loop="${pipeline.download}",
        deps=[code("download")],
        params=["data.datasets.${item}"],
        outs=["resources/raw/${item}"],
    ),
    Stage(
        "index",
        [
            "cephalo index --dataset ${key} --root ${item} --out results/index/${key}.parquet",
            "--report results/quality/${key}",
            PARAMS,
        ],
        loop="${pipeline.raw}",
        deps=[code("index"), "${item}"],
        params=["data.datasets.${key}"],
        outs=[
            "results/index/${key}.parquet",
            "results/quality/${key}/quality.md",
            "results/quality/${key}/quality.json",
        ],
    ),
    Stage(
        "preprocess_source",
        [
            "cephalo preprocess --index results/index/${key}.parquet",
            "--variant ${pipeline.source_variant} --out " + SRC,
            PARAMS,
        ],
        loop="${pipeline.source}",
        deps=[code("preprocess"), "results/index/${key}.parquet"],
        params=["variants.${pipeline.source_variant}"],
        outs=[SRC],
    ),
    Stage(
        "preprocess_target",
        [
            "cephalo preprocess --index " + TGT_INDEX,
            "--variant ${item}",
            "--out results/variants/${pipeline.target}/${item}",
            PARAMS,
        ],
        loop="${pipeline.variants}",
        deps=[code("preprocess"), TGT_INDEX],
        params=["variants.${item}"],
        outs=["results/variants/${pipeline.target}/${item}"],
    ),
    Stage(
        "train_source",
        [
            "cephalo train --data results/variants/${item}/${pipeline.source_variant}",
            "--out results/models/source --stage source",
            PARAMS,
        ],
        loop="${pipeline.train_source}",
        deps=[code("train"), "results/variants/${item}/${pipeline.source_variant}"],
        params=["train", "model", "codec"],
        outs=train_outs("results/models/source"),
    ),
    Stage(
        "fetch_source",
        ["cephalo fetch-model --out " + SOURCE_MODEL, PARAMS],
        loop="${pipeline.fetch_source}",
        deps=[code("fetch-model")],
        params=["model.source"],
        outs=[SOURCE_MODEL],
    ),
    Stage(
        "evaluate_source",
        [
            "cephalo evaluate --model " + SOURCE_MODEL,
            "--data " + SRC,
            "--split ${item}",
            "--out results/eval/source-${key} --name source-${key}",
            "--index results/index/${key}.parquet --stage source",
            PARAMS,
        ],
        doc="stage source: the source model on each source data set's test split (in-domain check)",
        loop="${pipeline.source}",
        deps=[code("evaluate"), SOURCE_MODEL, SRC, "results/index/${key}.parquet"],
        params=["evaluate"],
        outs=eval_outs("source-${key}"),
    ),
    Stage(
        "evaluate_zero_shot",
        [
            "cephalo evaluate --model " + SOURCE_MODEL,
            "--data results/variants/${pipeline.target}/${item}",
            "--split ${pipeline.zero_shot_split}",
            "--out results/eval/zero_shot-${item} --name zero_shot-${item}",
            "--index " + TGT_INDEX,
            "--stage zero_shot",
            PARAMS,
        ],
        doc="stage zero_shot: the source model on the target data set, per variant",
        loop="${pipeline.variants}",
        deps=[code("evaluate"), SOURCE_MODEL, "results/variants/${pipeline.target}/${item}", TGT_INDEX],
        params=["evaluate"],
        outs=eval_outs("zero_shot-${item}"),
    ),
    Stage(
        "evaluate_naive",
        [
            "cephalo evaluate --model " + SOURCE_MODEL,
            "--data results/variants/${pipeline.target}/${item}",
            "--split ${pipeline.zero_shot_split}",
            "--out results/eval/naive-${item} --name naive-${item}",
            "--index " + TGT_INDEX,
            "--stage naive --normalisation unit",
            "--decoder soft_argmax",
            PARAMS,
        ],
        doc="stage naive: the source model on the target, per variant, fed and decoded the way a clinic first\n"
        "runs a public model (grey values 0-1 without the ImageNet mean/std, soft-argmax over the raw outputs)",
        loop="${pipeline.variants}",
        deps=[code("evaluate"), SOURCE_MODEL, "results/variants/${pipeline.target}/${item}", TGT_INDEX],
        params=["evaluate"],
        outs=eval_outs("naive-${item}"),
    ),
    Stage(
        "adapt",
        [
            "cephalo adapt --model " + SOURCE_MODEL,
            "--data results/variants/${pipeline.target}/${item}",
            "--out results/models/adabn/${item}/best.pt",
            "--no-progress",
            PARAMS,
        ],
        loop="${pipeline.variants}",
        deps=[code("adapt"), SOURCE_MODEL, "results/variants/${pipeline.target}/${item}"],
        params=["adapt"],
        outs=["results/models/adabn/${item}/best.pt"],
    ),
    Stage(
        "finetune",
        [
            "cephalo train --data results/variants/${pipeline.target}/${item}",
            "--init " + SOURCE_MODEL,
            "--out results/models/finetune/${item} --stage finetune",
            PARAMS,
        ],
        loop="${pipeline.variants}",
        deps=[code("train"), "results/variants/${pipeline.target}/${item}", SOURCE_MODEL],
        params=["train", "model", "codec"],
        outs=train_outs("results/models/finetune/${item}"),
    ),
    Stage(
        "calibrate",
        [
            "cephalo calibrate --model " + MODEL_DIR + "/best.pt",
            "--data results/variants/${pipeline.target}/${item.variant}",
            "--out " + MODEL_DIR + "/calibrated.pt",
            "--no-progress",
            PARAMS,
        ],
        doc="conformal prediction radii (params calibrate:) from the target's validation split, for the\n"
        "model each stage made for the variant; evaluation uses calibrated.pt (same weights + radii)",
        loop=MATRIX,
        deps=[code("calibrate"), MODEL_DIR + "/best.pt", "results/variants/${pipeline.target}/${item.variant}"],
        params=["calibrate"],
        outs=[MODEL_DIR + "/calibrated.pt"],
    ),
    Stage(
        "evaluate",
        [
            "cephalo evaluate --model " + MODEL_DIR + "/calibrated.pt",
            "--data results/variants/${pipeline.target}/${item.variant}",
            "--split ${pipeline.eval_split}",
            "--out results/eval/${item.stage}-${item.variant} --name ${item.stage}-${item.variant}",
            "--index " + TGT_INDEX,
            "--stage ${item.stage}",
            PARAMS,
        ],
        doc="stages adabn and finetune, per variant: the model each stage made for the variant, with its\n"
        "radii (results/models/${stage}/${variant}/calibrated.pt) on the target's evaluation split",
        loop=MATRIX,
        deps=[
            code("evaluate"),
            MODEL_DIR + "/calibrated.pt",
            "results/variants/${pipeline.target}/${item.variant}",
            TGT_INDEX,
        ],
        params=["evaluate"],
        outs=eval_outs("${item.stage}-${item.variant}"),
    ),
    Stage(
        "train_refiner_source",
        [
            "cephalo train-refiner --index results/index/${key}.parquet",
            "--global " + SOURCE_MODEL,
            "--out results/models/refine_source --stage source --no-progress",
            PARAMS,
        ],
        heading="coarse-to-fine refinement (params refine:; pipeline.refine_source / refine_variants)",
        loop="${pipeline.refine_source}",
        deps=[code("train-refiner"), "results/index/${key}.parquet", SOURCE_MODEL],
        params=["train", *REFINE_TRAINING, "codec", "model.transfer"],
        outs=train_outs("results/models/refine_source", refiner=True),
    ),
    Stage(
        "bundle_refine_source",
        [
            "cephalo bundle --global " + SOURCE_MODEL,
            "--refiner results/models/refine_source/best.pt",
            "--out results/models/refine_source/bundle.json",
            PARAMS,
        ],
        doc="the refiner, its global model and the inference settings (refine.iterations, batch_size, tta):\n"
        "a change of those re-writes the bundle and re-evaluates, and trains nothing",
        loop="${pipeline.refine_source}",
        deps=[code("bundle"), SOURCE_MODEL, "results/models/refine_source/best.pt"],
        params=REFINE_INFERENCE,
        outs=["results/models/refine_source/bundle.json"],
    ),
    Stage(
        "evaluate_refine_source",
        [
            "cephalo evaluate --model results/models/refine_source/bundle.json",
            "--data " + SRC,
            "--split ${item}",
            "--out results/eval/refine_source-${key} --name refine_source-${key}",
            "--index results/index/${key}.parquet --stage refine_source",
            PARAMS,
        ],
        loop="${pipeline.refine_source}",
        deps=[code("evaluate"), "results/models/refine_source/bundle.json", SRC, "results/index/${key}.parquet"],
        params=["evaluate"],
        outs=eval_outs("refine_source-${key}"),
    ),
    Stage(
        "finetune_refiner",
        [
            "cephalo train-refiner --index " + TGT_INDEX,
            "--global results/models/finetune/${item}/best.pt",
            "--init results/models/refine_source/best.pt",
            "--out results/models/refine/${item} --stage finetune --no-progress",
            PARAMS,
        ],
        loop="${pipeline.refine_variants}",
        deps=[
            code("train-refiner"),
            TGT_INDEX,
            "results/models/finetune/${item}/best.pt",
            "results/models/refine_source/best.pt",
        ],
        params=["train", *REFINE_TRAINING, "codec", "model.transfer"],
        outs=train_outs("results/models/refine/${item}", refiner=True),
    ),
    Stage(
        "bundle_refine",
        [
            "cephalo bundle --global results/models/finetune/${item}/best.pt",
            "--refiner results/models/refine/${item}/best.pt",
            "--out results/models/refine/${item}/bundle.json",
            PARAMS,
        ],
        loop="${pipeline.refine_variants}",
        deps=[code("bundle"), "results/models/finetune/${item}/best.pt", "results/models/refine/${item}/best.pt"],
        params=REFINE_INFERENCE,
        outs=["results/models/refine/${item}/bundle.json"],
    ),
    Stage(
        "calibrate_refine",
        [
            "cephalo calibrate --model results/models/refine/${item}/bundle.json",
            "--data results/variants/${pipeline.target}/${item}",
            "--out results/models/refine/${item}/calibrated.json --no-progress",
            PARAMS,
        ],
        doc="the refined predictions' own radii: a bundle JSON with a calibration entry (bundle.json records\n"
        "the SHA-256 of both checkpoints, so it stands for them as a dependency)",
        loop="${pipeline.refine_variants}",
        deps=[
            code("calibrate"),
            "results/models/refine/${item}/bundle.json",
            "results/variants/${pipeline.target}/${item}",
        ],
        params=["calibrate"],
        outs=["results/models/refine/${item}/calibrated.json"],
    ),
    Stage(
        "evaluate_refine",
        [
            "cephalo evaluate --model results/models/refine/${item}/calibrated.json",
            "--data results/variants/${pipeline.target}/${item} --split ${pipeline.eval_split}",
            "--out results/eval/refine-${item} --name refine-${item}",
            "--index " + TGT_INDEX,
            "--stage refine",
            PARAMS,
        ],
        loop="${pipeline.refine_variants}",
        deps=[
            code("evaluate"),
            "results/models/refine/${item}/calibrated.json",
            "results/variants/${pipeline.target}/${item}",
            TGT_INDEX,
        ],
        params=["evaluate"],
        outs=eval_outs("refine-${item}"),
    ),
    Stage(
        "compare",
        ["cephalo compare results/eval/* --out results/comparison --summary-dir results/summary", PARAMS],
        doc="every run folder under results/eval (the stages above write them)",
        deps=[code("compare"), "results/eval"],
        outs=[
            "results/comparison.csv",
            "results/comparison.md",
            "results/comparison.html",
            "results/comparison_pairs.csv",
            *PLOTS,
        ],
        metrics=["results/summary"],
    ),
]


def dvc_document() -> dict:
    """dvc.yaml as DVC reads it (``stages`` and ``plots``)."""
    return {"stages": {s.name: s.to_dvc() for s in STAGES}, "plots": list(PLOTS)}
