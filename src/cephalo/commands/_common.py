"""Options shared by every subcommand."""

from __future__ import annotations

from pathlib import Path

import click

from ..io import load_params

params_option = click.option(
    "--params",
    "params_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("params.yaml"),
    show_default=True,
    help="params YAML file (the pipeline's params.yaml).",
)


def read_params(params_path: Path) -> dict:
    """Load the params file; a missing/invalid file is a CephaloError (exit 1)."""
    return load_params(params_path)
