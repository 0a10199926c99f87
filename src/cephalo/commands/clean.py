"""``cephalo clean``: remove temporaries left by killed writers anywhere in a project."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import params_option, read_params


@click.command(name="clean")
@click.argument(
    "project", required=False, default=Path("."), type=click.Path(exists=True, file_okay=False, path_type=Path)
)
@click.option(
    "--older-than",
    "older_than",
    type=click.FloatRange(min=0),
    default=None,
    help="age in seconds after which a temporary whose owner cannot be checked (written on "
    "another host, or by an earlier cephalo) is removed [default: 86400, "
    "$CEPHALO_STALE_TEMP_S]; 0 removes them all.",
)
@click.option("--dry-run", "-n", is_flag=True, help="only list what would be removed.")
@params_option
def command(project: Path, older_than: float | None, dry_run: bool, params_path: Path) -> None:
    """Remove stale temporaries (``.<name>.<host>_<pid>_<random>.tmp|old``) under PROJECT.

    A temporary is stale when its writer ran on this host and is gone, or (owner not checkable)
    it is older than --older-than. Temporaries of running writers are kept. A killed directory
    swap's ``.old`` copy is put back where its output is missing.
    """
    if params_path.exists():
        read_params(params_path)  # validates the file; clean has no params of its own
    # deferred: `cephalo clean --help` and the CLI's start-up import no library (cephalo.commands)
    from ..io import sweep_tree

    found = sweep_tree(project, max_age_s=older_than, dry_run=dry_run)
    for p in found:
        click.echo(("would remove " if dry_run else "removed ") + str(p))
    click.echo(
        f"{len(found)} stale temporar{'y' if len(found) == 1 else 'ies'}"
        + (" found" if dry_run else " removed")
        + f" under {project}"
    )
