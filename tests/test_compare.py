"""Comparison of evaluated runs: table with CIs, paired Wilcoxon on shared images, CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from cephalo.commands.compare import command
from cephalo.evaluate.compare import compare_runs
from cephalo.evaluate.runner import evaluate_predictions


def _run(tmp_path, name, noise_px, seed, n=10):
    rng = np.random.default_rng(seed)
    gt = rng.uniform(100, 900, size=(n, 5, 2))
    pred = gt + rng.normal(0, noise_px, size=gt.shape)
    out = tmp_path / name
    evaluate_predictions(pred, gt, np.full((n, 2), 0.1), image_ids=[f"{i:03d}" for i in range(n)],
                         names=[f"l{k}" for k in range(5)], out_dir=out, n_boot=200, make_plots=False,
                         label=name, info={"variant": name, "split": "test"})
    return out


def test_compare_table_and_paired_test(tmp_path):
    a = _run(tmp_path, "zero_shot", 40.0, 1)
    b = _run(tmp_path, "fine_tuned", 8.0, 2)
    rows, pairs = compare_runs([a, b])
    assert [r["run"] for r in rows] == ["zero_shot", "fine_tuned"]
    assert rows[0]["mre_mm"] > rows[1]["mre_mm"]
    assert "[" in rows[0]["mre_ci95"]
    assert len(pairs) == 1 and pairs[0]["n_images"] == 10
    assert pairs[0]["n_a_better"] == 0 and pairs[0]["mean_diff_mm"] > 0
    # all 10 differences positive: exact two-sided p = 2 / 2**10
    assert pairs[0]["p_value"] == pytest.approx(2 / 1024)


def test_compare_cli_writes_csv_and_md(tmp_path):
    a = _run(tmp_path, "a", 20.0, 1)
    b = _run(tmp_path, "b", 10.0, 3)
    res = CliRunner().invoke(command, [str(a), str(b), "--out", str(tmp_path / "cmp" / "comparison.csv"),
                                       "--params", str(tmp_path / "none.yaml")])
    assert res.exit_code == 0, res.output
    assert "Wilcoxon" in res.output
    df = pd.read_csv(tmp_path / "cmp" / "comparison.csv")
    assert list(df["run"]) == ["a", "b"]
    assert (tmp_path / "cmp" / "comparison.md").read_text().startswith("## Runs")
    assert (tmp_path / "cmp" / "comparison_pairs.csv").is_file()


def test_compare_bad_folder_is_data_error(tmp_path):
    from cephalo.errors import DataError

    with pytest.raises(DataError, match="metrics.json"):
        compare_runs([tmp_path])
