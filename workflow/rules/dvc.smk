# After a successful Snakemake run, record what it produced in DVC (dvc.lock); before planning, give
# the outputs that dvc.lock vouches for modification times in pipeline order (a `dvc checkout` or
# `dvc pull` restores files with arbitrary times, which Snakemake would redo). The why and how are in
# workflow/dvc_sync.py (tested in tests/test_dvc_sync.py); only when this project is a DVC repository
# and, for the record, the run used params.yaml as it is. Skipped with `--no-hooks` (and in a dry run).

import importlib.util as _ilu

_spec = _ilu.spec_from_file_location("cephalo_workflow_dvc_sync", Path(workflow.basedir) / "workflow" / "dvc_sync.py")
_dvc_sync = _ilu.module_from_spec(_spec)
_spec.loader.exec_module(_dvc_sync)
_spec = _ilu.spec_from_file_location(
    "cephalo_workflow_engine_lock", Path(workflow.basedir) / "workflow" / "engine_lock.py"
)
_engine_lock = _ilu.module_from_spec(_spec)
_spec.loader.exec_module(_engine_lock)


def _align_dvc_mtimes():
    if not workflow.is_main_process:
        return
    try:
        touched = _dvc_sync.align_mtimes()
    except Exception as e:  # never block planning; Snakemake then just sees the restored times
        print(f"DVC: could not check outputs against dvc.lock ({type(e).__name__}: {e})")
        return
    if touched:
        print(f"DVC: {touched} output(s) that dvc.lock vouches for put in pipeline order (modification times)")


def _dvc_commit_outputs():
    settings = workflow.config_settings
    overridden = bool(settings.configfiles or settings.config)
    if overridden and Path(".dvc").is_dir():
        print(
            "DVC: outputs not recorded in dvc.lock: this run's params differ from params.yaml "
            "(--configfile/--config); run `dvc commit` after making params.yaml say the same"
        )
        return
    try:
        done = _dvc_sync.commit_outputs(overridden)
    except Exception as e:  # never fail a finished run over the record; say how to do it by hand
        print(f"DVC: could not record the outputs ({type(e).__name__}: {e}); run `dvc commit` by hand")
        return
    if done is not None:
        print(f"DVC: recorded {len(done)} stage(s) in dvc.lock: {', '.join(done)}")


# One lock for both engines (workflow/engine_lock.py): a run that writes holds DVC's repository lock from its
# planning (so that it never answers "nothing to be done" from outputs a running `dvc repro` is rewriting,
# nor moves their times) to its end, so `dvc repro` refuses beside it, and it refuses beside a running
# `dvc repro`. A dry run or listing takes nothing; beside a running engine it leaves the times alone.
_ENGINE_LOCK = []


def _take_engine_lock(planning):
    """Take the lock (``planning``: at parse time, for a run whose command line says it runs jobs)."""
    import sys as _sys

    if _ENGINE_LOCK or not workflow.is_main_process:
        return
    try:
        _ENGINE_LOCK.append(_engine_lock.acquire(".", _sys.argv))
    except _engine_lock.EngineBusy as e:
        print(f"cephalo: error: {e}", file=_sys.stderr)
        if planning:
            _sys.exit(1)
        raise


def _give_back_engine_lock():
    while _ENGINE_LOCK:
        _engine_lock.release(_ENGINE_LOCK.pop())


def _plan_beside_other_runs():
    """Before planning: refuse (a run) or leave the times alone (a dry run) while another run writes;
    else align the outputs' times (DVC takes and gives back its lock for that), then a run takes the lock."""
    import sys as _sys

    if not workflow.is_main_process:
        return
    writes = _engine_lock.snakemake_writes(_sys.argv) if Path(".dvc").is_dir() else None
    if writes is not None:
        try:
            _engine_lock.release(_engine_lock.acquire(".", _sys.argv))
        except _engine_lock.EngineBusy as e:
            if writes:
                print(f"cephalo: error: {e}", file=_sys.stderr)
                _sys.exit(1)
            print(f"cephalo: {e}; planned from the outputs as they are now")
            return
    _align_dvc_mtimes()
    if writes:  # a run that starts in between makes this refuse, as above
        _take_engine_lock(planning=True)


_plan_beside_other_runs()


onstart:
    _take_engine_lock(planning=False)


onsuccess:
    _give_back_engine_lock()
    _dvc_commit_outputs()


onerror:
    _give_back_engine_lock()
