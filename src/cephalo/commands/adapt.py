"""``cephalo adapt``: AdaBN - re-estimate BatchNorm statistics on unlabelled target images.

Li et al., "Revisiting Batch Normalization For Practical Domain Adaptation" (2016). Only
BatchNorm running means/variances change; every weight stays as trained. Labels of the
target variant are never read.
"""

from __future__ import annotations

from pathlib import Path

import click

from ._common import params_option, read_params


@click.command(name="adapt")
@click.option(
    "--model",
    "model_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="checkpoint to adapt (cephalo checkpoint or the public HRNet best_model.pth).",
)
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="target-domain variant directory (its labels are not used).",
)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="adapted checkpoint to write."
)
@click.option("--split", default=None, help="only images of this split (adapt.split; default all images).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="show progress bars.")
@params_option
def command(model_path: Path, data_dir: Path, out: Path, split: str | None, progress: bool, params_path: Path) -> None:
    """Unsupervised AdaBN adaptation of a model to unlabelled target images.

    Params ``adapt``: ``split`` (null = all images), ``batch_size`` (images per forward pass),
    ``device`` (auto | cpu | cuda), ``max_images`` (null = all; else a seeded random subset),
    ``seed``. Writes a cephalo checkpoint whose provenance records the adaptation.
    """
    # deferred: `cephalo adapt --help` and the CLI's start-up import no library (cephalo.commands)
    import dataclasses

    import numpy as np

    from ..errors import ConfigError, DataError
    from ..models import load_checkpoint, save_checkpoint
    from ..preprocess import file_sha256, load_variant
    from ..train.adabn import adapt_batchnorm
    from ..train.distributed import resolve_device

    ap = read_params(params_path).adapt
    split = split if split is not None else ap.split
    batch_size = ap.batch_size
    device = resolve_device(ap.device)

    variant = load_variant(data_dir)
    model, meta, _extra = load_checkpoint(model_path, "cpu")
    if tuple(meta.input_size) != tuple(variant.input_size):
        raise DataError(
            f"variant images are {variant.input_size[0]}x{variant.input_size[1]} but the model "
            f"takes {meta.input_size[0]}x{meta.input_size[1]}; preprocess a matching variant",
            data_dir,
        )
    rows = np.arange(len(variant)) if split is None else np.flatnonzero(np.asarray(variant.splits) == split)
    if len(rows) == 0:
        raise DataError(
            f"no images in split {split!r} (splits present: {sorted(set(map(str, variant.splits)))})", data_dir
        )
    max_images = ap.max_images
    if max_images is not None and len(rows) > max_images:
        rng = np.random.default_rng(ap.seed)
        rows = np.sort(rng.choice(rows, size=max_images, replace=False))
    try:
        report = adapt_batchnorm(
            model,
            variant.images,
            rows,
            meta.normalisation or variant.normalisation,
            device=device,
            batch_size=batch_size,
            progress=progress,
        )
    except ValueError as e:
        raise ConfigError(str(e), model_path) from None
    report.update(
        {
            "model": str(model_path),
            "model_sha256": file_sha256(model_path),
            "data_dir": str(data_dir),
            "split": split,
            "image_ids": [variant.image_ids[int(r)] for r in rows],
            "data_index_hash": (variant.meta.get("source_index") or {}).get("sha256"),
        }
    )
    from ..provenance import derive

    prov = derive(meta.provenance, report["model_sha256"], "adabn")
    prov["adabn"] = report
    new_meta = dataclasses.replace(meta, provenance=prov)
    save_checkpoint(out, model.cpu(), new_meta)
    click.echo(f"{out}: AdaBN on {report['n_images']} images, {report['n_bn_layers']} BatchNorm layers re-estimated")
