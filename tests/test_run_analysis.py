"""The run-analysis scripts (run_profile, landmark_bias, refiner_variants, ablation_table): hand-computed cases."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from helpers import REPO, load_script

prof = load_script(REPO / "scripts" / "run_profile.py", "cephalo_script_run_profile")
bias = load_script(REPO / "scripts" / "landmark_bias.py", "cephalo_script_landmark_bias")

LOG = """\
Building DAG of jobs...

[Mon Dec  7 21:00:00 2026]
localrule index:
    output: results/index/a.parquet
    jobid: 3
    wildcards: dataset=a
    resources: tmpdir=/tmp
[Mon Dec  7 21:00:00 2026]
rule train_source:
    jobid: 5
    resources: tmpdir=/tmp, gpu=1
[Mon Dec  7 21:02:30 2026]
Finished jobid: 3 (Rule: index)
1 of 4 steps (25%) done

[Mon Dec  7 21:02:30 2026]
localrule index:
    jobid: 4
    wildcards: dataset=b
[Mon Dec  7 21:03:00 2026]
Finished jobid: 4 (Rule: index)
[Mon Dec  7 21:30:00 2026]
Finished jobid: 5 (Rule: train_source)
[Mon Dec  7 21:30:00 2026]
localrule all:
    jobid: 0
[Mon Dec  7 21:30:00 2026]
Finished jobid: 0 (Rule: all)
"""


def test_job_minutes_per_rule_from_a_snakemake_log():
    jobs = prof.parse_log(LOG)
    assert {j["jobid"] for j in jobs} == {3, 4, 5}  # `all` is no work
    rows = {r["rule"]: r for r in prof.per_rule(jobs)}
    assert rows["train_source"]["minutes"] == pytest.approx(30.0)
    assert rows["index"]["jobs"] == 2 and rows["index"]["minutes"] == pytest.approx(2.5 + 0.5)
    assert rows["index"]["longest"] == pytest.approx(2.5) and rows["index"]["which"] == "dataset=a"
    text = prof.render(jobs, REPO / "x.log", None)
    assert "wall time 30.0 min" in text and "summed job time 33.0 min" in text
    assert text.index("| train_source |") < text.index("| index |")  # longest first


def _frame(
    errors_px: dict[str, np.ndarray], gt: dict[str, np.ndarray], spacing=0.1
) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, idx = [], []
    n = len(next(iter(gt.values())))
    for i in range(n):
        iid = f"{i:03d}"
        for lm in gt:
            e = errors_px.get(lm, np.zeros((n, 2)))[i]
            rows.append(
                {
                    "image_id": iid,
                    "landmark_name": lm,
                    "x_gt": gt[lm][i, 0],
                    "y_gt": gt[lm][i, 1],
                    "x_pred": gt[lm][i, 0] + e[0],
                    "y_pred": gt[lm][i, 1] + e[1],
                    "split": "test",
                }
            )
            idx.append(
                {
                    "image_id": iid,
                    "landmark_name": lm,
                    "annotator": "mean",
                    "x": gt[lm][i, 0],
                    "y": gt[lm][i, 1],
                    "spacing_x_mm": spacing,
                    "spacing_y_mm": spacing,
                }
            )
    return pd.DataFrame(rows), pd.DataFrame(idx)


def test_a_constant_offset_is_all_bias_and_scatter_is_none():
    n = 8
    gt = {"sella": np.full((n, 2), 100.0), "nasion": np.full((n, 2), 300.0)}
    signs = np.where(np.arange(n) % 2, 1.0, -1.0)[:, None]
    pred, index = _frame(
        {
            "sella": np.tile([10.0, -20.0], (n, 1)),  # 1 mm right, 2 mm up, every image
            "nasion": signs * np.array([[5.0, 0.0]]),
        },
        gt,
    )  # +-0.5 mm: no mean offset
    d = bias.errors_mm(pred, index)
    lines = bias.table(d, {}, None)
    sella = next(line for line in lines if line.startswith("| sella"))
    nasion = next(line for line in lines if line.startswith("| nasion"))
    # sella: MRE = |(1, -2)| = 2.24 mm, the bias is that vector exactly, its share 1
    assert sella == "| sella | 8 | 2.24 | +1.00 [+1.00, +1.00] | -2.00 [-2.00, -2.00] | 2.24 | 1.00 |"
    # nasion: errors +-0.5 mm along x cancel: no bias, share 0
    assert "| 0.50 | +0.00" in nasion and nasion.endswith("| 0.00 | 0.00 |")


def test_gonion_error_is_split_along_and_across_the_angle():
    # Ar straight above Go, Me straight ahead (right) of it: the contour at Go runs along (1, 1)/sqrt 2
    n = 4
    gt = {
        "gonion": np.tile([100.0, 100.0], (n, 1)),
        "articulare": np.tile([100.0, 0.0], (n, 1)),
        "menton": np.tile([300.0, 100.0], (n, 1)),
    }
    u = np.array([1.0, 1.0]) / np.sqrt(2)
    along = np.array([[3.0], [-3.0], [3.0], [-3.0]]) * u  # 0.3 mm along the contour
    across = np.array([[1.0], [-1.0], [-1.0], [1.0]]) * np.array([-u[1], u[0]])  # 0.1 mm across it
    pred, index = _frame({"gonion": (along + across) * 1.0}, gt)
    rms_along, rms_across, m = bias.gonion_components(bias.errors_mm(pred, index))
    assert (rms_along, rms_across, m) == (pytest.approx(0.3), pytest.approx(0.1), 4)


def test_annotators_difference_and_its_agreement_with_the_bias():
    n = 6
    gt = {"sella": np.full((n, 2), 100.0)}
    pred, index = _frame({"sella": np.tile([5.0, 0.0], (n, 1))}, gt)  # +0.5 mm in x
    a = index.assign(annotator="Dr.a", x=index["x"] + 5.0)  # Dr.a 0.5 mm right of the mean
    b = index.assign(annotator="Dr.b", x=index["x"] - 5.0)
    diff, pair = bias.annotator_difference(pd.concat([index, a, b]), set(index["image_id"]))
    assert pair == ("Dr.a", "Dr.b") and diff["sella"] == (pytest.approx(1.0), pytest.approx(0.0), n)
    line = bias.table(bias.errors_mm(pred, index), diff, pair)[2]
    assert line.endswith("| +1.00, +0.00; 6 | +1.00 |")  # the model sides with Dr.a's convention


def test_an_image_without_pixel_spacing_is_refused(tmp_path):
    gt = {"sella": np.full((2, 2), 100.0)}
    pred, index = _frame({}, gt)
    index.loc[index["image_id"] == "001", ["spacing_x_mm", "spacing_y_mm"]] = np.nan
    with pytest.raises(SystemExit, match="no pixel spacing in the index for images \\['001'\\]"):
        bias.errors_mm(pred, index)


# four unit vectors: mean 0, covariance diag(2/3, 2/3) (ddof 1)
_CROSS = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])


def test_hotelling_one_sample_by_hand():
    # mean (0.5, 0): T^2 = 4 * 0.25 / (2/3) = 1.5; F = (4 - 2) / (2 * 3) * 1.5 = 0.5 on (2, 2) degrees
    # of freedom, whose survival function is 1 / (1 + F) = 2/3
    assert bias.hotelling_one_sample(_CROSS + [0.5, 0.0]) == pytest.approx(2 / 3)
    assert bias.hotelling_one_sample(_CROSS) == pytest.approx(1.0)
    assert np.isnan(bias.hotelling_one_sample(_CROSS[:2]))


def test_hotelling_two_sample_by_hand():
    # means differ by (0.5, 0); pooled covariance diag(2/3, 2/3); T^2 = 0.25 / (2/3 * (1/4 + 1/4)) = 0.75;
    # F = (8 - 3) / (2 * 6) * 0.75 = 0.3125 on (2, 5): survival (1 + 2F/5)^(-5/2) = 1.125^-2.5
    assert bias.hotelling_two_sample(_CROSS + [0.5, 0.0], _CROSS) == pytest.approx(1.125**-2.5)
    assert bias.hotelling_two_sample(_CROSS, _CROSS) == pytest.approx(1.0)
    assert np.isnan(bias.hotelling_two_sample(_CROSS[:1], _CROSS))


@pytest.mark.parametrize(
    ("p_reference", "p_difference", "expected"),
    [
        (0.5, 1e-6, "labels differ"),
        (1e-6, 0.5, "model"),
        (1e-6, 1e-6, "both"),
        (0.5, 0.5, "-"),
        (0.01, 0.0099, "labels differ"),
    ],
)
def test_verdict_names_where_a_bias_comes_from(p_reference, p_difference, expected):
    assert bias.verdict(p_reference, p_difference) == expected


def test_reference_evaluation_separates_a_label_shift_from_a_model_bias():
    n = 12
    rng = np.random.default_rng(0)
    gt = {"sella": np.full((n, 2), 100.0), "nasion": np.full((n, 2), 300.0)}
    scatter = rng.normal(0, 2.0, size=(n, 2))  # 0.2 mm s.d.
    # sella: 1 mm right on the test images only (their labels sit 1 mm left); nasion: 1 mm up on both
    test, index = _frame({"sella": scatter + [10.0, 0.0], "nasion": scatter + [0.0, -10.0]}, gt)
    ref, _ = _frame({"sella": scatter[::-1], "nasion": scatter[::-1] + [0.0, -10.0]}, gt)
    lines = bias.reference_table(bias.errors_mm(test, index), bias.errors_mm(ref, index))
    assert next(line for line in lines if line.startswith("| sella")).endswith("| labels differ |")
    assert next(line for line in lines if line.startswith("| nasion")).endswith("| model |")
    # sella's test-only 1 mm taken out leaves its scatter (the reference's mean scatter is the same)
    s_mm = scatter * 0.1
    expected = np.mean(np.r_[np.hypot(*s_mm.T), np.hypot(s_mm[:, 0], s_mm[:, 1] - 1.0)])
    assert lines[-1].endswith(
        f"(sella) taken out: {expected:.3f} mm (an estimate of what the label difference costs, "
        "read off the test labels: not a result)."
    )


variants = load_script(REPO / "scripts" / "refiner_variants.py", "cephalo_script_refiner_variants")


def test_refiner_variant_and_ensemble_specs_parse_or_are_refused():
    assert variants.parse_variant('s375:{"refine.spacing_mm": 0.375}') == ("s375", {"refine.spacing_mm": 0.375})
    assert variants.parse_ensemble("pair=run+seed1") == ("pair", ["run", "seed1"])
    for bad in ("s375", "s375:[1]", "s375:{bad", 'run:{"a": 1}', ':{"a": 1}'):
        with pytest.raises(SystemExit, match="--variant"):
            variants.parse_variant(bad)
    for bad in ("pair=run", "pair", "=a+b"):
        with pytest.raises(SystemExit, match="--ensemble"):
            variants.parse_ensemble(bad)


def test_refiner_variant_overrides_are_set_on_a_copy():
    params = {"refine": {"train": {"seed": 0}, "window": 64}}
    out = variants.with_overrides(params, {"refine.train.seed": 1, "refine.train.split_seed": 0, "train.lr": 0.1})
    assert out == {"refine": {"train": {"seed": 1, "split_seed": 0}, "window": 64}, "train": {"lr": 0.1}}
    assert params == {"refine": {"train": {"seed": 0}, "window": 64}}


def test_refiner_variant_score_by_hand():
    # image a at 0.1 mm/px: errors 30 px -> 3 mm and 10 px -> 1 mm; image b at 0.2 x 0.1 mm/px:
    # (10, 0) px -> 2 mm (counted within 2 mm) and (0, 10) px -> 1 mm. MRE (3 + 1 + 2 + 1) / 4 = 1.75 mm
    rows = [("a", "sella", 30, 0), ("a", "nasion", 0, 10), ("b", "sella", 10, 0), ("b", "nasion", 0, 10)]
    pred = pd.DataFrame(
        [
            {"image_id": i, "landmark_name": n, "x_pred": 100 + dx, "y_pred": 50 + dy, "x_gt": 100, "y_gt": 50}
            for i, n, dx, dy in rows
        ]
    ).set_index(["image_id", "landmark_name"])
    spacing = pd.DataFrame({"x": [0.1, 0.2], "y": [0.1, 0.1]}, index=["a", "b"])
    s = variants.score(pred, spacing)
    assert s["mre_mm"] == pytest.approx(1.75) and s["sdr2"] == pytest.approx(75.0) and s["n_images"] == 2
    assert s["per_image"] == {"a": pytest.approx(2.0), "b": pytest.approx(1.5)}
    assert s["ci95"][0] <= 1.75 <= s["ci95"][1]


ablation = load_script(REPO / "scripts" / "ablation_table.py", "cephalo_script_ablation_table")


def _fake_eval(results, run, per_image):
    folder = results / "eval" / run
    folder.mkdir(parents=True)
    mre = float(np.mean(list(per_image.values())))
    overall = {"mre_mm": mre, "ci95": {"mre_mm": [mre - 0.1, mre + 0.1]}, "sdr": {"2.0": 0.9}, "n_images": 3}
    (folder / "metrics.json").write_text(json.dumps({"overall": overall}))
    pd.DataFrame({"image_id": list(per_image), "mre_mm": list(per_image.values())}).to_csv(
        folder / "per_image.csv", index=False
    )


def _fake_setting(name, valid, test, seconds):
    ids = ["1", "2", "3"]
    return {
        "setting": name,
        "valid": {"mre_mm": valid, "n_images": 15},
        "test": {
            "mre_mm": float(np.mean(test)),
            "ci95": [0.0, 9.0],
            "sdr2": 0.8,
            "n_images": 3,
            "seconds": seconds,
            "per_image": dict(zip(ids, test, strict=True)),
        },
    }


def test_ablation_table_rows_pair_each_step_with_the_one_before(tmp_path):
    results = tmp_path / "results"
    _fake_eval(results, "source-isbi2015", {"1": 2.0, "2": 2.0, "3": 2.0})
    _fake_eval(results, "refine_source-isbi2015", {"1": 1.0, "2": 1.2, "3": 1.4})
    (results / "models" / "source").mkdir(parents=True)
    (results / "models" / "source" / "train.json").write_text(json.dumps({"best_score": 1.5, "n_val": 15}))
    run = {
        "label": "ISBI 2015 (source refiner)",
        "rows": [
            _fake_setting("one pass", 1.1, [1.1, 1.3, 1.5], 20),
            _fake_setting("TTA scales x shifts", 1.0, [1.0, 1.2, 1.4], 65),
        ],
    }
    log = (
        "[Mon Dec 07 21:00:00 2026]\nlocalrule train_source:\n    jobid: 4\n"
        "[Mon Dec 07 21:30:00 2026]\nFinished jobid: 4 (Rule: train_source)\n"
        "[Mon Dec 07 21:30:00 2026]\nlocalrule train_refiner_source:\n    jobid: 5\n"
        "[Mon Dec 07 21:36:00 2026]\nFinished jobid: 5 (Rule: train_refiner_source)\n"
    )
    jobs = ablation.parse_log(log)
    rows = ablation.rows_for(results, run, ablation.CHAINS["ISBI 2015 (source refiner)"][1], jobs)
    assert [r["cost"] for r in rows] == ["30.0 min", "6.0 min", "+45 s per test evaluation"]
    assert rows[0]["valid"] == (1.5, 15) and rows[1]["valid"] == (1.1, 15) and rows[2]["valid"] == (1.0, 15)
    # one pass vs global: every image 0.7 mm better on average (0.9, 0.7, 0.5); TTA vs one pass: 0.1 mm each
    assert rows[0]["paired"] is None
    assert rows[1]["paired"]["delta_mm"] == pytest.approx(-0.7) and rows[1]["paired"]["better"] == 3
    assert rows[2]["paired"]["delta_mm"] == pytest.approx(-0.1) and rows[2]["paired"]["better"] == 3
    assert rows[1]["test"]["sdr2"] == pytest.approx(80.0) and rows[2]["test"]["sdr2"] == pytest.approx(90.0)
