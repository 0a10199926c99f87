"""``cephalo code-fingerprint``: one SHA-256 per subcommand over the code it can run (rerun triggers)."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import params_option


@click.command(name="code-fingerprint")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="folder for <command>.sha256 (rewritten only where the fingerprint changed)")
@params_option
def command(out_dir: Path, params_path: Path) -> None:
    """Write OUT/<command>.sha256 for every cephalo subcommand.

    A fingerprint covers the static import closure of the subcommand inside the package, each
    module hashed by its syntax tree without docstrings (``cephalo.fingerprint.code_fingerprints``):
    editing a comment or docstring changes nothing; changing code a stage runs changes that
    stage's file, and the workflow (DVC ``deps``, Snakemake ``input``) reruns it and what follows.
    """
    # deferred: `cephalo code-fingerprint --help` and the CLI's start-up import no library (cephalo.commands)
    from ..fingerprint import write_code_fingerprints

    changed = write_code_fingerprints(out_dir)
    for name, ch in changed.items():
        click.echo(f"{out_dir / (name + '.sha256')}: {'written' if ch else 'unchanged'}")
