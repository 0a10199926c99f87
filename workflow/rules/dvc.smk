# After a successful Snakemake run, record what it produced in DVC (dvc.lock), so that `dvc status`,
# `dvc push` and collaborators' `dvc pull` see the run's data and checkpoints without recomputing.
#
# Only when this project is a DVC repository (.dvc/) and the run used params.yaml as it is: a run
# with --configfile/--config produced outputs for other params than the ones DVC's stages declare,
# so recording them would make dvc.lock lie; such a run prints what to do instead. Stages whose
# outputs are not all present (a run on some targets only) are left alone. Skipped with
# `--no-hooks` (and in a dry run).
#
# The other direction: Snakemake decides by modification times, DVC by content. A `dvc checkout` or
# `dvc pull` restores unchanged files with new, arbitrary modification times, which Snakemake would
# redo. So before planning, for every stage that DVC vouches for (`dvc status`: outputs, deps and
# params as recorded in dvc.lock) the outputs get modification times in pipeline order (upstream
# older), fixed by dvc.lock's own time; nothing else is touched. A stage DVC does not vouch for
# (changed data or params) keeps its times, so Snakemake still sees what changed, and its params,
# code and input-set triggers stay in force either way.


import os


def _dvc_stage_levels(stages):
    """Pipeline depth of each DVC stage: 0 for stages fed by no other stage's output."""
    outs = {st.addressing: [str(o.def_path) for o in st.outs] for st in stages}
    deps = {st.addressing: [str(d.def_path) for d in st.deps if not hasattr(d, "params")] for st in stages}

    def feeds(a, b):  # an output of a is (under) an input of b, or the other way round
        return any(d == o or d.startswith(o.rstrip("/") + "/") or o.startswith(d.rstrip("/") + "/")
                   for o in outs[a] for d in deps[b])

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


def _out_entries(path):
    """A DVC output and, for a directory output, everything inside it: a rule may read one file of a
    directory that a DVC stage writes (results/code/<command>.sha256), and Snakemake compares that
    file's own time, not the directory's."""
    if not path.exists():
        return []
    if not path.is_dir() or path.is_symlink():
        return [path]
    inside = [Path(root) / n for root, dirs, files in os.walk(path) for n in dirs + files]
    return inside + [path]  # the directory last: setting times inside does not change its own


def _align_dvc_mtimes():
    if not workflow.is_main_process or not Path(".dvc").is_dir() or not Path("dvc.lock").is_file():
        return
    try:
        from dvc.repo import Repo

        base = int(Path("dvc.lock").stat().st_mtime) - 100000
        touched = 0
        with Repo(".") as repo:
            status = repo.status()
            changed = set(status)
            # results/code/*.sha256 (stage code_fingerprint) are rewritten by this Snakefile at parse
            # time whenever the code changed; a source edit that leaves them as dvc.lock records
            # (a comment, a docstring) changes the stage's deps only: its outputs are still the
            # recorded ones and get pipeline-order times like any vouched-for output.
            for name in [a for a in changed if a.split(":")[-1] == "code_fingerprint"]:
                if not any(isinstance(e, dict) and "changed outs" in e for e in status[name]):
                    changed.discard(name)
            stages = [st for st in repo.index.stages if st.outs]
            levels = _dvc_stage_levels(stages)
            for st in stages:
                if st.addressing in changed:
                    continue
                t = base + 10 * levels[st.addressing]
                for o in st.outs:
                    for f in _out_entries(Path(str(o.def_path))):
                        if int(f.lstat().st_mtime) != t:
                            os.utime(f, (t, t), follow_symlinks=False)
                            touched += 1
        if touched:
            print(f"DVC: {touched} output(s) that dvc.lock vouches for put in pipeline order (modification times)")
    except Exception as e:  # never block planning; Snakemake then just sees the restored times
        print(f"DVC: could not check outputs against dvc.lock ({type(e).__name__}: {e})")


_align_dvc_mtimes()


def _dvc_commit_outputs():
    if not Path(".dvc").is_dir():
        return
    settings = workflow.config_settings
    if settings.configfiles or settings.config:
        print("DVC: outputs not recorded in dvc.lock: this run's params differ from params.yaml "
              "(--configfile/--config); run `dvc commit` after making params.yaml say the same")
        return
    try:
        from dvc.repo import Repo

        done = []
        with Repo(".") as repo:
            for stage in repo.index.stages:
                if stage.outs and all(o.exists for o in stage.outs):
                    repo.commit(stage.addressing, force=True)
                    done.append(stage.addressing)
        print(f"DVC: recorded {len(done)} stage(s) in dvc.lock: {', '.join(done)}")
    except Exception as e:  # never fail a finished run over the record; say how to do it by hand
        print(f"DVC: could not record the outputs ({type(e).__name__}: {e}); run `dvc commit` by hand")


onsuccess:
    _dvc_commit_outputs()
