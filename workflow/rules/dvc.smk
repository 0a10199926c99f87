# After a successful Snakemake run, record what it produced in DVC (dvc.lock), so that `dvc status`,
# `dvc push` and collaborators' `dvc pull` see the run's data and checkpoints without recomputing.
#
# Only when this project is a DVC repository (.dvc/) and the run used params.yaml as it is: a run
# with --configfile/--config produced outputs for other params than the ones DVC's stages declare,
# so recording them would make dvc.lock lie; such a run prints what to do instead. Stages whose
# outputs are not all present (a run on some targets only) are left alone. Skipped with
# `--no-hooks` (and in a dry run). The other direction (a `dvc checkout`/`pull` leaves Snakemake
# with nothing to do) comes from the rerun triggers in workflow/profiles/default (no mtime).


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
