"""cephalo.public_hrnet.hub and `cephalo fetch-model`: local files and a pre-populated HF cache, no network."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from cephalo.errors import CheckpointError, ConfigError, DownloadError
from cephalo.public_hrnet.hub import (
    HF_FILENAME,
    HF_REPO_ID,
    ModelSource,
    UnpinnedRevisionWarning,
    fetch_model,
    resolve_checkpoint,
)

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.fixture(scope="module")
def ckpt_bytes(tmp_path_factory) -> bytes:
    """A real (tiny) torch.save file shaped like the public training dict."""
    torch = pytest.importorskip("torch")
    p = tmp_path_factory.mktemp("ck") / "best_model.pth"
    torch.save(
        {
            "epoch": 3,
            "model_state_dict": {"final_layer.weight": torch.zeros(19, 32, 1, 1)},
            "config": {"INPUT": {"IMAGE_SIZE": [768, 768], "HEATMAP_SIZE": [192, 192]}, "MODEL": {"NUM_JOINTS": 19}},
        },
        p,
    )
    return p.read_bytes()


def make_hf_cache(
    root: Path, data: bytes, *, commit: str = COMMIT, repo_id: str = HF_REPO_ID, filename: str = HF_FILENAME
) -> Path:
    """The Hub cache layout that hf_hub_download resolves offline."""
    repo = root / ("models--" + repo_id.replace("/", "--"))
    blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
    blob.parent.mkdir(parents=True)
    blob.write_bytes(data)
    snap = repo / "snapshots" / commit / filename
    snap.parent.mkdir(parents=True)
    os.symlink(os.path.relpath(blob, snap.parent), snap)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return root


def test_local_file(tmp_path, ckpt_bytes):
    f = tmp_path / "best_model.pth"
    f.write_bytes(ckpt_bytes)
    r = resolve_checkpoint(f)
    assert r.path == f and r.kind == "local" and r.commit is None
    assert r.sha256 == hashlib.sha256(ckpt_bytes).hexdigest() and r.size == len(ckpt_bytes)
    r2 = resolve_checkpoint({"kind": "local", "path": str(f), "sha256": "sha256:" + r.sha256.upper()})
    assert r2.sha256 == r.sha256
    with pytest.raises(CheckpointError, match="sha256 mismatch") as ei:
        resolve_checkpoint({"kind": "local", "path": str(f), "sha256": "0" * 64})
    assert str(f) in str(ei.value)


@pytest.mark.parametrize(
    "content, match",
    [
        (b"", "empty file"),
        (b"<!DOCTYPE html><html>Sign in</html>", "HTML page"),
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\n", "Git LFS pointer"),
        (b"hello", "not a torch checkpoint"),
    ],
)
def test_local_file_not_a_checkpoint(tmp_path, content, match):
    f = tmp_path / "best_model.pth"
    f.write_bytes(content)
    with pytest.raises(CheckpointError, match=match) as ei:
        resolve_checkpoint(f)
    assert str(f) in str(ei.value)


def test_local_missing(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        resolve_checkpoint({"kind": "local", "path": str(tmp_path / "nope.pth")})


def test_source_params_validation():
    assert ModelSource.from_params(None) == ModelSource()
    assert ModelSource.from_params({"revision": None, "repo_id": None}).repo_id == HF_REPO_ID
    with pytest.raises(ConfigError, match="unknown key.*'repo'"):
        ModelSource.from_params({"repo": "x"})
    with pytest.raises(ConfigError, match="kind 'ftp' unknown"):
        ModelSource.from_params({"kind": "ftp"})
    with pytest.raises(ConfigError, match="path is not set"):
        ModelSource.from_params({"kind": "local"})
    with pytest.raises(ConfigError, match="64 hex"):
        ModelSource.from_params({"sha256": "abc"})


def test_hf_cache_offline_by_commit_and_by_branch(tmp_path, ckpt_bytes):
    cache = make_hf_cache(tmp_path / "hf", ckpt_bytes)
    r = resolve_checkpoint(ModelSource(revision=COMMIT, cache_dir=str(cache)))
    assert r.path.read_bytes() == ckpt_bytes
    assert r.commit == COMMIT and r.repo_id == HF_REPO_ID and r.revision == COMMIT
    assert str(r.path).startswith(str(cache))
    # branch name: resolved through refs/main, but warns that it is not pinned
    with pytest.warns(UnpinnedRevisionWarning, match="not a commit hash"):
        r = resolve_checkpoint({"cache_dir": str(cache)})
    assert r.commit == COMMIT and r.revision == "main"


def test_hf_offline_not_cached_is_clear(tmp_path, ckpt_bytes):
    cache = make_hf_cache(tmp_path / "hf", ckpt_bytes)
    other = "f" * 40
    with pytest.raises(DownloadError, match="offline mode is on") as ei:
        resolve_checkpoint(ModelSource(revision=other, cache_dir=str(cache)))
    msg = str(ei.value)
    assert HF_REPO_ID in msg and other in msg and str(cache) in msg and "model.source.path" in msg
    with pytest.raises(DownloadError, match="not found in"):
        resolve_checkpoint(ModelSource(revision=COMMIT, cache_dir=str(tmp_path / "empty")))


def test_hf_cached_html_is_refused(tmp_path):
    cache = make_hf_cache(tmp_path / "hf", b"<html><body>rate limited</body></html>")
    with pytest.raises(CheckpointError, match="HTML page"):
        resolve_checkpoint(ModelSource(revision=COMMIT, cache_dir=str(cache)))


def test_fetch_model_copy_and_link_atomic(tmp_path, ckpt_bytes, monkeypatch):
    cache = make_hf_cache(tmp_path / "hf", ckpt_bytes)
    src = ModelSource(revision=COMMIT, cache_dir=str(cache))
    out = tmp_path / "models" / "public.pth"
    r = fetch_model(src, out)
    assert out.read_bytes() == ckpt_bytes and not out.is_symlink()
    assert out.stat().st_ino != r.path.resolve().stat().st_ino
    out2 = tmp_path / "models" / "linked.pth"
    fetch_model(src, out2, link=True)
    assert out2.stat().st_ino == r.path.resolve().stat().st_ino

    # disk full while copying: DownloadError, old file intact, no temp file
    import errno
    import shutil

    out.write_bytes(b"previous")

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copyfile", full)
    with pytest.raises(DownloadError, match="disk full") as ei:
        fetch_model(src, out)
    assert str(out) in str(ei.value)
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in out.parent.iterdir()) == ["linked.pth", "public.pth"]


@pytest.fixture(scope="module")
def public_ckpt_bytes(tmp_path_factory, public_state) -> bytes:
    """A whole public-format HRNet-W32 file (every tensor of keys.json): what `fetch-model` accepts."""
    import torch

    from cephalo.public_hrnet.reference import public_training_dict

    p = tmp_path_factory.mktemp("pub") / "best_model.pth"
    torch.save(public_training_dict(public_state), p)
    return p.read_bytes()


def test_cli_fetch_model(tmp_path, public_ckpt_bytes):
    from cephalo.cli import main

    ckpt_bytes = public_ckpt_bytes
    cache = make_hf_cache(tmp_path / "hf", ckpt_bytes)
    params = tmp_path / "params.yaml"
    params.write_text(f"model:\n  source:\n    kind: huggingface\n    revision: '{COMMIT}'\n    cache_dir: '{cache}'\n")
    out = tmp_path / "models" / "hf_hrnet_w32.pth"
    r = CliRunner().invoke(main, ["fetch-model", "--out", str(out), "--params", str(params)])
    assert r.exit_code == 0, r.output
    assert out.read_bytes() == ckpt_bytes
    assert COMMIT in r.output and hashlib.sha256(ckpt_bytes).hexdigest()[:16] in r.output

    local = tmp_path / "mine.pth"
    local.write_bytes(ckpt_bytes)
    out2 = tmp_path / "m2.pth"
    r = CliRunner().invoke(
        main, ["fetch-model", "--out", str(out2), "--checkpoint", str(local), "--params", str(params)]
    )
    assert r.exit_code == 0, r.output
    assert out2.read_bytes() == ckpt_bytes

    # offline, nothing cached: exit 1 with one line, nothing written
    params.write_text(f"model:\n  source:\n    revision: '{'e' * 40}'\n    cache_dir: '{tmp_path / 'empty'}'\n")
    import subprocess
    import sys

    out3 = tmp_path / "m3.pth"
    p = subprocess.run(
        [
            sys.executable,
            "-c",
            "from cephalo.cli import run; run()",
            "fetch-model",
            "--out",
            str(out3),
            "--params",
            str(params),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert p.returncode == 1, p.stderr
    errs = [ln for ln in p.stderr.splitlines() if ln.startswith("cephalo: error:")]
    assert len(errs) == 1 and "offline mode is on" in errs[0]
    assert not out3.exists()


def test_cli_fetch_model_refuses_a_checkpoint_missing_a_tensor(tmp_path, public_state):
    """A damaged public file (one tensor missing) stops `fetch-model` with one line naming the file
    and the key, and writes nothing (instead of failing later in every stage that reads it)."""
    import subprocess
    import sys

    import torch

    from cephalo.public_hrnet.reference import public_training_dict

    state = dict(public_state)
    del state["stage4.2.fuse_layers.1.0.0.0.weight"]
    bad = tmp_path / "best_model.pth"
    torch.save(public_training_dict(state), bad)
    out = tmp_path / "models" / "source.pt"
    (tmp_path / "none.yaml").write_text("{}\n")
    p = subprocess.run(
        [
            sys.executable,
            "-c",
            "from cephalo.cli import run; run()",
            "fetch-model",
            "--out",
            str(out),
            "--checkpoint",
            str(bad),
            "--params",
            str(tmp_path / "none.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 1, p.stderr
    errs = [ln for ln in p.stderr.splitlines() if ln.startswith("cephalo: error:")]
    assert len(errs) == 1 and str(bad) in errs[0] and "stage4.2.fuse_layers.1.0.0.0.weight" in errs[0], p.stderr
    assert not out.parent.exists() or list(out.parent.iterdir()) == []
