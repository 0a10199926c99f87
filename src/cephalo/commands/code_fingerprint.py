"""``cephalo code-fingerprint``: one SHA-256 per subcommand over the code it can run (rerun triggers)."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import params_option


@click.command(name="code-fingerprint")
@click.option(
    "--out",
    "out_dir",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="folder for <command>.sha256 (rewritten only where the fingerprint changed)",
)
@click.option(
    "--closure",
    "closure",
    multiple=True,
    metavar="COMMAND",
    help="print the modules COMMAND's fingerprint covers (repeatable; 'all' for every command)",
)
@click.option(
    "--importers",
    "importers",
    default=None,
    metavar="MODULE",
    help="print the commands whose fingerprint covers MODULE (e.g. cephalo.evaluate.metrics): "
    "the stages an edit of it reruns",
)
@params_option
def command(out_dir: Path | None, closure: tuple[str, ...], importers: str | None, params_path: Path) -> None:
    """Write OUT/<command>.sha256 for every cephalo subcommand, or show what they cover.

    A fingerprint covers the static import closure of the subcommand inside the package, each
    module hashed by its syntax tree without docstrings (``cephalo.fingerprint.code_fingerprints``):
    editing a comment or docstring changes nothing; changing code a stage runs changes that
    stage's file, and the workflow (DVC ``deps``, Snakemake ``input``) reruns it and what follows.
    """
    # deferred: `cephalo code-fingerprint --help` and the CLI's start-up import no library (cephalo.commands)
    from ..fingerprint import command_closures, write_code_fingerprints

    if not (out_dir or closure or importers):
        raise click.UsageError("give --out DIR, --closure COMMAND or --importers MODULE")
    if closure or importers:
        closures = command_closures()
        names = sorted(closures) if "all" in closure else list(closure)
        for name in names:
            if name not in closures:
                raise click.BadParameter(
                    f"unknown subcommand {name!r}; valid: {sorted(closures)}", param_hint="--closure"
                )
            click.echo(f"{name}: {' '.join(closures[name])}")
        if importers:
            click.echo(f"{importers}: {' '.join(n for n in sorted(closures) if importers in closures[n]) or '(none)'}")
    if out_dir is not None:
        changed = write_code_fingerprints(out_dir)
        for name, ch in changed.items():
            click.echo(f"{out_dir / (name + '.sha256')}: {'written' if ch else 'unchanged'}")
