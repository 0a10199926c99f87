"""``cephalo check-params [FILE...] [--params FILE]``: validate params files against the typed schema (cephalo.config).

What ``snakemake -n`` does at parse time, for DVC users and editors: every section, every key,
every value, plus (``--workflow``) the ``pipeline:`` cross-references. Exit 1 with one line naming
the file and the dotted key at the first problem; otherwise one ``FILE: ok`` line per file.
(``dvc repro`` needs no extra stage: its first ``cephalo`` command loads the same schema and stops
with the same message.)
"""

from __future__ import annotations

from pathlib import Path

import click

from ._common import params_option


@click.command(name="check-params")
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--workflow/--no-workflow",
    default=True,
    show_default=True,
    help="also check that pipeline: names only defined data sets and variants.",
)
@params_option
def command(files: tuple[Path, ...], workflow: bool, params_path: Path) -> None:
    """Validate params files (FILE..., else --params) against the typed schema."""
    # deferred: `cephalo check-params --help` and the CLI's start-up import no library (cephalo.commands)
    from ..config import load_params
    from ..config.load import check_pipeline

    for path in files or (params_path,):
        params = load_params(path)
        if workflow:
            check_pipeline(params, source=path)
        click.echo(f"{path}: ok")
