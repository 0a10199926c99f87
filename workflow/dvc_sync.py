"""Keep DVC's record and Snakemake's view of the outputs in step (used by workflow/rules/dvc.smk).

After a successful Snakemake run, :func:`commit_outputs` records what it produced in DVC
(``dvc.lock``), so that ``dvc status``, ``dvc push`` and collaborators' ``dvc pull`` see the run's data
and checkpoints without recomputing. Only when this project is a DVC repository (``.dvc/``) and the
run used params.yaml as it is: a run with ``--configfile``/``--config`` produced outputs for other
params than the ones DVC's stages declare, so recording them would make dvc.lock lie; such a run
prints what to do instead. Stages whose outputs are not all present (a run on some targets only)
are left alone.

The other direction: Snakemake decides by modification times, DVC by content. A ``dvc checkout`` or
``dvc pull`` restores unchanged files with new, arbitrary modification times, which Snakemake would
redo. So before planning (:func:`align_mtimes`), for every stage that DVC vouches for (``dvc status``:
outputs, deps and params as recorded in dvc.lock) the outputs get modification times in pipeline
order (upstream older), fixed by dvc.lock's own time; nothing else is touched. A stage DVC does not
vouch for (changed data or params) keeps its times, so Snakemake still sees what changed, and its
params, code and input-set triggers stay in force either way.

Neither ever fails the workflow: a problem is printed with what to do by hand.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["stage_levels", "out_entries", "vouched_for", "align_mtimes", "commit_outputs"]


def stage_levels(stages: Iterable[Any]) -> dict[str, int]:
    """Pipeline depth of each DVC stage: 0 for stages fed by no other stage's output.

    ``stages``: DVC stage objects (``addressing``, ``outs`` and ``deps`` with ``def_path``; a params
    dependency has a ``params`` attribute and is not a path).
    """
    stages = list(stages)
    outs = {st.addressing: [str(o.def_path) for o in st.outs] for st in stages}
    deps = {st.addressing: [str(d.def_path) for d in st.deps if not hasattr(d, "params")] for st in stages}

    def feeds(a: str, b: str) -> bool:  # an output of a is (under) an input of b, or the other way round
        return any(
            d == o or d.startswith(o.rstrip("/") + "/") or o.startswith(d.rstrip("/") + "/")
            for o in outs[a]
            for d in deps[b]
        )

    level = {a: 0 for a in outs}
    for _ in range(len(outs)):
        changed = False
        for b in outs:
            for a in outs:
                if a != b and feeds(a, b) and level[b] <= level[a]:
                    level[b] = level[a] + 1
                    changed = True
        if not changed:
            break
    return level


def out_entries(path: Path) -> list[Path]:
    """A DVC output and, for a directory output, everything inside it: a rule may read one file of a
    directory that a DVC stage writes (results/code/<command>.sha256), and Snakemake compares that
    file's own time, not the directory's. The directory comes last (setting times inside changes its own)."""
    if not path.exists():
        return []
    if not path.is_dir() or path.is_symlink():
        return [path]
    inside = [Path(root) / n for root, dirs, files in os.walk(path) for n in dirs + files]
    return inside + [path]


def vouched_for(status: Mapping[str, Any], stage_names: Iterable[str]) -> set[str]:
    """The stages whose outputs dvc.lock vouches for, given ``dvc status``'s answer.

    results/code/*.sha256 (stage code_fingerprint) are rewritten by the Snakefile at parse time
    whenever the code changed; a source edit that leaves them as dvc.lock records (a comment, a
    docstring) changes the stage's deps only: its outputs are still the recorded ones.
    """
    changed = set(status)
    for name in [a for a in changed if a.split(":")[-1] == "code_fingerprint"]:
        if not any(isinstance(e, dict) and "changed outs" in e for e in status[name]):
            changed.discard(name)
    return {n for n in stage_names if n not in changed}


def align_mtimes(root: Path = Path("."), open_repo: Callable[[str], Any] | None = None) -> int:
    """Give the outputs DVC vouches for modification times in pipeline order; returns how many changed.

    A no-op (0) outside a DVC repository with a dvc.lock. ``open_repo`` opens the DVC repository
    (default ``dvc.repo.Repo``; a context manager with ``status()`` and ``index.stages``).
    """
    root = Path(root)
    if not (root / ".dvc").is_dir() or not (root / "dvc.lock").is_file():
        return 0
    if open_repo is None:
        from dvc.repo import Repo as open_repo  # lazy: DVC is imported only in a DVC repository

    base = int((root / "dvc.lock").stat().st_mtime) - 100000
    touched = 0
    with open_repo(str(root)) as repo:
        status = repo.status()
        stages = [st for st in repo.index.stages if st.outs]
        levels = stage_levels(stages)
        good = vouched_for(status, [st.addressing for st in stages])
        for st in stages:
            if st.addressing not in good:
                continue
            t = base + 10 * levels[st.addressing]
            for o in st.outs:
                for f in out_entries(root / str(o.def_path)):
                    if int(f.lstat().st_mtime) != t:
                        os.utime(f, (t, t), follow_symlinks=False)
                        touched += 1
    return touched


def commit_outputs(
    overridden: bool, root: Path = Path("."), open_repo: Callable[[str], Any] | None = None
) -> list[str] | None:
    """Record in dvc.lock every stage whose outputs are all present; returns the stages recorded.

    ``overridden``: the run's params differ from params.yaml (``--configfile``/``--config``): nothing
    is recorded (None). Outside a DVC repository: None.
    """
    root = Path(root)
    if not (root / ".dvc").is_dir() or overridden:
        return None
    if open_repo is None:
        from dvc.repo import Repo as open_repo  # lazy, as in align_mtimes

    done = []
    with open_repo(str(root)) as repo:
        for stage in repo.index.stages:
            if stage.outs and all(o.exists for o in stage.outs):
                repo.commit(stage.addressing, force=True)
                done.append(stage.addressing)
    return done
