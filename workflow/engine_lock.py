"""One lock for both engines (used by workflow/rules/dvc.smk; docs/team.md "Both engines").

The lock is DVC's own repository lock, ``.dvc/tmp/lock``: ``dvc repro`` (and ``dvc exp run``, ``dvc
commit``, ``dvc checkout``, ...) hold it, and a Snakemake run that is going to write (not a dry run)
holds it from its planning until it finishes (:func:`acquire`). DVC gives the lock
back while a stage's command runs (so that the command may call DVC); the stage's outputs are then
write-locked in ``.dvc/tmp/rwlock`` with DVC's pid and command line, which :func:`acquire` reads too.
A Snakemake run takes the lock before it plans (:func:`snakemake_writes` tells a run from a dry run
by its command line), so it never plans from outputs DVC is rewriting.
At every moment of a ``dvc repro`` one of the two is held. So:

- Snakemake beside a running ``dvc repro`` refuses before its first job, with one line naming the DVC
  process (its pid and command line): ``cephalo: error: another run writes this project's outputs
  (.dvc/tmp/lock held by pid 123: dvc repro); wait for it or stop it``.
- ``dvc repro`` beside a running Snakemake refuses before it runs or removes anything, with DVC's
  ``Unable to acquire lock`` error; the lock file then says who holds it (``cat .dvc/tmp/lock``:
  ``123 snakemake --cores 2 ...``).

It is an ``fcntl`` lock (``zc.lockfile``, what DVC uses): the kernel drops it when its process ends,
so a killed run leaves no stale lock to clean up. Only in a DVC repository (``.dvc/``); without one
Snakemake's own ``.snakemake/locks`` are all there is.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["LOCK", "RWLOCK", "EngineBusy", "holder", "dvc_writer", "acquire", "release", "snakemake_writes"]

#: DVC's repository lock, relative to the project root
LOCK = Path(".dvc") / "tmp" / "lock"
#: DVC's table of the paths its running stages read and write (pid and command line of each)
RWLOCK = Path(".dvc") / "tmp" / "rwlock"


class EngineBusy(Exception):
    """Another run (DVC or Snakemake) holds the lock; the message is one line naming it."""


def holder(root: Path | str = ".") -> str:
    """``pid N: COMMAND`` of the process that holds (or last held) the lock, as far as it can be told."""
    try:
        text = (Path(root) / LOCK).read_text().strip()
    except OSError:
        return "an unknown process"
    pid = text.split()[0] if text else ""
    if not pid.isdigit():
        return "an unknown process"
    try:
        argv = (Path("/proc") / pid / "cmdline").read_bytes().split(b"\0")
        words = [a.decode(errors="replace") for a in argv if a]
    except OSError:
        words = text.split()[1:]
    return f"pid {pid}: {' '.join(_short(words)) or 'unknown command'}"


def _short(words: list[str]) -> list[str]:
    """``python -m dvc repro`` / ``.../dvc/__main__.py repro`` / ``.../bin/snakemake -n``
    -> ``dvc repro`` / ``snakemake -n``."""
    if len(words) > 2 and words[1] == "-m":
        words = words[2:]
    elif words and Path(words[0]).name.startswith("python") and len(words) > 1:
        words = words[1:]
    if words:
        first = Path(words[0])
        words = [first.parent.name if first.name == "__main__.py" else first.name, *words[1:]]
    return words


def acquire(root: Path | str = ".", argv: list[str] | None = None) -> Any:
    """Take the lock for a run of ``argv`` (default: this process's); ``None`` outside a DVC repository.

    Raises :class:`EngineBusy` when another live process holds it.
    """
    import zc.lockfile

    root = Path(root)
    if not (root / ".dvc").is_dir():
        return None
    (root / LOCK).parent.mkdir(parents=True, exist_ok=True)
    words = _short(list(argv)) if argv else ["snakemake"]
    content = "{pid} " + " ".join(words).replace("{", "{{").replace("}", "}}")
    try:
        lock = zc.lockfile.LockFile(str(root / LOCK), content_template=content)
    except zc.lockfile.LockError:
        raise EngineBusy(
            f"another run writes this project's outputs ({LOCK} held by {holder(root)}); "
            "wait for it to finish or stop it"
        ) from None
    # DVC gives its repository lock back while a stage's command runs; the stage's outputs stay
    # write-locked in .dvc/tmp/rwlock (pid and command line), which a live DVC process holds then
    writer = dvc_writer(root)
    if writer:
        lock.close()
        raise EngineBusy(
            f"another run writes this project's outputs ({RWLOCK} names {writer}); wait for it to finish or stop it"
        )
    return lock


def dvc_writer(root: Path | str = ".") -> str:
    """``pid N: COMMAND`` of a live DVC process with outputs write-locked in .dvc/tmp/rwlock, else ``""``."""
    import json

    for _ in range(3):  # DVC rewrites the file whole; a read can meet it half written
        try:
            table = json.loads((Path(root) / RWLOCK).read_text() or "{}")
            break
        except FileNotFoundError:
            return ""
        except (OSError, ValueError):
            continue
    else:
        return ""
    for info in (table.get("write") or {}).values():
        pid = int(info.get("pid", 0))
        if pid and pid != os.getpid() and Path(f"/proc/{pid}").exists():
            return f"pid {pid}: {' '.join(_short(str(info.get('cmd', 'dvc')).split()))}"
    return ""


#: Snakemake options that plan, list or draw without running a job (their ``argparse`` destinations)
_PLANNING_ONLY = (
    "dryrun",
    "list_rules",
    "list_target_rules",
    "dag",
    "rulegraph",
    "filegraph",
    "d3dag",
    "summary",
    "detailed_summary",
    "lint",
    "list_changes",
    "list_input_changes",
    "list_params_changes",
    "list_untracked",
    "unlock",
    "report",
    "containerize",
    "export_cwl",
    "print_compilation",
    "archive",
    "generate_unit_tests",
    "cleanup_metadata",
    "no_hooks",
)


def snakemake_writes(argv: list[str]) -> bool | None:
    """Whether a Snakemake command line (``sys.argv`` of the main process) runs jobs.

    ``False`` for a dry run, a listing or drawing, or ``--no-hooks`` (which skips the
    lock by design); ``None`` when the command line is not Snakemake's own (the Python API): the
    caller then takes the lock at the first job (``onstart``) only.
    """
    import contextlib
    import io

    from snakemake.cli import get_argument_parser

    if not argv:
        return None
    program = Path(argv[0])
    if program.name != "snakemake" and not (program.name == "__main__.py" and program.parent.name == "snakemake"):
        return None  # not Snakemake's command line (`python -m snakemake` shows as .../snakemake/__main__.py)
    words = list(argv[1:])
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            args, _ = get_argument_parser().parse_known_args(words)
    except SystemExit:
        return None
    return not any(getattr(args, name, None) for name in _PLANNING_ONLY)


def release(lock: Any) -> None:
    """Give the lock back (``None``: nothing was taken)."""
    if lock is not None:
        lock.close()


if __name__ == "__main__":  # `python workflow/engine_lock.py`: who holds the lock now
    print(holder() if (Path(".") / LOCK).exists() else "no lock file")
    sys.exit(0)
