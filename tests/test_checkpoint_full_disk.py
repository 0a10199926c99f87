"""A checkpoint written to a full disk is one ``cephalo: error:`` line (issue #25, point 5).

``torch.save`` on a full disk raised torch's ``RuntimeError`` ("inline_container.cc ... unexpected
pos") chained onto the file's ``OSError``: two tracebacks instead of the CLI's one line. Tested on
small tmpfs mounts at several free-space levels (root only), and by a writer that raises what
torch raises (everywhere).
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess

import pytest
import torch

from cephalo.errors import CephaloError, CheckpointError
from cephalo.models import ModelMeta, save_checkpoint


def _model_and_meta():
    model = torch.nn.Conv2d(3, 64, 7)  # ~38 KB of weights
    return model, ModelMeta(arch="test", landmark_names=["sella", "nasion"], input_size=(8, 8), heatmap_size=(2, 2))


def _can_mount() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture
def tiny_disk(tmp_path):
    mounted = []

    def mount(size: str):
        d = tmp_path / f"disk{len(mounted)}"
        d.mkdir()
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(d)], capture_output=True, text=True
        )
        if r.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
        mounted.append(d)
        return d

    yield mount
    for d in mounted:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


@pytest.mark.skipif(not _can_mount(), reason="mounting a tmpfs needs root")
@pytest.mark.parametrize("free_kib", [4, 12, 20, 28, 36])
def test_full_tmpfs_is_one_checkpoint_error_and_no_debris(tiny_disk, free_kib):
    disk = tiny_disk("64k")
    with open(disk / "filler", "wb") as f, contextlib.suppress(OSError):  # leave about free_kib KiB
        f.write(b"\0" * ((64 - free_kib) << 10))
    model, meta = _model_and_meta()
    with pytest.raises(CheckpointError) as ei:
        save_checkpoint(disk / "best.pt", model, meta)
    msg = str(ei.value)
    assert "\n" not in msg and str(disk / "best.pt") in msg
    assert "No space left on device [ENOSPC]" in msg, msg
    assert ei.value.__suppress_context__  # no chained torch traceback behind it
    assert sorted(p.name for p in disk.iterdir()) == ["filler"]  # no partial file, no temporary


@pytest.mark.parametrize("raised", ["torch", "oserror"])
def test_torch_write_failure_becomes_one_line(tmp_path, monkeypatch, raised):
    def fake_save(obj, f):
        if raised == "oserror":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 832 vs 726") from None

    monkeypatch.setattr(torch, "save", fake_save)
    model, meta = _model_and_meta()
    with pytest.raises(
        CephaloError,
        match=r"best\.pt: cannot write the checkpoint: No space left on device "
        r"\[ENOSPC\]",
    ):
        save_checkpoint(tmp_path / "best.pt", model, meta)
    assert list(tmp_path.iterdir()) == []


def test_other_errors_pass_through(tmp_path, monkeypatch):
    def fake_save(obj, f):
        raise RuntimeError("something else entirely")

    monkeypatch.setattr(torch, "save", fake_save)
    model, meta = _model_and_meta()
    with pytest.raises(RuntimeError, match="something else"):
        save_checkpoint(tmp_path / "best.pt", model, meta)
