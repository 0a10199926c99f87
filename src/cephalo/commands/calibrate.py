"""``cephalo calibrate --model CKPT --data VARIANT --split valid --out CKPT``: conformal prediction radii.

Predicts the ``--split`` images of a variant (the fine-tuning validation split of the target clinic:
never training images, never the evaluated test images), computes split-conformal quantiles of
the radial error (:mod:`cephalo.uncertainty`: pooled over landmarks, each weighted by its difficulty
on the training split) and writes a cephalo checkpoint that
carries them (top-level ``calibration``). ``--out`` may equal ``--model`` (replaced atomically).
A bundle (``--model bundle.json``: global model + refiner) is calibrated on its refined predictions
and written as a bundle JSON with a ``calibration`` entry (``--out`` ends in ``.json``).

Params ``calibrate:`` (all optional): ``coverages`` ([0.9, 0.95]), ``scale`` (``inverse_confidence``
| ``constant``), ``conf_floor`` (0.01), ``pooling`` (``pooled`` | ``landmark`` | ``auto``: per
landmark where every landmark has enough calibration images), ``difficulty_split``
(train: the split whose per-landmark median errors weight the landmarks; null = equal weights),
``batch_size`` (4), ``device`` (auto), ``split`` (valid), ``shape_split`` (train: the split whose
ground-truth landmarks fit the shape model of the review flags, :class:`cephalo.flags.ShapeModel`;
null = none), ``shape_quantile`` (0.99), ``shape_margin`` (1.5).
"""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import DataError
from ._common import params_option, read_params


@click.command(name="calibrate")
@click.option(
    "--model",
    "model_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="checkpoint (cephalo .pt or the public HF best_model.pth)",
)
@click.option(
    "--data",
    "data_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="preprocessing variant directory holding the calibration split",
)
@click.option("--split", default=None, help="calibration split [default: params calibrate.split, 'valid']")
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="checkpoint to write (may be --model itself)",
)
@click.option("--progress/--no-progress", default=True, show_default=True)
@params_option
def command(
    model_path: Path, data_dir: Path, split: str | None, out_path: Path, progress: bool, params_path: Path
) -> None:
    """Per-landmark conformal prediction radii from a held-out split, stored in the checkpoint."""
    cp = read_params(params_path, optional=True).calibrate
    split = split or cp.split
    from ..inference import resolve_device
    from ..models import load_checkpoint, save_checkpoint
    from ..preprocess import load_variant
    from ..uncertainty import calibrate_model, coverage_key

    if not model_path.is_file():
        raise DataError("model checkpoint not found", model_path)
    from ..refine import is_bundle

    bundle, refine = None, None
    if is_bundle(model_path):  # global model + refiner: the radii describe the refined predictions
        from ..refine import image_refiner, read_bundle, variant_refiner

        if not is_bundle(out_path):
            raise DataError("a bundle is calibrated into a bundle: --out must be a .json file", out_path)
        bundle = read_bundle(model_path)
    variant = load_variant(data_dir)
    model, meta, extra = load_checkpoint(bundle.global_path if bundle is not None else model_path, "cpu")
    device = resolve_device(cp.device, key="calibrate.device")
    if bundle is not None:
        refine = variant_refiner(
            image_refiner(
                bundle.load_refiner(device),
                list(meta.landmark_names),
                tta=bundle.tta,
                iterations=bundle.iterations,
                batch_size=bundle.batch_size,
            ),
            variant,
        )
    cal = calibrate_model(
        model.eval(),
        meta,
        variant,
        split,
        settings=cp,
        device=device,
        progress=progress,
        refine=refine,
    )
    cal["checkpoint"] = str(model_path)
    if bundle is not None:
        from ..refine import write_bundle

        write_bundle(out_path, bundle.global_path, bundle.refiner_path, settings=bundle.settings, calibration=cal)
    else:
        from ..models.checkpoint import read_checkpoint

        kind = read_checkpoint(model_path).kind  # public checkpoints' extras (their config) are not carried over
        keep = {k: v for k, v in extra.items() if k != "calibration"} if kind == "cephalo" else {}
        import dataclasses

        from ..io import file_sha256
        from ..provenance import derive

        # the calibrated weights are the source's: record its hash so that an evaluation of the
        # calibrated checkpoint links to the training run that made them (MLflow training_run_id)
        meta = dataclasses.replace(
            meta, provenance=derive(getattr(meta, "provenance", None), file_sha256(model_path), "calibrate")
        )
        save_checkpoint(out_path, model.cpu(), meta, extra={**keep, "calibration": cal})
    level = coverage_key(cp.coverages[0])
    q = [v for v in (cal["q_mm"].get(level) or []) if v is not None]
    med = sorted(q)[len(q) // 2] if q else float("nan")
    unit = "mm" if cp.scale == "constant" else "mm x decoder confidence"
    loo = cal["loo_coverage"].get(level)
    weighted = (
        f", landmarks weighted by their '{cal['difficulty_split']}' errors ({cal['difficulty_n_images']} images)"
        if cal.get("difficulty_split")
        else ""
    )
    used = cal.get("pooling", cp.pooling)
    per = [v for v in (cal.get("loo_coverage_per_landmark") or {}).get(level) or [] if v is not None]
    click.echo(
        f"{out_path}: conformal radii ({cp.scale}, {used}"
        + (
            f" chosen by auto: Mondrian needs >= {cal.get('mondrian_min_images')} images per landmark"
            if cp.pooling == "auto"
            else ""
        )
        + f"{weighted}) from {cal['n_images']} "
        f"'{split}' images, coverages {cp.coverages}; median landmark quantile at {level}: {med:.3g} {unit}; "
        f"leave-one-image-out coverage at {level}: "
        + ("-" if loo is None else f"{100 * loo:.1f} %")
        + (f" (per landmark {100 * min(per):.0f}-{100 * max(per):.0f} %)" if per else "")
        + f"; guarantee: {'per landmark' if used == 'landmark' else 'marginal over landmarks'}"
    )
    for c in cp.coverages:  # an infinite quantile is stored as None (uncertainty.calibrate)
        unbounded = sum(v is None for v in cal["q_px"][coverage_key(c)])
        if unbounded:
            what = "scores over all landmarks" if used == "pooled" else "calibration images per landmark"
            click.echo(
                f"warning: coverage {c:g}: {unbounded} of {len(cal['landmarks'])} landmarks have infinite "
                f"radii (too few {what}: the rank ceil((n + 1) x {c:g}) exceeds n)",
                err=True,
            )
