"""benchmarks/peer_landmarker.py: the cephalo-vs-landmarker side by side (report helpers, metric
cross-check with landmarker's own point_error, and the whole smoke run).

The landmarker side runs in its own environment, ``.venv-peer`` (benchmarks/peer/setup.sh); the
tests that need it skip where it is absent, as in CI.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import load_script

REPO = Path(__file__).resolve().parents[1]
DRIVER = REPO / "benchmarks" / "peer_landmarker.py"
PEER_SIDE = REPO / "benchmarks" / "peer" / "landmarker_side.py"
PEER_PYTHON = REPO / ".venv-peer" / "bin" / "python"

peer = load_script(DRIVER, "cephalo_bench_peer")


def _need_peer_env() -> None:
    if not PEER_PYTHON.exists():
        pytest.skip(f"no landmarker environment at {PEER_PYTHON} (run benchmarks/peer/setup.sh)")


def test_time_to_reach_first_mark_at_or_below_target():
    rows = [
        {"trained_s": 60.0, "metrics": {"mre_mm": 3.1}},
        {"trained_s": 120.0, "metrics": {"mre_mm": 1.9}},
        {"trained_s": 180.0, "metrics": {"mre_mm": 2.2}},
        {"trained_s": 240.0, "metrics": {"mre_mm": 1.4}},
    ]
    assert peer.time_to_reach(rows, 2.0) == 120.0
    assert peer.time_to_reach(rows, 1.5) == 240.0
    assert peer.time_to_reach(rows, 1.0) is None
    assert peer.time_to_reach([{"trained_s": None, "path": None}], 2.0) is None


def test_score_uses_cephalo_metrics_in_mm():
    gt = np.zeros((2, 3, 2))
    pred = gt.copy()
    pred[..., 0] += 10.0  # 10 px at 0.1 mm/px = 1 mm
    pred[1, 2, 1] += 30.0  # one point further: hypot(10, 30) px
    s = peer.score(pred, gt, np.full((2, 2), 0.1))
    expect = (5 * 1.0 + np.hypot(1.0, 3.0)) / 6
    assert s["mre_mm"] == pytest.approx(expect)
    assert s["sdr_2mm"] == pytest.approx(5 / 6)
    assert s["n"] == 6 and s["n_missing"] == 0


def _report(ok: bool = True) -> dict:
    mark = {"mark": 1, "mark_s": 60.0, "trained_s": 55.0, "epoch": 1, "metrics": {"mre_mm": 2.5, "sdr_2mm": 0.5}}
    side = {
        "model": "m",
        "input": "i",
        "decoding": "d",
        "epochs_completed": 1,
        "epochs_planned": 2,
        "marks": [mark],
        "final": {"mre_mm": 2.5, "sdr_2mm": 0.5},
        "time_to_2.0mm_s": None,
        "time_to_1.5mm_s": None,
    }
    lmk = {
        **side,
        "recipe": {"model": "SCN", "input": "256", "decoding": "local_soft_argmax"},
        "torch": "2.x",
        "time_to_2.0mm_s": 55.0,
        "final": {"mre_mm": 1.9, "sdr_2mm": 0.6},
    }
    return {
        "date": "20260101-000000",
        "command": "python benchmarks/peer_landmarker.py --smoke",
        "smoke": True,
        "budget_min": 1.0,
        "machine": {"cpu": "Test CPU", "cores": 2, "torch": "2.x"},
        "landmarker_version": "0.4.1",
        "data": {"n_train": 12, "n_test": 4},
        "cephalo_sec_per_epoch": 10.0,
        "sides": {"cephalo": side, "landmarker": lmk},
        "mre_ratio_landmarker_over_cephalo": 1.9 / 2.5,
        "metric_agreement": {"landmarker": {"point_error_mm": 1.9, "cephalo_mre_mm": 1.9, "abs_diff_mm": 0.0}},
        "metric_agreement_ok": ok,
    }


def test_markdown_table(tmp_path):
    p = tmp_path / "r.md"
    peer.write_markdown(_report(), p)
    md = p.read_text()
    assert "| time to MRE <= 2.0 mm | not reached | 0.9 min (55 s) |" in md
    assert "MRE ratio landmarker / cephalo: **0.76**" in md
    assert "SMOKE RUN" in md and "agree." in md
    peer.write_markdown(_report(ok=False), p)
    assert "**DISAGREE**" in p.read_text()


def test_landmarker_point_error_agrees_with_cephalo(tmp_path):
    """landmarker.metrics.point_error (run in .venv-peer) equals cephalo's MRE on the same points."""
    _need_peer_env()
    rng = np.random.default_rng(0)
    gt = rng.uniform(0, 2000, size=(5, 19, 2))
    pred = gt + rng.normal(0, 25, size=gt.shape)
    spacing = np.array([[0.1, 0.1]] * 4 + [[0.12, 0.08]])  # one anisotropic image
    manifest = {
        "landmark_names": [f"l{i}" for i in range(19)],
        "train": [],
        "test": [
            {"id": str(i), "path": "unused", "xy": gt[i].tolist(), "spacing": spacing[i].tolist()} for i in range(5)
        ],
    }
    (tmp_path / "m.json").write_text(json.dumps(manifest))
    np.save(tmp_path / "p.npy", pred)
    res = subprocess.run(
        [
            str(PEER_PYTHON),
            str(PEER_SIDE),
            "point-error",
            "--manifest",
            str(tmp_path / "m.json"),
            "--pred",
            str(tmp_path / "p.npy"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    theirs = json.loads(res.stdout.strip().splitlines()[-1])["point_error_mm"]
    ours = peer.score(pred, gt, spacing)["mre_mm"]
    assert theirs == pytest.approx(ours, abs=1e-9)


@pytest.mark.slow
def test_smoke_run_end_to_end(tmp_path, shared_data):
    """The whole side by side on 12 + 4 real images, 1 min per side (about 3 min)."""
    _need_peer_env()
    res = subprocess.run(
        [sys.executable, str(DRIVER), "--smoke", "--out", str(tmp_path), "--isbi-root", str(shared_data / "isbi2015")],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=REPO,
    )
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    rep = json.loads(next(tmp_path.glob("peer-landmarker-smoke-*.json")).read_text())
    assert rep["metric_agreement_ok"]
    for name in ("cephalo", "landmarker"):
        side = rep["sides"][name]
        assert len(side["marks"]) == 2
        assert np.isfinite(side["final"]["mre_mm"])
    assert np.isfinite(rep["mre_ratio_landmarker_over_cephalo"])
    assert next(tmp_path.glob("peer-landmarker-smoke-*.md")).read_text().startswith("# Peer side by side")
    assert not list(tmp_path.glob("work-*/**/*.pt"))  # checkpoints removed without --keep-work
