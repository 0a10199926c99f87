"""Comparison of evaluated runs: table with CIs, paired Wilcoxon on shared images, CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from cephalo.commands.compare import command
from cephalo.evaluate.compare import compare_runs, to_markdown
from cephalo.evaluate.runner import EvalContext, EvalData, EvalSettings, evaluate_predictions


def _params(tmp_path):
    """A params file with tracking off (compare logs to MLflow when it is on)."""
    p = tmp_path / "params.yaml"
    p.write_text("tracking:\n  enabled: false\n")
    return p


def _run(tmp_path, name, noise_px, seed, n=10):
    rng = np.random.default_rng(seed)
    gt = rng.uniform(100, 900, size=(n, 5, 2))
    pred = gt + rng.normal(0, noise_px, size=gt.shape)
    out = tmp_path / name
    evaluate_predictions(
        EvalData(
            pred, gt, np.full((n, 2), 0.1), image_ids=[f"{i:03d}" for i in range(n)], names=[f"l{k}" for k in range(5)]
        ),
        out,
        EvalSettings(n_boot=200, make_plots=False),
        EvalContext(label=name, info={"variant": name, "split": "test"}),
    )
    return out


def test_compare_table_and_paired_test(tmp_path):
    a = _run(tmp_path, "zero_shot", 40.0, 1)
    b = _run(tmp_path, "fine_tuned", 8.0, 2)
    rows, pairs = compare_runs([a, b])
    assert [r["run"] for r in rows] == ["zero_shot", "fine_tuned"]
    assert rows[0]["mre_mm/shared"] > rows[1]["mre_mm/shared"]
    assert rows[0]["mre_mm/shared"] == pytest.approx(rows[0]["mre_mm/all"])  # same landmarks in both runs
    assert rows[0]["mre_mm/shared/ci95_lo"] < rows[0]["mre_mm/shared"] < rows[0]["mre_mm/shared/ci95_hi"]
    assert 0 <= rows[1]["sdr_2.0mm/shared"] <= 100 and rows[1]["sdr_2.0mm/shared"] > 1  # percent
    assert len(pairs) == 1 and pairs[0]["n_images"] == 10
    assert pairs[0]["n_a_better"] == 0 and pairs[0]["mean_diff_mm"] > 0
    # all 10 differences positive: exact two-sided p = 2 / 2**10
    assert pairs[0]["p_value"] == pytest.approx(2 / 1024)


def test_compare_cli_writes_csv_and_md(tmp_path):
    a = _run(tmp_path, "a", 20.0, 1)
    b = _run(tmp_path, "b", 10.0, 3)
    res = CliRunner().invoke(
        command, [str(a), str(b), "--out", str(tmp_path / "cmp" / "comparison.csv"), "--params", str(_params(tmp_path))]
    )
    assert res.exit_code == 0, res.output
    assert "Wilcoxon" in res.output
    df = pd.read_csv(tmp_path / "cmp" / "comparison.csv")
    assert list(df["run"]) == ["a", "b"]
    assert "## Runs over the 5 landmarks all runs share" in (tmp_path / "cmp" / "comparison.md").read_text()
    assert (tmp_path / "cmp" / "comparison_pairs.csv").is_file()


def test_compare_bad_folder_is_data_error(tmp_path):
    from cephalo.errors import DataError

    with pytest.raises(DataError, match="metrics.json"):
        compare_runs([tmp_path])


def _run_lm(tmp_path, name, names, err_px, n=6, annotators=None, spacing=0.1):
    """A run whose landmark k is off by err_px[k] px along x on every image (hand-computable MRE)."""
    gt = np.zeros((n, len(names), 2)) + 100.0
    pred = gt.copy()
    pred[..., 0] += np.asarray(err_px, dtype=float)
    out = tmp_path / name
    evaluate_predictions(
        EvalData(pred, gt, np.full((n, 2), spacing), image_ids=[f"{i:03d}" for i in range(n)], names=names),
        out,
        EvalSettings(n_boot=50, make_plots=False),
        EvalContext(label=name, info={"variant": "v", "split": "test"}, annotators=annotators),
    )
    return out


def test_compare_over_shared_landmarks_when_sets_differ(tmp_path):
    """A 3-landmark zero-shot run vs a 5-landmark fine-tuned one: /shared is over the 3 common landmarks."""
    names5 = ["a", "b", "c", "d", "e"]
    zs = _run_lm(tmp_path, "zeroshot", ["a", "b", "c"], [10, 10, 10])  # 1.0 mm on a, b, c
    ft = _run_lm(tmp_path, "finetuned", names5, [2, 2, 2, 50, 50])  # 0.2 mm shared, 5.0 mm new
    rows, _ = compare_runs([zs, ft])
    z, f = rows
    assert z["n_landmarks/shared"] == f["n_landmarks/shared"] == 3
    assert (z["n_landmarks/all"], f["n_landmarks/all"]) == (3, 5)
    assert z["mre_mm/shared"] == pytest.approx(1.0) and f["mre_mm/shared"] == pytest.approx(0.2)
    # over all its landmarks the fine-tuned run looks worse (new landmarks), which /shared corrects
    assert f["mre_mm/all"] == pytest.approx((3 * 0.2 + 2 * 5.0) / 5)
    assert f["sdr_2.0mm/shared"] == pytest.approx(100.0) and f["sdr_2.0mm/all"] == pytest.approx(60.0)
    md = to_markdown(rows, [])
    assert "over the 3 landmarks all runs share" in md and "| finetuned | 5 | 2.12" in md


def test_human_like_with_like_hand_computed(tmp_path):
    """Two annotators 1 mm apart along x; the model sits on annotator A.

    annotator vs annotator = 1.0 mm; each annotator vs their mean = 0.5 mm; the model vs each
    annotator = (0 + 1) / 2 = 0.5 mm; the model vs the mean = 0.5 mm.
    """
    n, names = 4, ["a", "b"]
    a = np.full((n, 2, 2), 100.0)
    b = a.copy()
    b[..., 0] += 10.0  # 10 px x 0.1 mm/px = 1 mm
    from cephalo.evaluate.human import like_with_like, pooled_mre

    res = like_with_like(a, {"A": a, "B": b, "mean": (a + b) / 2}, np.full((n, 2), 0.1), names)
    assert res["annotators"] == ["A", "B"]
    assert res["annotator_vs_annotator"]["overall"]["mre_mm"] == pytest.approx(1.0)
    assert res["annotator_vs_mean"]["overall"]["mre_mm"] == pytest.approx(0.5)
    assert res["model_vs_each"]["overall"]["mre_mm"] == pytest.approx(0.5)
    assert res["model_vs_each"]["per_annotator"] == {"A": pytest.approx(0.0), "B": pytest.approx(1.0)}
    assert res["model_vs_mean"]["overall"]["mre_mm"] == pytest.approx(0.5)
    assert pooled_mre(res["annotator_vs_annotator"], ["a"]) == pytest.approx(1.0)
    assert like_with_like(a, {"A": a}, np.full((n, 2), 0.1), names) is None
    # through a run and the comparison table: human figures over the shared landmarks
    out = _run_lm(tmp_path, "r", names, [5, 5], n=n, annotators={"A": a, "B": b})
    rows, _ = compare_runs([out])
    assert rows[0]["human_mre_mm/shared"] == pytest.approx(1.0)
    assert rows[0]["human_vs_mean_mre_mm/shared"] == pytest.approx(0.5)
    # prediction = a + 0.5 mm: vs A 0.5 mm, vs B 0.5 mm
    assert rows[0]["vs_each_mre_mm/shared"] == pytest.approx(0.5)


def test_pooled_mre_weights_by_counts():
    from cephalo.evaluate.human import pooled_mre

    block = {"per_landmark": {"a": 1.0, "b": 4.0, "c": float("nan")}, "per_landmark_n": {"a": 3, "b": 1, "c": 0}}
    assert pooled_mre(block, ["a", "b", "c"]) == pytest.approx((3 * 1.0 + 4.0) / 4)
    assert pooled_mre(None, ["a"]) is None and pooled_mre(block, ["c"]) is None


def test_cli_writes_offline_html_plots_and_compact_summaries(tmp_path):
    import base64
    import json
    import re

    a = _run_lm(tmp_path, "zeroshot-letterbox256", ["a", "b", "c"], [10, 12, 14])
    b = _run_lm(tmp_path, "finetuned-letterbox256", ["a", "b", "c", "d"], [2, 3, 4, 30])
    res = CliRunner().invoke(
        command,
        [
            str(a),
            str(b),
            "--out",
            str(tmp_path / "cmp" / "comparison"),
            "--summary-dir",
            str(tmp_path / "summary"),
            "--params",
            str(_params(tmp_path)),
        ],
    )
    assert res.exit_code == 0, res.output
    page = (tmp_path / "cmp" / "comparison.html").read_text()
    # self-contained: no network reference of any kind; images embedded as valid PNGs
    assert not re.search(r"(src|href)\s*=\s*['\"](https?:|//)", page) and "<script" not in page
    imgs = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    assert len(imgs) == 2 and all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in imgs)
    assert "over the 3 landmarks all runs share" in page
    for f in ("sdr_curves.png", "per_landmark.png"):
        assert (tmp_path / "cmp" / "comparison_plots" / f).read_bytes()[:4] == b"\x89PNG"
    s = json.loads((tmp_path / "summary" / "finetuned-letterbox256.json").read_text())
    assert s["mre_mm/shared"] == pytest.approx(0.3)
    assert len(s) <= 4  # a `dvc metrics show` row fits 120 columns (tests/test_team_dvc.py)


def test_provenance_differences_warn(tmp_path):
    import json

    from cephalo.evaluate.compare import load_run, provenance_warnings

    a = _run_lm(tmp_path, "a", ["x"], [1])
    b = _run_lm(tmp_path, "b", ["x"], [1])
    base = {
        "cephalo_version": "0.1.0",
        "git_commit": "abc",
        "git_dirty": False,
        "python": "3.11.7",
        "packages": {"torch": "2.14.1"},
        "cpu_model": "AMD EPYC",
        "gpu_name": None,
        "threads": 2,
    }
    for d, prov in ((a, base), (b, {**base, "git_commit": "def", "packages": {"torch": "2.15.0"}})):
        m = json.loads((d / "metrics.json").read_text())
        m["provenance"] = prov
        (d / "metrics.json").write_text(json.dumps(m))
    w = provenance_warnings([load_run(a), load_run(b)])
    assert any("different code (git_commit)" in x for x in w)
    assert any("packages.torch" in x for x in w)
    assert provenance_warnings([load_run(a), load_run(a)]) == []


def test_per_landmark_table_hand_computed(tmp_path):
    """Landmark k off by err_px[k] px at 0.1 mm/px: per-landmark MRE = err_px / 10 mm; shared landmarks
    first, a landmark a run does not score is empty; the markdown lists every cell."""
    from cephalo.evaluate.compare import per_landmark_markdown, per_landmark_table

    a = _run_lm(tmp_path, "a", ["sella", "nasion", "menton"], [10.0, 20.0, 30.0])
    b = _run_lm(tmp_path, "b", ["nasion", "sella"], [5.0, 15.0])
    rows, _ = compare_runs([a, b])
    names, table, human, human_run = per_landmark_table(rows)
    assert names == ["sella", "nasion", "menton"]
    np.testing.assert_allclose(table["a"], [1.0, 2.0, 3.0])
    np.testing.assert_allclose(table["b"][:2], [1.5, 0.5])
    assert np.isnan(table["b"][2]) and human_run is None and all(np.isnan(human))
    md = per_landmark_markdown(rows)
    assert "| sella | 1.00 | 1.50 |" in md and "| menton | 3.00 | - |" in md and "human" not in md
    assert "## Per landmark" in to_markdown(rows, [])
