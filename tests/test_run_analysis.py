"""scripts/run_profile.py and scripts/landmark_bias.py: hand-computed cases (fast)."""

from __future__ import annotations

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
