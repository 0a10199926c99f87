"""One module per ``cephalo`` subcommand; each exposes ``command`` (a click.Command).

A command parses its arguments, reads its own params section, calls one library
function and writes its outputs. It holds no logic of its own. :data:`SUBCOMMANDS` is the
table of them: the CLI (:mod:`cephalo.cli`) dispatches by it, the code fingerprints
(:mod:`cephalo.fingerprint`) hash each one's import closure.

A command module imports the library inside its function, not at its top (each such place says
so): the CLI imports a command module to show its ``--help``, and ``cephalo predict --help`` costs
~0.1 s this way against ~5 s with torch (``python -X importtime``; ``benchmarks/bench_startup.py``).
"""

from __future__ import annotations

#: subcommand name -> (module under cephalo.commands, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "download": ("download", "Fetch a data set release (pooch: pinned URL + checksum) and unpack it."),
    "index": ("index", "Parse a data set into the validated Parquet landmark index + quality report."),
    "preprocess": ("preprocess", "Build one preprocessing variant: image cache + variant index."),
    "fetch-model": ("fetch_model", "Get the public ISBI HRNet checkpoint (local file or Hugging Face)."),
    "train": ("train", "Fine-tune (or train) a heatmap model on a preprocessing variant."),
    "train-refiner": ("train_refiner", "Train the coarse-to-fine refiner on windows cut from the original images."),
    "bundle": ("bundle", "Pair a global model and a refiner with the inference settings (iterations, tta)."),
    "calibrate": ("calibrate", "Per-landmark conformal prediction radii from a held-out split, into the checkpoint."),
    "adapt": ("adapt", "Unsupervised AdaBN adaptation of a model to unlabelled target images."),
    "evaluate": ("evaluate", "Predict on a variant and report MRE/SDR in mm, with diagnosis and plots."),
    "predict": ("predict", "Landmarks for an image or folder (PNG/JPEG/BMP/TIFF/DICOM) -> JSON/CSV/overlays."),
    "diagnose": ("diagnose", "What is wrong with predictions made by any pipeline: MRE in mm, mistakes undone."),
    "compare": ("compare", "Table of evaluated runs (zero-shot vs fine-tuned, per variant)."),
    "export-onnx": ("export_onnx", "Export a cephalo checkpoint to ONNX and check it with onnxruntime."),
    "make-demo": ("make_demo", "Generate the embedded synthetic demo data sets (ISBI + Aariz layouts)."),
    "code-fingerprint": ("code_fingerprint", "Per-subcommand code fingerprints (workflow rerun triggers)."),
    "clean": ("clean", "Remove temporaries left by killed writers (stale owner) under a project."),
    "check-params": ("check_params", "Validate params files against the typed schema (what snakemake -n checks)."),
}
