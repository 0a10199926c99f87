"""``cephalo train-refiner``: train the coarse-to-fine refiner on windows cut from the original images.

Reads params ``refine`` (windows, jitter, network, ``refine.train`` / ``refine.stages.<stage>``
deep-merged on top of ``train``), ``codec``, ``model.transfer`` and ``tracking``::

    cephalo train-refiner --index results/index/isbi2015.parquet --global results/models/source/best.pt \\
        --out results/models/refiner/source --stage source
    cephalo train-refiner --index results/index/hamedan.parquet --global results/models/finetuned/V/best.pt \\
        --init results/models/refiner/source/best.pt --out results/models/refiner/finetuned/V --stage finetune

``cephalo bundle --global G --refiner OUT/best.pt --out OUT/bundle.json`` then pairs the refiner with a
global model and the inference settings (``refine.iterations``, ``refine.tta``); ``cephalo evaluate``
and ``cephalo predict`` take the bundle as ``--model``. Training never reads the inference settings.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from ._common import params_option, read_params


@click.command(name="train-refiner")
@click.option(
    "--index",
    "index_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Parquet landmark index (cephalo index): the original images and ground truth.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="run directory: best.pt, last.pt, history.csv, train.json, refine.json.",
)
@click.option(
    "--global",
    "global_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="the global model the refiner follows: jitter 'auto' from its validation MRE.",
)
@click.option(
    "--init",
    "init_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="initial refiner weights (e.g. the source refiner); the head moves by landmark name.",
)
@click.option("--stage", default=None, metavar="NAME", help="apply refine.stages.NAME (source | finetune).")
@click.option("--restart", is_flag=True, help="ignore an existing OUT/last.pt and start over.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="show progress bars.")
@params_option
def command(
    index_path: Path,
    out: Path,
    global_path: Path | None,
    init_path: Path | None,
    stage: str | None,
    restart: bool,
    progress: bool,
    params_path: Path,
) -> None:
    """Train the refiner: windows at refine.spacing_mm around jittered ground truth, one heatmap channel
    per landmark."""
    # deferred: `cephalo train-refiner --help` and the CLI's start-up import no library (cephalo.commands)
    import logging

    from ..errors import ConfigError, DataError
    from ..refine import train_refiner
    from ..train import TrainRecording

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    params = read_params(params_path)
    try:
        cfg = params.refine.train_config(params.train, stage)
    except ConfigError as e:
        raise ConfigError(str(e), params_path) from None
    rcfg = params.refine
    if not index_path.is_file():
        raise DataError("index file not found", index_path)
    if global_path is not None and not global_path.is_file():
        raise ConfigError("global checkpoint not found", global_path)
    init_over: dict = {}
    if init_path is not None:
        if not init_path.is_file():
            raise ConfigError("initial checkpoint not found", init_path)
        init_over = {"source": "checkpoint", "path": str(init_path)}
    for key in ("min_backbone_fraction", "new_channel_init"):  # model.transfer unless the train sections set them
        if key not in cfg.init.model_fields_set:
            init_over[key] = getattr(params.model.transfer, key)
    cfg = cfg.with_overrides(resume="never" if restart else None, init=init_over or None)
    tracking = None
    if cfg.tracking:
        from ..tracking import config_from_params

        tracking = config_from_params(params.tracking.model_dump())
    result = train_refiner(
        index_path,
        out,
        cfg,
        rcfg,
        global_ckpt=global_path,
        codec_params=params.codec.codec_kwargs(),
        recording=TrainRecording(
            params={**params.model_dump(include={"train", "codec"}), "refine": rcfg.training_settings()},
            tracking=tracking,
            command="cephalo " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        ),
        progress=progress,
    )
    best = "n/a" if result.best_score is None else f"{result.best_score:.3f}"
    click.echo(
        f"{out}: refiner {result.epochs_run} epochs; best {result.score_name} {best} at epoch "
        f"{result.best_epoch} -> {out / 'best.pt'}"
    )
