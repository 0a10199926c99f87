"""Fault injection: every writer killed (SIGKILL) at chosen and at random points.

Writers: ``cephalo index``, ``preprocess``, ``train`` (checkpoints), ``evaluate`` and ``download``
(unpack), each run as a subprocess through ``tests/faultwrap.py``, which SIGKILLs the process just
before or just after a commit (the rename of a temporary onto its target, or a directory swap),
or is killed from outside after a random delay (seeded: ``CEPHALO_FAULT_SEED``). After each kill:
every output that existed is still whole (its loader reads it; it is the old or the new version);
then the same command runs again to the end, and no temporary is left anywhere in the project.

The table of cases (case, expected, seen) is printed (``-s``) and is the one in the README.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

pytestmark = [pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
WRAP = Path(__file__).with_name("faultwrap.py")
SEED = int(os.environ.get("CEPHALO_FAULT_SEED", "17"))
N_RANDOM = int(os.environ.get("CEPHALO_FAULT_RANDOM", "2"))
TABLE: list[tuple[str, str, str]] = []


def _env(fault: str | None = None) -> dict:
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        NO_ALBUMENTATIONS_UPDATE="1",
        MLFLOW_DISABLE_TELEMETRY="true",
        MPLBACKEND="Agg",
        OMP_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
    )
    env.pop("FAULT_AT", None)
    if fault:
        env["FAULT_AT"] = fault
    return env


def _cmd(args: list[str]) -> list[str]:
    return [sys.executable, str(WRAP), *args]


def _run(args: list[str], cwd: Path) -> float:
    t = time.monotonic()
    p = subprocess.run(_cmd(args), cwd=cwd, env=_env(), capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    return time.monotonic() - t


def _debris(root: Path) -> list[str]:
    from cephalo.io import temp_owner

    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            if temp_owner(n) is not None:
                out.append(str(Path(dirpath, n).relative_to(root)))
    return out


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    from cephalo.commands.make_demo import make_demo

    p = tmp_path_factory.mktemp("faults")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["demo"]["isbi2015"].update(n_train=6, n_test1=3)
    params["demo"]["aariz"].update(n_train=3, n_valid=3, n_test=3)
    params["train"]["num_workers"] = 0
    params["train"]["stages"]["source"]["epochs"] = 1
    params["evaluate"]["n_boot"] = 20
    params["evaluate"]["n_worst"] = 1
    params["tracking"]["enabled"] = False
    (p / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    make_demo(p / "demo", params["demo"])
    for name, extra in (("Aariz.zip", b"first"), ("Aariz2.zip", b"second")):  # two releases to swap between
        with zipfile.ZipFile(p / name, "w") as zf:
            root = p / "demo" / "aariz"
            for f in sorted(root.rglob("*")):
                zf.write(f, f.relative_to(root).as_posix())
            zf.writestr("Aariz/Readme.txt", extra)
    yield p
    if TABLE:
        print("\n| case | expected | seen |\n| --- | --- | --- |")
        for row in TABLE:
            print("| " + " | ".join(row) + " |")


# --------------------------------------------------------------------------- what "whole" means per writer
def _check_index(p: Path) -> str:
    from cephalo.index import read_index

    df = read_index(p / "results" / "index.parquet")
    json.loads((p / "results" / "quality" / "quality.json").read_text())
    return f"{len(df)} rows"


def _check_variant(p: Path) -> str:
    from cephalo.preprocess import load_variant

    v = load_variant(p / "results" / "variant")
    assert int(np.asarray(v.images).astype(np.int64).sum()) > 0 and len(v.image_ids) == len(v.images)
    return f"{len(v.image_ids)} images"


def _check_model(p: Path) -> str:
    from cephalo.models import load_checkpoint

    for f in ("best.pt", "last.pt"):
        load_checkpoint(p / "results" / "model" / f)
    assert (p / "results" / "model" / "history.csv").read_text().count("\n") >= 2
    return "best.pt, last.pt load"


def _check_eval(p: Path) -> str:
    import pandas as pd

    d = p / "results" / "eval"
    m = json.loads((d / "metrics.json").read_text())
    pd.read_parquet(d / "predictions.parquet")
    assert m["overall"]["n_images"] > 0
    return f"metrics of {m['overall']['n_images']} images"


def _check_download(p: Path) -> str:
    from cephalo.datasets.fetch.layout import check_release_layout
    from cephalo.datasets.fetch.spec import PROVENANCE_FILE

    dest = p / "resources" / "raw"
    json.loads((dest / PROVENANCE_FILE).read_text())
    check_release_layout("aariz", dest)
    return f"{sum(1 for _ in dest.rglob('*'))} entries"


PARAMS = ["--params", "params.yaml"]
WRITERS = {
    "index": (
        [
            "index",
            "--dataset",
            "isbi2015",
            "--root",
            "demo/isbi2015",
            "--out",
            "results/index.parquet",
            "--report",
            "results/quality",
            *PARAMS,
        ],
        _check_index,
        [],
    ),
    "preprocess": (
        [
            "preprocess",
            "--index",
            "results/index.parquet",
            "--variant",
            "letterbox128",
            "--out",
            "results/variant",
            "--force",
            "--no-progress",
            *PARAMS,
        ],
        _check_variant,
        ["index"],
    ),
    "train checkpoint": (
        [
            "train",
            "--data",
            "results/variant",
            "--out",
            "results/model",
            "--stage",
            "source",
            "--restart",
            "--no-progress",
            *PARAMS,
        ],
        _check_model,
        ["index", "preprocess"],
    ),
    "evaluate": (
        [
            "evaluate",
            "--model",
            "results/model/best.pt",
            "--data",
            "results/variant",
            "--split",
            "test1",
            "--out",
            "results/eval",
            *PARAMS,
        ],
        _check_eval,
        ["index", "preprocess", "train checkpoint"],
    ),
    "download unpack": (
        ["download", "aariz", "--archive", "Aariz.zip", "--out", "resources/raw", "--force", "--no-progress", *PARAMS],
        _check_download,
        [],
    ),
}


def _args(name: str, p: Path) -> list[str]:
    args = list(WRITERS[name][0])
    if name != "download unpack":
        return args
    # a download of the release already in place does nothing: always fetch the other of two archives
    sha = {a: hashlib.sha256((p / a).read_bytes()).hexdigest() for a in ("Aariz.zip", "Aariz2.zip")}
    try:
        have = json.loads((p / "resources" / "raw" / ".cephalo-download.json").read_text())["sha256"]
        have = str(have).removeprefix("sha256:")  # the record names the algorithm
    except (OSError, ValueError, KeyError):
        have = None
    archive = "Aariz2.zip" if have == sha["Aariz.zip"] else "Aariz.zip"
    args[args.index("--archive") + 1] = archive
    return args + ["--known-hash", "sha256:" + sha[archive]]


@pytest.mark.parametrize("writer", list(WRITERS))
def test_writer_killed_anywhere_keeps_its_output_whole_and_leaves_no_debris(project, writer):
    p = project
    _, check, needs = WRITERS[writer]
    for dep in needs:  # inputs (built once, without faults)
        if not _done(p, dep):
            _run(_args(dep, p), p)
    duration = _run(_args(writer, p), p)  # the "old" output
    check(p)
    rng = random.Random(f"{SEED}-{writer}")
    cases = [
        ("before the 1st commit", "replace:1", None),
        ("right after the 1st commit", "replace+:1", None),
        ("before the 2nd commit", "replace:2", None),
    ]
    cases += [
        (f"at {d:.1f} s (random)", None, d) for d in sorted(rng.uniform(0.3, 1.0) * duration for _ in range(N_RANDOM))
    ]
    for label, fault, delay in cases:
        proc = subprocess.Popen(
            _cmd(_args(writer, p)), cwd=p, env=_env(fault), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        if delay is not None:
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=600)
        killed = proc.returncode == -signal.SIGKILL
        left = _debris(p)
        seen = check(p)  # old or new output, whole, right after the kill
        _run(_args(writer, p), p)  # the next run
        check(p)
        after = _debris(p)
        assert not after, (writer, label, after)
        status = "killed" if killed else f"finished first (exit {proc.returncode})"
        TABLE.append(
            (
                f"{writer}: SIGKILL {label}",
                "output whole (old or new); no temporary after the next run",
                f"{status}; output whole ({seen}); {len(left)} temporar{'y' if len(left) == 1 else 'ies'} "
                f"after the kill, 0 after the next run",
            )
        )
        assert killed or proc.returncode == 0, err[-2000:]
    # the swept temporaries were real: at least one kill left one behind
    assert any(w.startswith(writer) and "0 temporaries after the kill" not in s for w, _, s in TABLE), TABLE


def _done(p: Path, name: str) -> bool:
    try:
        WRITERS[name][1](p)
        return True
    except Exception:
        return False


# --------------------------------------------------------------------------- full disk, read-only, vanished file
@pytest.fixture
def tmpfs(tmp_path):
    """A 512 KiB tmpfs (root only; skipped with the reason where it cannot be mounted)."""
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount(8) here")

    def mount(opts: str) -> Path:
        d = mnt / opts.replace(",", "_").replace("=", "")
        d.mkdir()
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(d)], capture_output=True, text=True)
        if p.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {p.stderr.strip()}")
        mounted.append(d)
        return d

    mounted: list[Path] = []
    yield mount
    for d in mounted:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


def _one_line_error(p: subprocess.CompletedProcess, *needles: str) -> str:
    full = p.stderr.strip()
    assert p.returncode == 1, (p.returncode, full[-3000:])
    # progress bars may precede it; the error itself is one line, and no traceback
    assert "Traceback" not in full and full.count("cephalo: error: ") == 1, full[-3000:]
    err = full.splitlines()[-1]
    assert err.startswith("cephalo: error: "), full[-3000:]
    for n in needles:
        assert n in err, (n, err)
    return err


def _cephalo(args: list[str], cwd: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run(_cmd(args), cwd=cwd, env={**_env(), **env}, capture_output=True, text=True, timeout=600)


def test_preprocess_on_a_full_disk_is_one_line_exit_1_and_leaves_nothing(project, tmpfs):
    p = project
    if not _done(p, "index"):
        _run(_args("index", p), p)
    disk = tmpfs("size=512k")
    out = disk / "variant"
    res = _cephalo(
        [
            "preprocess",
            "--index",
            "results/index.parquet",
            "--variant",
            "letterbox256",
            "--out",
            str(out),
            "--no-progress",
            *PARAMS,
        ],
        p,
    )
    err = _one_line_error(res, str(disk), "No space left on device", "ENOSPC")
    assert "Bus error" not in err and list(disk.iterdir()) == [], list(disk.iterdir())
    TABLE.append(
        (
            "preprocess: 512 KiB tmpfs (cache needs 590 KiB)",
            "one error line naming the path, exit 1, nothing left",
            f"exit {res.returncode}: `...{err[-70:]}`; folder empty",
        )
    )


def test_index_on_a_full_disk_and_on_a_read_only_folder_is_one_line_exit_1(project, tmpfs):
    p = project
    disk = tmpfs("size=512k")
    # leave a few KiB: the index write fails part-way
    with open(disk / "filler", "wb") as f, contextlib.suppress(OSError):
        f.write(b"\0" * (512 << 10))
    args = [
        "index",
        "--dataset",
        "isbi2015",
        "--root",
        "demo/isbi2015",
        "--out",
        str(disk / "index.parquet"),
        "--report",
        str(disk / "quality"),
        *PARAMS,
    ]
    res = _cephalo(args, p)
    err = _one_line_error(res, str(disk), "ENOSPC")
    assert sorted(x.name for x in disk.iterdir()) == ["filler"] or not _debris(disk), list(disk.iterdir())
    assert not _debris(disk) and not (disk / "index.parquet").exists()
    TABLE.append(
        (
            "index: full tmpfs",
            "one error line naming the path, exit 1, nothing partial",
            f"exit {res.returncode}: `...{err[-70:]}`; no index, no temporary",
        )
    )
    ro = tmpfs("ro,size=64k")
    args = [
        "index",
        "--dataset",
        "isbi2015",
        "--root",
        "demo/isbi2015",
        "--out",
        str(ro / "index.parquet"),
        "--report",
        str(ro / "quality"),
        *PARAMS,
    ]
    res = _cephalo(args, p)
    err = _one_line_error(res, str(ro), "Read-only file system", "EROFS")
    TABLE.append(
        (
            "index: read-only output folder",
            "one error line naming the path, exit 1",
            f"exit {res.returncode}: `...{err[-70:]}`",
        )
    )


def test_an_image_deleted_under_a_running_index_is_one_line_exit_1_and_nothing_written(project, tmp_path):
    p = project
    work = tmp_path / "isbi"
    shutil.copytree(p / "demo" / "isbi2015", work)
    out = tmp_path / "out" / "index.parquet"
    res = _cephalo(
        [
            "index",
            "--dataset",
            "isbi2015",
            "--root",
            str(work),
            "--out",
            str(out),
            "--report",
            str(tmp_path / "out" / "quality"),
            *PARAMS,
        ],
        p,
        FAULT_DELETE_AT="3",
    )
    err = _one_line_error(res, str(work))
    assert not out.exists() and not _debris(tmp_path)
    TABLE.append(
        (
            "index: an image deleted while indexing",
            "one error line naming the file, exit 1, no index",
            f"exit {res.returncode}: `...{err[-90:]}`; no index, no temporary",
        )
    )
