"""The user's own job rehearsed: the Aariz profile, every rule executed, against local stand-ins.

``scripts/rehearse_aariz.py`` builds an Aariz release stand-in (official layout, real image sizes and
spacings, seven devices, two of them landscape; one zip served over loopback HTTP) and an HRNet-W32 in the
public checkpoint format (reached through a Hugging Face cache folder, offline). Here:

- the rehearsal's plan is the Aariz profile's plan (same jobs, same commands): the overlay changes
  sizes only;
- the first run meets a cut transfer and stops at the download with one ``cephalo: error:`` line and
  nothing unpacked; the second resumes it (``Range``) and executes every planned job; a third plans
  nothing; the outputs a user reads are there (per-variant zero-shot diagnosis, fine-tuned and
  calibrated models, the comparison page, MLflow runs);
- each fault the issue names (wrong checksum, corrupted archive, checkpoint with a missing tensor,
  an unpacked copy without its CSV or a split) stops with one line, leaves nothing half-made, and the
  next run after the fault completes; an unpacked copy with the official quirks (``Train`` case,
  mixed extensions) is taken as it is (``cephalo download aariz --from-folder``).
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from helpers import REPO, effective_params_path, load_script, normalise_command, parse_dry_run

pytestmark = [pytest.mark.pipeline, pytest.mark.slow]

rehearse = load_script(REPO / "scripts" / "rehearse_aariz.py", "rehearse_aariz")
VARIANTS = ["letterbox768", "stretch768", "spacing768", "clahe_letterbox768"]


def _dry_run(project: Path, env: dict, configfiles: list[str], extra: list[str] = ()) -> list[dict]:
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--dry-run",
        "--printshellcmds",
        "--cores",
        "2",
        "--resources",
        "gpu=1",
        "--configfile",
        *configfiles,
        *extra,
    ]
    p = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return parse_dry_run(p.stdout)


def _cli(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from cephalo.cli import run; run()", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _one_error_line(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 1, (p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    errs = [ln for ln in p.stderr.splitlines() if ln.startswith("cephalo: error:")]
    assert len(errs) == 1 and "Traceback" not in p.stderr, p.stderr[-3000:]
    return errs[0]


def _nothing_beside(dest: Path) -> None:
    """``dest`` absent, and no temporary file or folder of it left beside it."""
    assert not dest.exists()
    if dest.parent.exists():
        assert [p.name for p in dest.parent.iterdir() if dest.name in p.name] == []


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory) -> SimpleNamespace:
    work = tmp_path_factory.mktemp("rehearsal")
    standins = rehearse.standins_for(work / "standins")
    project = rehearse.copy_project(work / "project")
    env = rehearse.environment(standins, work)
    plan_profile = _dry_run(project, env, [rehearse.PROFILE], ["--forceall"])
    with rehearse.serve(standins.archive, interrupt_once=True) as url:
        cmd = rehearse.snakemake_cmd(url, standins.md5, cores=2)
        plan_rehearsal = _dry_run(
            project,
            env,
            [rehearse.PROFILE, rehearse.OVERLAY],
            ["--forceall", "--config", cmd[cmd.index("--config") + 1]],
        )
        first = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=1200)
        first_download_log = (project / "logs" / "download" / "aariz.log").read_text()
        raw = project / "resources" / "raw"
        first_raw = sorted(p.name for p in raw.iterdir()) if raw.is_dir() else []
        first_parts = [p.stat().st_size for p in (work / "download-cache").glob("*.part")]
        second = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=1800)
        third = subprocess.run(cmd + ["--dry-run"], cwd=project, env=env, capture_output=True, text=True, timeout=300)
    return SimpleNamespace(
        work=work,
        project=project,
        env=env,
        standins=standins,
        plan_profile=plan_profile,
        plan_rehearsal=plan_rehearsal,
        first=first,
        first_download_log=first_download_log,
        first_raw=first_raw,
        first_parts=first_parts,
        second=second,
        third=third,
    )


def test_the_overlay_changes_sizes_only(rehearsal):
    """Same jobs, same rules, same outputs and the same commands as the Aariz profile itself."""
    a, b = rehearsal.plan_profile, rehearsal.plan_rehearsal
    assert Counter(j["rule"] for j in a) == Counter(j["rule"] for j in b)
    assert Counter(j["rule"] for j in a) == {
        "download": 1,
        "fetch_source": 1,
        "index": 1,
        "preprocess": 4,
        "adapt": 4,
        "evaluate": 16,
        "finetune": 4,
        "calibrate": 8,
        "compare": 1,
    }
    assert {o for j in a for o in j["output"]} == {o for j in b for o in j["output"]}
    assert {normalise_command(j["shell"]) for j in a} == {normalise_command(j["shell"]) for j in b}


def test_interrupted_download_stops_with_one_line_then_resumes(rehearsal):
    r = rehearsal
    assert r.first.returncode != 0
    errs = [ln for ln in r.first_download_log.splitlines() if ln.startswith("cephalo: error:")]
    assert len(errs) == 1 and "interrupted" in errs[0] and "resume" in errs[0], r.first_download_log
    assert "Traceback" not in r.first_download_log
    assert r.first_raw == []  # nothing unpacked, no temporary left
    assert len(r.first_parts) == 1 and 0 < r.first_parts[0] < r.standins.archive.stat().st_size
    assert r.second.returncode == 0, r.second.stdout[-4000:] + r.second.stderr[-4000:]
    assert list((r.work / "download-cache").glob("*.part")) == []


def test_every_planned_job_executed_and_nothing_left(rehearsal):
    r = rehearsal
    missing = sorted(o for j in r.plan_rehearsal for o in j["output"] if not (r.project / o).exists())
    assert missing == []
    assert r.third.returncode == 0 and "Nothing to be done" in r.third.stdout + r.third.stderr


def test_the_outputs_a_user_reads(rehearsal):
    import json

    import pandas as pd

    res = rehearsal.project / "results"
    table = pd.read_csv(res / "comparison.csv", index_col="run")
    for v in VARIANTS:
        for stage in ("naive", "zero_shot", "adabn", "finetune"):
            m = json.loads((res / "eval" / f"{stage}-{v}" / "metrics.json").read_text())
            assert m["split"] == "test" and m["figures"]["mre_mm/all"] > 0
            shared = table.loc[f"{stage}-{v}"]
            assert shared["n_landmarks/shared"] == 19 and shared["mre_mm/shared"] > 0  # the 19 both know
        assert "## Findings" in (res / "eval" / f"zero_shot-{v}" / "diagnosis.md").read_text()
        ft = json.loads((res / "eval" / f"finetune-{v}" / "metrics.json").read_text())
        assert ft["figures"]["n_landmarks/all"] == 29  # the public 19 transferred by name, 10 new channels
        assert ft["uncertainty"]["calibration_split"] == "valid"  # calibrated radii
        assert (res / "models" / "finetune" / v / "calibrated.pt").is_file()
    # seven devices, two landscape, each image's own spacing, in the index
    images = pd.read_parquet(res / "index" / "aariz.parquet").drop_duplicates("image_id")
    assert images["device"].nunique() == 7 and len(images) == 21
    assert sorted(images["spacing_x_mm"].unique().round(3)) == [0.089, 0.1, 0.135, 0.139, 0.144]
    assert (images["width"] > images["height"]).sum() == 6  # two landscape devices, once per split
    table = (res / "comparison.md").read_text()
    assert all(f"{s}-{v}" in table for s in ("zero_shot", "finetune") for v in VARIANTS)
    assert (res / "comparison.html").stat().st_size > 10_000
    with sqlite3.connect(rehearsal.project / "mlflow" / "mlflow.db") as db:
        names = {n for (n,) in db.execute("SELECT name FROM runs WHERE status = 'FINISHED'")}
    assert {f"train-finetune/{v}" for v in VARIANTS} <= names
    assert {f"{s}-{v}" for s in ("naive", "zero_shot", "adabn", "finetune") for v in VARIANTS} <= names


# ---------------------------------------------------------------------------------------------- faults
@pytest.fixture(scope="module")
def params_file(rehearsal) -> Path:
    """The effective params the rehearsal's jobs read (results/params/<hash>.yaml)."""
    return rehearsal.project / effective_params_path(rehearsal.plan_rehearsal)


def test_wrong_checksum_then_the_right_one(rehearsal, params_file, tmp_path):
    dest = tmp_path / "raw" / "aariz"
    archive = str(rehearsal.standins.archive)
    base = [
        "download",
        "aariz",
        "--out",
        str(dest),
        "--archive",
        archive,
        "--no-progress",
        "--params",
        str(params_file),
    ]
    err = _one_error_line(_cli(base + ["--known-hash", "md5:" + "0" * 32], rehearsal.env, tmp_path))
    assert "checksum" in err.lower() or "md5" in err.lower(), err
    _nothing_beside(dest)
    p = _cli(base + ["--known-hash", rehearsal.standins.md5], rehearsal.env, tmp_path)
    assert p.returncode == 0, p.stderr
    assert (dest / "Aariz" / "cephalogram_machine_mappings.csv").is_file()


def test_corrupted_archive_then_a_good_one(rehearsal, params_file, tmp_path):
    """The archive's own checksum matches (the publisher's file is damaged): unpacking must catch it."""
    good = rehearsal.standins.archive.read_bytes()
    with zipfile.ZipFile(rehearsal.standins.archive) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith(".png"))
    at = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + info.compress_size // 2
    bad = bytearray(good)
    bad[at : at + 64] = bytes(b ^ 0xFF for b in bad[at : at + 64])
    corrupted = tmp_path / "Aariz.zip"
    corrupted.write_bytes(bytes(bad))
    dest = tmp_path / "raw" / "aariz"
    args = ["download", "aariz", "--out", str(dest), "--no-progress", "--params", str(params_file)]
    err = _one_error_line(
        _cli(
            args + ["--archive", str(corrupted), "--known-hash", "md5:" + hashlib.md5(bad).hexdigest()],
            rehearsal.env,
            tmp_path,
        )
    )
    assert str(corrupted) in err or "Aariz.zip" in err, err
    _nothing_beside(dest)
    p = _cli(
        args + ["--archive", str(rehearsal.standins.archive), "--known-hash", rehearsal.standins.md5],
        rehearsal.env,
        tmp_path,
    )
    assert p.returncode == 0, p.stderr


def test_checkpoint_missing_a_tensor_then_the_whole_one(rehearsal, params_file, tmp_path):
    """The Hugging Face cache holds a damaged best_model.pth: fetch-model (the pipeline's only reader
    of it) stops with one line naming the tensor and writes nothing; with the whole file it completes."""
    damaged = rehearse.write_public_checkpoint(tmp_path / "best_model.pth", 128, drop_keys=("final_layer.bias",))
    env = {**rehearsal.env, "HF_HUB_CACHE": str(rehearse.write_hf_cache(tmp_path / "hf", damaged))}
    out = tmp_path / "models" / "source" / "best.pt"
    args = ["fetch-model", "--out", str(out), "--params", str(params_file)]
    err = _one_error_line(_cli(args, env, tmp_path))
    assert "final_layer.bias" in err, err
    _nothing_beside(out)
    p = _cli(args, rehearsal.env, tmp_path)
    assert p.returncode == 0, p.stderr
    assert out.stat().st_size == rehearsal.standins.checkpoint.stat().st_size


@pytest.fixture(scope="module")
def unpacked(rehearsal, tmp_path_factory) -> Path:
    """The stand-in release unpacked by hand, as a user who already has Aariz holds it."""
    root = tmp_path_factory.mktemp("mine")
    with zipfile.ZipFile(rehearsal.standins.archive) as zf:
        zf.extractall(root)
    return root / "Aariz"


@pytest.mark.parametrize(
    "damage, named",
    [
        ("cephalogram_machine_mappings.csv", "cephalogram_machine_mappings.csv"),
        ("valid", "valid"),
    ],
)
def test_my_copy_without_its_csv_or_a_split(rehearsal, params_file, unpacked, tmp_path, damage, named):
    copy = tmp_path / "Aariz"
    shutil.copytree(unpacked, copy)
    (shutil.rmtree if (copy / damage).is_dir() else Path.unlink)(copy / damage)
    dest = tmp_path / "raw" / "aariz"
    args = ["download", "aariz", "--out", str(dest), "--no-progress", "--params", str(params_file)]
    err = _one_error_line(_cli(args + ["--from-folder", str(copy)], rehearsal.env, tmp_path))
    assert named in err, err
    _nothing_beside(dest)
    p = _cli(args + ["--from-folder", str(unpacked)], rehearsal.env, tmp_path)
    assert p.returncode == 0, p.stderr


def test_my_copy_with_the_official_quirks_is_taken_as_it_is(rehearsal, params_file, unpacked, tmp_path):
    """``Train`` (the official loader's case), mixed extensions, spacing only in the CSV: download
    --from-folder and index take it, and the index has every image with its own pixel spacing."""
    import pandas as pd

    copy = tmp_path / "Aariz"
    shutil.copytree(unpacked, copy)
    (copy / "train").rename(copy / "Train")
    exts = {p.suffix for p in copy.rglob("Cephalograms/*")}
    assert exts == {".png", ".jpg", ".jpeg", ".bmp"}
    dest = tmp_path / "raw" / "aariz"
    p = _cli(
        [
            "download",
            "aariz",
            "--out",
            str(dest),
            "--from-folder",
            str(copy),
            "--no-progress",
            "--params",
            str(params_file),
        ],
        rehearsal.env,
        tmp_path,
    )
    assert p.returncode == 0, p.stderr
    index = tmp_path / "aariz.parquet"
    p = _cli(
        [
            "index",
            "--dataset",
            "aariz",
            "--root",
            str(dest),
            "--out",
            str(index),
            "--report",
            str(tmp_path / "quality"),
            "--params",
            str(params_file),
        ],
        rehearsal.env,
        tmp_path,
    )
    assert p.returncode == 0, p.stderr
    images = pd.read_parquet(index).drop_duplicates("image_id")
    assert len(images) == 21 and set(images["split"]) == {"train", "valid", "test"}
    assert images["spacing_x_mm"].notna().all()


def test_my_copy_through_one_params_key(rehearsal, params_file, unpacked, tmp_path):
    """`data.datasets.aariz.download.folder: /path/to/Aariz` (the profile's one line for "I already have
    Aariz"): the download rule's own command takes the copy instead of the URL."""
    import yaml

    params = yaml.safe_load(params_file.read_text())
    params["data"]["datasets"]["aariz"]["download"].update(folder=str(unpacked), url="http://127.0.0.1:9/unreachable")
    mine = tmp_path / "params.yaml"
    mine.write_text(yaml.safe_dump(params))
    dest = tmp_path / "raw" / "aariz"
    p = _cli(["download", "aariz", "--out", str(dest), "--no-progress", "--params", str(mine)], rehearsal.env, tmp_path)
    assert p.returncode == 0, p.stderr
    assert (dest / "Aariz" / "cephalogram_machine_mappings.csv").read_bytes() == (
        unpacked / "cephalogram_machine_mappings.csv"
    ).read_bytes()
