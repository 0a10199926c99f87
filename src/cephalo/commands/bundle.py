"""``cephalo bundle``: pair a global model with a refiner and the inference settings, one JSON file.

Reads params ``refine`` for the inference settings only (``iterations``, ``batch_size``, ``tta``:
:data:`cephalo.config.schema.RefineConfig.INFERENCE_KEYS`)::

    cephalo bundle --global results/models/finetune/V/best.pt --refiner results/models/refine/V/best.pt \\
        --out results/models/refine/V/bundle.json

``cephalo evaluate``, ``cephalo calibrate`` and ``cephalo predict`` take the bundle as ``--model``. The
pipeline writes bundles in a step of their own, so a change of the inference settings re-writes
the bundles and re-evaluates, and never trains a refiner again.
"""

from __future__ import annotations

from pathlib import Path

import click

from ._common import params_option, read_params


@click.command(name="bundle")
@click.option(
    "--global",
    "global_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="the global model's checkpoint (best.pt of cephalo train).",
)
@click.option(
    "--refiner",
    "refiner_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="the refiner's checkpoint (best.pt of cephalo train-refiner).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="the bundle to write (JSON; checkpoint paths stored relative to its folder).",
)
@params_option
def command(global_path: Path, refiner_path: Path, out: Path, params_path: Path) -> None:
    """Pair a global model and a refiner with the refine inference settings (iterations, tta)."""
    # deferred: `cephalo bundle --help` and the CLI's start-up import no library (cephalo.commands)
    from ..refine import read_bundle, write_bundle

    rcfg = read_params(params_path).refine
    write_bundle(out, global_path, refiner_path, rcfg.inference_settings())
    b = read_bundle(out)  # what evaluate and predict will read: both checkpoints load by their hashes
    click.echo(
        f"{out}: global {global_path} + refiner {refiner_path}; {b.iterations} round(s), "
        f"{len(b.tta.settings())} pass(es) per round"
    )
