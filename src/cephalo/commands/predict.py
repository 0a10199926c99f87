"""``cephalo predict --model CKPT INPUT... --out DIR``: landmarks, measurements and review flags on raw images.

Works from any folder with only a checkpoint: a cephalo checkpoint carries its preprocessing, codec
and (after ``cephalo calibrate``) its conformal radii and shape model; a params file is read only when
``--params`` is given or ``params.yaml`` exists in the current folder, and only overrides.

Params (``predict:``, all optional; command-line options override): ``batch_size`` (4), ``device``
(auto), ``spacing_mm`` (null: fallback mm/px for images without their own spacing), ``variant``
(null: the checkpoint's ``meta.variant``; else a ``variants:`` name), ``overlays`` (true),
``skip_bad`` (false), ``report`` (true: ``report.html``), ``review`` (thresholds of the review flags,
:class:`cephalo.config.schema.ReviewConfig`: ``radius_mm`` 2.0, ``coverage`` 0.9, ``min_side_px`` 256,
``max_aspect`` 2.0, ``min_structure`` 0.5, ``max_flagged_landmarks`` 3).

Exit status: 0 when every input was predicted (flags are findings, not failures); 1 (one line on
stderr) on a bad checkpoint, params or input — with ``--skip-bad`` the readable images are still
predicted and written, the unreadable ones are listed in ``predictions.json`` (``skipped``) and on
stderr, and the exit status is 1.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from ..errors import DataError
from ._common import params_option, read_params


@click.command(name="predict")
@click.option(
    "--model",
    "model_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="checkpoint (cephalo .pt or the public HF best_model.pth), or a bundle.json (global model + "
    "refiner, cephalo train-refiner)",
)
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="output folder: predictions.json/.csv, images.csv, measurements.csv, overlays/, report.html",
)
@click.option(
    "--spacing",
    "spacing_mm",
    type=str,
    default=None,
    metavar="MM[,MM]",
    help="pixel spacing in mm/px for images without their own: one value, or X,Y per axis; "
    "0.02-1.0 mm/px as cephalo index accepts (a DICOM file's PixelSpacing or "
    "ImagerPixelSpacing wins) [default: params predict.spacing_mm]",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=None,
    help="images per forward pass [default: params predict.batch_size]",
)
@click.option(
    "--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None, help="[default: params predict.device]"
)
@click.option(
    "--variant",
    default=None,
    help="preprocessing variant name (params variants:) instead of the "
    "checkpoint's own [default: params predict.variant]",
)
@click.option(
    "--skip-bad/--no-skip-bad",
    default=None,
    help="report and skip unreadable images (exit 1 at the "
    "end) instead of stopping at the first [default: params predict.skip_bad]",
)
@click.option(
    "--overlays/--no-overlays", default=None, help="one overlay PNG per image [default: params predict.overlays]"
)
@click.option("--report/--no-report", default=None, help="self-contained report.html [default: params predict.report]")
@click.option(
    "--labelme",
    "labelme_dir",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="also write one LabelMe JSON per image into this folder (correct them in LabelMe, then "
    "index the folder with the labelme adapter)",
)
@params_option
def command(
    model_path: Path,
    inputs: tuple[Path, ...],
    out_dir: Path,
    spacing_mm: str | None,
    batch_size: int | None,
    device: str | None,
    variant: str | None,
    skip_bad: bool | None,
    overlays: bool | None,
    report: bool | None,
    labelme_dir: Path | None,
    params_path: Path,
) -> None:
    """Landmarks, measurements and review flags for an image or folder (PNG/JPEG/BMP/TIFF/DICOM)."""
    params = read_params(params_path, optional=True)
    pp = params.predict
    from ..errors import ConfigError
    from ..imageio import parse_spacing

    spacing_mm = (
        parse_spacing(pp.spacing_mm, "params predict.spacing_mm", error=ConfigError)
        if spacing_mm is None
        else parse_spacing(spacing_mm, "--spacing", error=ConfigError)
    )
    batch_size = pp.batch_size if batch_size is None else batch_size
    device = pp.device if device is None else device
    variant = pp.variant if variant is None else variant
    skip_bad = pp.skip_bad if skip_bad is None else skip_bad
    overlays = pp.overlays if overlays is None else overlays
    report = pp.report if report is None else report

    import os

    os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")  # unreadable files are reported by cephalo, in one line
    from ..imageio import find_images

    if not model_path.is_file():
        raise DataError("model checkpoint not found", model_path)
    files = find_images(inputs)
    skipped: list[dict] = []

    def on_error(path: Path, err: Exception) -> None:
        skipped.append({"file": str(path), "error": str(err)})
        click.echo(f"skipped: {err}", err=True)

    # fail fast: every input is opened and checked before the model is loaded (seconds, GBs)
    from ..imageio import probe_image

    readable = []
    for f in files:
        try:
            probe_image(f)
            readable.append(f)
        except DataError as e:
            if not skip_bad:
                raise
            on_error(f, e)
    if not readable:
        raise DataError(f"none of the {len(files)} input images could be read; nothing written", inputs[0])
    files_all, files = files, readable
    from ..inference import resolve_device  # torch and the model only now
    from ..models import load_checkpoint
    from ..predict import BatchSettings, predict_images, write_predictions

    dev = resolve_device(device)
    refine, bundle = None, None
    from ..refine import is_bundle

    global_path = model_path
    if is_bundle(model_path):  # global model + refiner (cephalo train-refiner)
        from ..refine import image_refiner, read_bundle

        bundle = read_bundle(model_path)
        global_path = bundle.global_path
    model, meta, extra = load_checkpoint(global_path, "cpu")
    model.eval()
    if bundle is not None:
        refine = image_refiner(
            bundle.load_refiner(dev),
            list(meta.landmark_names),
            tta=bundle.tta,
            iterations=bundle.iterations,
            batch_size=bundle.batch_size,
        )
    if bundle is not None:  # a bundle carries the radii of its refined predictions
        cal = bundle.calibration
    else:
        cal = extra.get("calibration") if isinstance(extra.get("calibration"), dict) else None
    variants = {name: spec.model_dump() for name, spec in params.variants.items()}

    preds = predict_images(
        model,
        meta,
        files,
        variant=variant,
        variants=variants,
        spacing_mm=spacing_mm,
        batch=BatchSettings(batch_size=batch_size, device=dev),
        on_error=on_error if skip_bad else None,
        refine=refine,
    )
    if not preds:
        raise DataError(f"none of the {len(files_all)} input images could be read; nothing written", inputs[0])
    info = {
        "command": "cephalo " + shlex.join(sys.argv[1:]) if "predict" in sys.argv else "cephalo predict",
        "checkpoint": str(model_path),
        "model": {
            "arch": meta.arch,
            "landmark_names": list(meta.landmark_names),
            "input_size": list(meta.input_size),
            "codec": dict(meta.codec or {}),
        },
        "device": str(dev),
        "fallback_spacing_mm": None if spacing_mm is None else list(spacing_mm),
    }
    if bundle is not None:
        info["refine"] = {
            "global": str(bundle.global_path),
            "refiner": str(bundle.refiner_path),
            "iterations": bundle.iterations,
            "tta": bundle.tta.to_dict(),
        }
    paths = write_predictions(
        preds,
        out_dir,
        overlays=overlays,
        info=info,
        skipped=skipped,
        calibration=cal,
        review_cfg=pp.review,
        report=report,
        labelme_dir=labelme_dir,
    )
    n_mm = sum(p.spacing is not None for p in preds)
    sources = sorted(
        {"--spacing" if p.spacing_source == "given" else p.spacing_source for p in preds if p.spacing_source}
    )
    click.echo(
        f"predicted {len(preds)} image(s) x {len(meta.landmark_names)} landmarks "
        f"({n_mm} with mm"
        + (f", spacing from {', '.join(sources)}" if sources else "")
        + "); wrote "
        + ", ".join(
            str(paths[k])
            for k in ("json", "csv", "images_csv", "measurements_csv", "report", "overlays", "labelme")
            if k in paths
        )
    )
    fl = paths["flags"]
    detail = ", ".join(f"{k} {v}" for k, v in fl["by_flag"].items())
    click.echo(
        f"review flags: {fl['images']} of {len(preds)} image(s) and {fl['landmarks']} landmark(s) flagged"
        + (f" ({detail})" if detail else "")
    )
    if n_mm < len(preds):
        click.echo(
            f"warning: {len(preds) - n_mm} image(s) have no pixel spacing (no DICOM PixelSpacing/"
            "ImagerPixelSpacing, no --spacing): positions in pixels only, no mm measurements, angles "
            "assume square pixels",
            err=True,
        )
    if cal is None:
        click.echo(
            f"note: {model_path.name} carries no calibration (cephalo calibrate): no prediction radii, no "
            "shape-model flag",
            err=True,
        )
    if skipped:
        raise DataError(
            f"{len(skipped)} of {len(files_all)} input image(s) could not be read and were skipped "
            f"(listed in predictions.json): {', '.join(s['file'] for s in skipped[:3])}"
            + (" ..." if len(skipped) > 3 else "")
        )
