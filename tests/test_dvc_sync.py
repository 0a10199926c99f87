"""workflow/dvc_sync.py: the DVC record and Snakemake's modification times (workflow/rules/dvc.smk).

DVC's repository is stood in by small fakes with the attributes the module reads (``addressing``,
``outs``/``deps`` with ``def_path``, ``status()``, ``index.stages``, ``commit``).
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

from helpers import REPO, load_script

sync = load_script(REPO / "workflow" / "dvc_sync.py", "cephalo_workflow_dvc_sync_test")


def _stage(name: str, deps: list[str], outs: list[str], params: bool = True):
    d = [SimpleNamespace(def_path=p) for p in deps] + (
        [SimpleNamespace(def_path="params.yaml", params=["x"])] if params else []
    )
    return SimpleNamespace(addressing=name, deps=d, outs=[SimpleNamespace(def_path=p, exists=True) for p in outs])


def test_stage_levels_follow_outputs_into_inputs_and_folders():
    stages = [
        _stage("compare", ["results/eval"], ["results/comparison.csv"]),
        _stage("evaluate", ["results/models/a/best.pt", "results/index/x.parquet"], ["results/eval/a"]),
        _stage("train", ["results/index/x.parquet"], ["results/models/a/best.pt"]),
        _stage("index", ["resources/raw/x"], ["results/index/x.parquet"]),
        _stage("fingerprint", ["src/cephalo"], ["results/code"]),
    ]
    assert sync.stage_levels(stages) == {"index": 0, "train": 1, "evaluate": 2, "compare": 3, "fingerprint": 0}


def test_out_entries_list_a_folder_inside_out_and_skip_what_is_missing(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "sub" / "f.txt").write_text("x")
    (tmp_path / "file").write_text("y")
    got = sync.out_entries(tmp_path / "d")
    assert got[-1] == tmp_path / "d" and set(got[:-1]) == {tmp_path / "d" / "sub", tmp_path / "d" / "sub" / "f.txt"}
    assert sync.out_entries(tmp_path / "file") == [tmp_path / "file"]
    assert sync.out_entries(tmp_path / "nope") == []


def test_vouched_for_keeps_a_fingerprint_stage_whose_outputs_are_as_recorded():
    status = {
        "code_fingerprint": [{"changed deps": {"src/cephalo": "modified"}}],
        "train": [{"changed outs": {"results/models/a/best.pt": "modified"}}],
    }
    assert sync.vouched_for(status, ["code_fingerprint", "train", "index"]) == {"code_fingerprint", "index"}
    status["code_fingerprint"] = [{"changed outs": {"results/code": "modified"}}]
    assert sync.vouched_for(status, ["code_fingerprint", "index"]) == {"index"}


class _Repo:
    def __init__(self, stages, status):
        self.index = SimpleNamespace(stages=stages)
        self._status = status
        self.committed: list[str] = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def status(self):
        return self._status

    def commit(self, name, force=False):
        self.committed.append(name)


def test_align_mtimes_orders_vouched_outputs_and_leaves_the_rest(tmp_path):
    (tmp_path / ".dvc").mkdir()
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\n")
    for rel in ("results/index/x.parquet", "results/models/a/best.pt", "results/eval/a/metrics.json"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rel)
    stages = [
        _stage("index", ["resources/raw/x"], ["results/index/x.parquet"]),
        _stage("train", ["results/index/x.parquet"], ["results/models/a/best.pt"]),
        _stage("evaluate", ["results/models/a/best.pt"], ["results/eval/a"]),
    ]
    before = (tmp_path / "results/eval/a/metrics.json").stat().st_mtime
    repo = _Repo(stages, {"evaluate": [{"changed deps": {}}]})
    n = sync.align_mtimes(tmp_path, open_repo=lambda root: repo)
    base = int((tmp_path / "dvc.lock").stat().st_mtime) - 100000
    assert n == 2
    assert int((tmp_path / "results/index/x.parquet").stat().st_mtime) == base
    assert int((tmp_path / "results/models/a/best.pt").stat().st_mtime) == base + 10
    assert (tmp_path / "results/eval/a/metrics.json").stat().st_mtime == before  # not vouched for
    assert sync.align_mtimes(tmp_path, open_repo=lambda root: repo) == 0  # already in order
    os.remove(tmp_path / "dvc.lock")
    assert sync.align_mtimes(tmp_path, open_repo=lambda root: repo) == 0  # no record, nothing to align


def test_commit_outputs_records_complete_stages_only_when_params_are_the_file(tmp_path):
    stages = [_stage("index", [], ["results/index/x.parquet"]), _stage("train", [], ["results/models/a/best.pt"])]
    stages[1].outs[0].exists = False
    repo = _Repo(stages, {})
    assert sync.commit_outputs(False, tmp_path, open_repo=lambda root: repo) is None  # no .dvc/
    (tmp_path / ".dvc").mkdir()
    assert sync.commit_outputs(True, tmp_path, open_repo=lambda root: repo) is None  # --config: not recorded
    assert repo.committed == []
    assert sync.commit_outputs(False, tmp_path, open_repo=lambda root: repo) == ["index"]
    assert repo.committed == ["index"]
    assert Path(tmp_path / ".dvc").is_dir()
