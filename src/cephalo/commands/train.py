"""``cephalo train``: fine-tune (or train) a heatmap model on a preprocessing variant.

Reads params ``train`` (the run), ``model`` (architecture), ``codec`` (targets/decoding) and
``tracking`` (optional MLflow run); the familiar recipe options override them::

    cephalo train --data data/variants/aariz_letterbox768 --out runs/ft \\
        --model hrnet_w32 --resume hrnet_cephalometric.pth --image_size 768 768 \\
        --batch_size 4 --lr 1e-5 --epochs 50 --mixed_precision --loss adaptive_wing

Several GPUs: ``torchrun --nproc_per_node N -m cephalo train ...`` (one process per GPU,
NCCL; gloo on CPU). An interrupted run continues from ``OUT/last.pt`` when started again
with the same settings (``train.resume: auto``).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from ._common import params_option, read_params


@click.command(name="train")
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="variant directory from `cephalo preprocess` (images.npy, variant.parquet, variant.json).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="run directory: best.pt, last.pt, history.csv, train.json.",
)
@click.option(
    "--init",
    "init_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="initial weights: a cephalo checkpoint or the public HRNet best_model.pth "
    "(head transferred by landmark name). Overrides train.init.",
)
@click.option(
    "--resume",
    "resume_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="same as --init (the familiar recipe's name for the starting checkpoint). An interrupted "
    "run in --out continues by itself from OUT/last.pt.",
)
@click.option(
    "--model",
    "arch",
    default=None,
    help="model name (hrnet_w32, timm:<name>). Default: the init checkpoint's architecture when "
    "starting from one, else model.arch.",
)
@click.option(
    "--image_size",
    "--image-size",
    "image_size",
    type=int,
    nargs=2,
    default=None,
    metavar="W H",
    help="expected input size; must equal the variant's (preprocess a variant of that size).",
)
@click.option(
    "--batch_size",
    "--batch-size",
    "batch_size",
    type=int,
    default=None,
    help="images per device per step (train.batch_size).",
)
@click.option("--lr", type=float, default=None, help="learning rate of pretrained weights (train.lr).")
@click.option(
    "--head_lr",
    "--head-lr",
    "head_lr",
    type=float,
    default=None,
    help="learning rate of newly initialised weights (train.head_lr).",
)
@click.option("--epochs", type=int, default=None, help="train.epochs.")
@click.option(
    "--mixed_precision",
    "--mixed-precision",
    "mixed_precision",
    is_flag=False,
    flag_value="auto",
    default=None,
    type=click.Choice(["auto", "bf16", "fp16", "none"]),
    help="CUDA autocast: bare flag = bf16 where supported else fp16 (train.mixed_precision). "
    "CPU always trains in float32.",
)
@click.option("--loss", default=None, help="loss name: adaptive_wing | mse (train.loss).")
@click.option("--device", default=None, help="auto | cpu | cuda | cuda:N (train.device).")
@click.option("--workers", "num_workers", type=int, default=None, help="data-loader workers (train.num_workers).")
@click.option("--seed", type=int, default=None, help="train.seed.")
@click.option(
    "--stage",
    default=None,
    metavar="NAME",
    help="apply the overrides in train.stages.NAME on top of train (e.g. 'source' for training the "
    "source model from scratch, 'finetune' for adapting it to the target).",
)
@click.option("--restart", is_flag=True, help="ignore an existing OUT/last.pt and start over.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="show progress bars.")
@params_option
def command(
    data_dir: Path,
    out: Path,
    init_path: Path | None,
    resume_path: Path | None,
    arch: str | None,
    image_size: tuple[int, int] | None,
    batch_size: int | None,
    lr: float | None,
    head_lr: float | None,
    epochs: int | None,
    mixed_precision: str | None,
    loss: str | None,
    device: str | None,
    num_workers: int | None,
    seed: int | None,
    stage: str | None,
    restart: bool,
    progress: bool,
    params_path: Path,
) -> None:
    """Fine-tune (or train) a heatmap model on a preprocessing variant.

    Params ``train`` (see params.yaml), ``model`` (arch, pretrained, kwargs, transfer),
    ``codec`` (sigma, decoder, convention) and ``tracking``. Writes OUT/best.pt (lowest
    validation MRE in mm), OUT/last.pt (full training state), OUT/history.csv, OUT/train.json.
    """
    # deferred: `cephalo train --help` and the CLI's start-up import no library (cephalo.commands)
    import logging

    from ..errors import ConfigError
    from ..train import TrainRecording, train_on_variant

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    params = read_params(params_path)
    msec = params.model
    try:
        cfg = params.train.for_stage(stage)
    except ConfigError as e:
        raise ConfigError(str(e), params_path) from None
    if init_path is not None and resume_path is not None and init_path != resume_path:
        raise click.UsageError("--init and --resume name different checkpoints; give one")
    start = init_path or resume_path
    init_over: dict = {}
    if start is not None:
        if not start.is_file():
            raise ConfigError("initial checkpoint not found", start)
        init_over = {"source": "checkpoint", "path": str(start)}
    for key in ("min_backbone_fraction", "new_channel_init"):  # model.transfer unless train.init sets them
        if key not in cfg.init.model_fields_set:
            init_over[key] = getattr(msec.transfer, key)
    cfg = cfg.with_overrides(
        batch_size=batch_size,
        lr=lr,
        head_lr=head_lr,
        epochs=epochs,
        mixed_precision=mixed_precision,
        loss=loss,
        device=device,
        num_workers=num_workers,
        seed=seed,
        resume="never" if restart else None,
        init=init_over or None,
    )
    model_kwargs = dict(msec.kwargs)
    model_kwargs["pretrained"] = msec.pretrained
    if arch is None:
        if cfg.init.resolved(model_kwargs["pretrained"]).source == "checkpoint":
            arch = None  # the checkpoint's own architecture (e.g. the public HRNet-W32)
            model_kwargs = {}
        else:
            arch = msec.arch
            if not arch:
                raise ConfigError("params: model.arch is not set and --model was not given", params_path)
    if image_size is not None:
        _check_image_size(data_dir, tuple(image_size))
    tracking = None
    if cfg.tracking:
        from ..tracking import config_from_params

        tracking = config_from_params(params.tracking.model_dump(), root=Path.cwd())
    result = train_on_variant(
        data_dir,
        out,
        cfg,
        arch=arch,
        model_kwargs=model_kwargs,
        codec_params=params.codec.codec_kwargs(),
        recording=TrainRecording(
            params=params.model_dump(include={"train", "model", "codec"}),
            tracking=tracking,
            command="cephalo " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
            experiment=_experiment(tracking, params),
            stage=stage,
        ),
        progress=progress,
    )
    best = "n/a" if result.best_score is None else f"{result.best_score:.3f}"
    click.echo(
        f"{out}: {result.epochs_run} epochs"
        + (f" (resumed at {result.resumed_from_epoch})" if result.resumed_from_epoch else "")
        + (", stopped early" if result.stopped_early else "")
        + f"; best {result.score_name} {best} at epoch {result.best_epoch} -> {out / 'best.pt'}"
    )


def _experiment(tracking, params) -> str | None:
    """One MLflow experiment per profile/target (``cephalo.tracking.experiment_name``)."""
    if tracking is None:
        return None
    # deferred: `cephalo train --help` and the CLI's start-up import no library (cephalo.commands)
    from ..tracking import experiment_name

    return experiment_name(tracking, params)


def _check_image_size(data_dir: Path, wh: tuple[int, int]) -> None:
    # deferred: `cephalo train --help` and the CLI's start-up import no library (cephalo.commands)
    import json

    from ..errors import ConfigError, DataError

    vj = data_dir / "variant.json"
    try:
        have = tuple(int(v) for v in json.loads(vj.read_text())["input_size"])
    except (OSError, ValueError, KeyError) as e:
        raise DataError(f"cannot read the variant's input size ({type(e).__name__})", vj) from None
    if have != wh:
        raise ConfigError(
            f"--image_size {wh[0]} {wh[1]} but the variant's images are {have[0]}x{have[1]}; "
            "preprocess a variant of that size (params variants) and train on it",
            vj,
        )
