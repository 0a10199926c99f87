"""The README's generated results blocks: written from results/, checked against a fresh run."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cephalo.commands.compare import command as compare_command
from cephalo.evaluate.runner import EvalContext, EvalData, EvalSettings, evaluate_predictions
from helpers import load_script

REPO = Path(__file__).resolve().parents[1]
rr = load_script(REPO / "scripts" / "readme_results.py", "readme_results")


def _params(tmp_path):
    """A params file with tracking off (compare logs to MLflow when it is on)."""
    p = tmp_path / "params.yaml"
    p.write_text("tracking:\n  enabled: false\n")
    return p


def _results(tmp_path: Path, cpu: str = "Test CPU 9000", shift_px: float = 0.0) -> Path:
    res = tmp_path / "results"
    rng = np.random.default_rng(0)
    n, names = 8, ["a", "b", "c"]
    gt = rng.uniform(100, 200, size=(n, 4, 2))
    ann_a, ann_b = gt.copy(), gt + np.array([6.0, 0.0])
    for run, lms, noise in (("zero_shot-v", names, 20.0), ("finetune-v", names + ["d"], 4.0)):
        k = len(lms)
        pred = gt[:, :k] + rng.normal(0, noise, size=(n, k, 2)) + shift_px
        out = res / "eval" / run
        evaluate_predictions(
            EvalData(
                pred,
                (ann_a[:, :k] + ann_b[:, :k]) / 2,
                np.full((n, 2), 0.1),
                image_ids=[f"{i:03d}" for i in range(n)],
                names=lms,
            ),
            out,
            EvalSettings(n_boot=100, make_plots=False),
            EvalContext(
                label=run,
                info={"variant": "v", "split": "test", "provenance": {"cpu_model": cpu, "threads": 2}},
                annotators={"A": ann_a[:, :k], "B": ann_b[:, :k]},
            ),
        )
    r = CliRunner().invoke(
        compare_command,
        [
            str(res / "eval" / "zero_shot-v"),
            str(res / "eval" / "finetune-v"),
            "--out",
            str(res / "comparison"),
            "--params",
            str(_params(tmp_path)),
        ],
    )
    assert r.exit_code == 0, r.output
    return res


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return _results(tmp_path_factory.mktemp("base"))


def test_write_then_check_is_current_and_idempotent(tmp_path, base):
    res = base
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n<!-- results:demo:begin -->\nold\n<!-- results:demo:end -->\n\nafter\n")
    assert rr.main(["--block", "demo", "--results", str(res), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("# x\n") and text.rstrip().endswith("after") and "old" not in text
    assert "Machine: Test CPU 9000, 2 torch threads" in text
    assert "| finetune-v | 8 | 3 / 4 |" in text
    assert "Against each annotator, fine-tuned (v)" in text and "annotators are 0.60 mm apart" in text
    assert rr.main(["--block", "demo", "--results", str(res), "--readme", str(readme), "--check"]) == 0
    assert rr.main(["--block", "demo", "--results", str(res), "--readme", str(readme)]) == 0
    assert readme.read_text() == text


def test_check_exact_on_the_same_cpu(tmp_path, base):
    res = base
    readme = tmp_path / "README.md"
    readme.write_text("")
    rr.main(["--block", "demo", "--results", str(res), "--readme", str(readme)])
    # the same machine: one changed digit in the table is a failure
    text = readme.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| finetune-v"))
    cells = row.split(" | ")
    cells[3] = cells[3].replace(cells[3][:4], f"{float(cells[3][:4]) + 0.01:.2f}", 1)
    readme.write_text(text.replace(row, " | ".join(cells)))
    assert rr.main(["--block", "demo", "--results", str(res), "--readme", str(readme), "--check"]) == 1
    # ... but the commit the block was generated at is not a figure (CI checks at a later commit)
    readme.write_text(re.sub(r" at [0-9a-f?]+(\+dirty)?\.$", " at 0123456789+dirty.", text, flags=re.M))
    assert "at 0123456789+dirty." in readme.read_text()
    assert rr.main(["--block", "demo", "--results", str(res), "--readme", str(readme), "--check"]) == 0


def test_check_tolerance_on_another_cpu(tmp_path, base):
    """Another CPU: figures may move within their own CI half-width, counts and human figures may not."""
    block = rr.extract(_render(base), "demo")
    fresh_close = rr.extract(_render(_results(tmp_path / "b", cpu="Other CPU", shift_px=0.01)), "demo")
    assert rr.compare_blocks(block, fresh_close, "Other CPU") == []
    fresh_far = rr.extract(_render(_results(tmp_path / "c", cpu="Other CPU", shift_px=30.0)), "demo")
    problems = rr.compare_blocks(block, fresh_far, "Other CPU")
    assert any("beyond the CI half-width" in p for p in problems)
    data = json.loads(rr.DATA.search(block).group(1))
    data["runs"][0]["n_landmarks/shared"] = 99
    assert any(
        "n_landmarks/shared" in p
        for p in rr.compare_blocks(
            rr.DATA.sub(f"<!-- results-data {json.dumps(data)} -->", block), fresh_close, "Other CPU"
        )
    )


def _render(res: Path) -> str:
    rows, pairs, prov = rr.load(res)
    return rr.replace("", "demo", rr.render("demo", rows, pairs, prov, "scripts/demo.sh"))


@pytest.mark.skipif(
    not os.environ.get("CEPHALO_DEMO_RESULTS"),
    reason="set CEPHALO_DEMO_RESULTS=<results/ of a fresh scripts/demo.sh run> (CI does)",
)
def test_readme_demo_block_matches_a_fresh_demo():
    res = Path(os.environ["CEPHALO_DEMO_RESULTS"])
    assert rr.main(["--block", "demo", "--results", str(res), "--readme", str(REPO / "README.md"), "--check"]) == 0


def test_refined_runs_are_worded_beside_their_global_model():
    """Hand-made rows: a refined run is compared with the global model it refines (paired test quoted) and
    with the annotators; a run without its global model gets no sentence."""
    rows = [
        {
            "run": "finetune-v",
            "mre_mm/shared": 1.25,
            "mre_mm/all": 1.25,
            "sdr_2.0mm/all": 83.4,
            "n_landmarks/shared": 19,
            "n_landmarks/all": 19,
            "human_mre_mm/shared": 1.44,
            "vs_each_mre_mm/shared": 1.46,
            "human_vs_mean_mre_mm/shared": 0.69,
        },
        {
            "run": "refine-v",
            "mre_mm/shared": 1.0,
            "mre_mm/all": 1.0,
            "sdr_2.0mm/all": 90.0,
            "n_landmarks/shared": 19,
            "n_landmarks/all": 19,
            "human_mre_mm/shared": 1.44,
            "vs_each_mre_mm/shared": 1.2,
            "human_vs_mean_mre_mm/shared": 0.69,
        },
        {
            "run": "refine_source-isbi2015",
            "split": "test1",
            "mre_mm/shared": 1.2,
            "mre_mm/all": 1.2,
            "sdr_2.0mm/all": 84.0,
        },
        {"run": "refine-w", "mre_mm/shared": 1.0, "mre_mm/all": 1.0},
    ]
    pairs = [{"run_a": "finetune-v", "run_b": "refine-v", "p_value": 4.2e-7, "n_images": 25}]
    s = rr._sentences(rows, pairs)
    assert (
        "Refinement at native resolution, fine-tuned (v): 1.00 mm (SDR@2 mm 90.0 %) vs 1.25 mm (SDR@2 mm 83.4 %) "
        "for the global model alone (1.25x lower, paired Wilcoxon p = 4.2e-07 over 25 images)."
    ) in s
    assert (
        "Against each annotator, refined (refine-v) is at 1.20 mm where the annotators are 1.44 mm apart: "
        "closer to each annotator than they are to each other (0.83x). Against their mean it is at 1.00 mm, "
        "where an annotator is at 0.69 mm."
    ) in s
    assert "level with them (1.01x)" in " ".join(s)  # 1.46 / 1.44
    assert not any("refine_source" in x or "(w)" in x for x in s)  # no source model, no finetune-w: no claim


def test_a_zero_width_sdr_ci_tolerates_one_landmark_on_another_cpu():
    """10 images x 19 landmarks: an SDR moves in steps of 100 / 190 = 0.526 %. A recorded 100 % [100, 100]
    (every landmark inside) still matches 99.47 % (one landmark across the threshold), not 98.95 % (two)."""

    def block(sdr, cpu):
        run = {
            "run": "finetune-v",
            "n_images": 10,
            "n_landmarks/shared": 19,
            "n_landmarks/all": 19,
            "sdr_3.0mm/shared": sdr,
            "sdr_3.0mm/shared/ci95_lo": 100.0,
            "sdr_3.0mm/shared/ci95_hi": 100.0,
        }
        return f"<!-- results-data {json.dumps({'cpu_model': cpu, 'runs': [run]})} -->"

    recorded = block(100.0, "CPU A")
    assert rr.compare_blocks(recorded, block(100 - 100 / 190, "CPU B"), "CPU B") == []
    problems = rr.compare_blocks(recorded, block(100 - 200 / 190, "CPU B"), "CPU B")
    assert len(problems) == 1 and "sdr_3.0mm/shared" in problems[0]
