"""The ``cephalo`` console script.

Each subcommand lives in ``cephalo/commands/<name>.py`` as a ``click.Command``
named ``command`` and is imported only when it is run (heavy imports deferred); the table of them
is ``cephalo.commands.SUBCOMMANDS`` (re-exported here).
Exit codes: 0 success, 1 a data/config/environment problem or an operating-system error
(no space left, permission denied, read-only file system, a file vanished: one-line message
naming the path on stderr), 2 a usage error (click's own).
"""

from __future__ import annotations

import errno
import importlib
import os
import sys

import click

from .commands import SUBCOMMANDS
from .errors import CephaloError

__all__ = ["SUBCOMMANDS", "main", "run", "os_error_message", "foreign_code_message"]


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in SUBCOMMANDS:
            return None
        module_name, help_text = SUBCOMMANDS[name]
        cmd = importlib.import_module(f"cephalo.commands.{module_name}").command
        if not cmd.help:
            cmd.help = help_text
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Short help from the table, so `cephalo --help` imports no subcommand.
        with formatter.section("Commands"):
            formatter.write_dl([(n, h) for n, (_, h) in SUBCOMMANDS.items()])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cephalo")
def main() -> None:
    """cephalo: cephalometric landmark detection, from raw release to MRE in millimetres."""
    msg = foreign_code_message()
    if msg:
        raise CephaloError(msg)


def _code_digest(package: os.PathLike[str]) -> str:
    """SHA-256 over a package's ``.py`` files (relative names and bytes), to tell a copy from an edit."""
    import hashlib
    from pathlib import Path

    h = hashlib.sha256()
    root = Path(package)
    for p in sorted(root.rglob("*.py")):
        if "__pycache__" in p.parts:
            continue
        h.update(p.relative_to(root).as_posix().encode() + b"\0")
        h.update(p.read_bytes() + b"\0")
    return h.hexdigest()


#: the file that, with ``src/cephalo``, marks a project folder (only its presence is checked)
_PROJECT_PARAMS = "params.yaml"


def foreign_code_message(cwd: str | os.PathLike | None = None) -> str | None:
    """The refusal when a command runs inside a project whose own code is not the imported one.

    A project is a folder (the working directory or one above it) holding ``params.yaml`` and
    ``src/cephalo``. A copied project whose ``.venv`` still has the original's editable install
    would run, and record the provenance of, the *original's* code: a code edit in the copy would
    change nothing. None when there is no project, when it is the imported package's own, or when
    its ``src/cephalo`` is byte for byte the imported one (same ``.py`` files: what runs is then
    the project's code); the environment variable ``CEPHALO_ALLOW_FOREIGN_CODE=1`` allows it on purpose.
    """
    from pathlib import Path

    if os.environ.get("CEPHALO_ALLOW_FOREIGN_CODE") == "1":
        return None
    here = Path(cwd or os.getcwd()).resolve()
    imported = Path(__file__).resolve().parent
    for folder in (here, *here.parents):
        own = folder / "src" / "cephalo"
        if (folder / _PROJECT_PARAMS).is_file() and own.is_dir():
            if own.resolve() == imported or _code_digest(own) == _code_digest(imported):
                return None  # its own code, or a byte-identical copy of it (a test's copy of the workflow)
            return (
                f"the project {folder} runs the cephalo code of another folder ({imported}), which differs "
                f"from its own src/cephalo; "
                f"a code edit here would change nothing. Fix: run scripts/setup-env.sh in {folder} "
                f"(or `pip install -e .` there with this project's Python), or set "
                f"CEPHALO_ALLOW_FOREIGN_CODE=1 to run the other code on purpose"
            )
    return None


def os_error_message(e: OSError) -> str:
    """One line for an OS error: ``<path>: <problem>`` (``-> <path2>`` for a failed rename).

    ``strerror`` is the C library's text (``No space left on device``); the errno name is added
    (``[ENOSPC]``) so that scripts can match it.
    """
    what = e.strerror or str(e) or type(e).__name__
    code = errno.errorcode.get(e.errno or 0)
    if code:
        what += f" [{code}]"
    if e.filename is None:
        return what
    where = os.fsdecode(e.filename)
    if e.filename2 is not None:
        where += f" -> {os.fsdecode(e.filename2)}"
    return f"{where}: {what}"


def run() -> None:
    """Entry point: turn CephaloError and OSError into a one-line message and exit code 1."""
    try:
        main.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except CephaloError as e:
        click.echo(f"cephalo: error: {e}", err=True)
        sys.exit(1)
    except OSError as e:  # no space, read-only, permission denied, a file removed while we ran
        click.echo(f"cephalo: error: {os_error_message(e)}", err=True)
        sys.exit(1)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    else:
        sys.exit(0)


if __name__ == "__main__":
    run()
