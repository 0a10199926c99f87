"""Options shared by every subcommand, and the one way a command reads its params."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from ..config import Params

params_option = click.option(
    "--params",
    "params_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("params.yaml"),
    show_default=True,
    help="params YAML file (the pipeline's params.yaml).",
)


def read_params(params_path: Path, optional: bool = False, missing_ok: bool = False) -> Params:
    """Load and validate the params file once (:func:`cephalo.config.load_params`).

    Returns the typed :class:`cephalo.config.Params` (every section, defaults filled in). With
    ``optional`` (commands that work without a project, e.g. ``predict``), a ``--params`` left at its
    default that does not exist gives the schema defaults; an explicit ``--params`` must exist
    unless ``missing_ok`` (commands with no params of their own, e.g. ``compare``).

    Raises:
        ConfigError: a missing/invalid file, a bad value or an unknown key (one line naming the
            file and the dotted key; exit 1).
    """
    # deferred: every command module imports this one; `cephalo CMD --help` need not load pydantic
    from ..config import Params, load_params

    if missing_ok and not params_path.exists():
        return Params()
    if optional and not params_path.is_file():
        ctx = click.get_current_context(silent=True)
        explicit = ctx is not None and ctx.get_parameter_source("params_path") != click.core.ParameterSource.DEFAULT
        if not explicit:
            return Params()
    return load_params(params_path)
