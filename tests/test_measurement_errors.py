"""Measurement errors in evaluation (cephalo.evaluate.measurement_errors), on hand-computed cases."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cephalo.evaluate.measurement_errors import measurement_errors, write_outputs
from cephalo.landmarks import ISBI19

NAMES = ISBI19.names


def _one(a_point=(100, 100)):
    c = np.full((19, 2), np.nan)
    c[NAMES.index("sella")] = (0, 0)
    c[NAMES.index("nasion")] = (100, 0)
    c[NAMES.index("a_point")] = a_point
    c[NAMES.index("b_point")] = (100, 120)
    return c


def test_mae_bias_accuracy_and_confusion_hand_computed(tmp_path):
    # ground truth SNA = 90 deg (class 2: > 83.2) on both images; prediction: 90 on image 0, and
    # 80 deg on image 1 (A rotated about N): error 0 and -10 -> MAE 5, bias -5, accuracy 0.5.
    t = np.radians(80)
    gt = np.stack([_one(), _one()])
    pred = np.stack([_one(), _one((100 + 100 * np.cos(np.pi - t), 100 * np.sin(np.pi - t)))])
    # annotators: the second one puts A 10 deg lower on image 0 only -> human MAE 5, agreement 0.5
    ann = {"senior": gt.copy(), "junior": np.stack([pred[1], gt[1]])}
    b = measurement_errors(
        pred, gt, np.array([0.1, 0.1]), NAMES, image_ids=["a", "b"], annotators=ann, keys=["SNA", "ANB"], n_boot=200
    )
    r = b["per_measurement"]["SNA"]
    assert r["mae"] == pytest.approx(5.0) and r["bias"] == pytest.approx(-5.0) and r["n"] == 2
    assert r["mae_ci95"][0] == pytest.approx(0.0) and r["mae_ci95"][1] == pytest.approx(10.0)
    assert r["human_mae"] == pytest.approx(5.0) and r["human_n"] == 2
    assert r["accuracy"] == pytest.approx(0.5) and r["human_accuracy"] == pytest.approx(0.5)
    # rows ground truth (labels 1, 2, 3), columns prediction: both GT class 2; predictions 2 and 1
    assert r["confusion"]["labels"] == [1, 2, 3]
    assert r["confusion"]["matrix"] == [[0, 0, 0], [1, 1, 0], [0, 0, 0]]
    assert b["per_image"]["SNA"]["gt"] == pytest.approx([90.0, 90.0])
    written = write_outputs(b, tmp_path, make_plot=True, title="t")
    assert {p.name for p in written} == {"measurements.csv", "measurements_per_image.csv", "measurements.png"}
    import pandas as pd

    df = pd.read_csv(tmp_path / "measurements.csv")
    assert df.set_index("measurement").loc["SNA", "mae"] == pytest.approx(5.0)


def test_no_supported_measurement_is_empty(tmp_path):
    b = measurement_errors(np.zeros((1, 2, 2)), np.zeros((1, 2, 2)), np.array([0.1, 0.1]), ["sella", "nasion"])
    assert b["keys"] == [] and write_outputs(b, tmp_path) == []
    json.dumps(b)


def test_comparison_rows_and_markdown():
    from cephalo.evaluate.measurement_errors import comparison_markdown, comparison_rows

    def metrics(mae, acc):
        return {
            "measurements": {
                "keys": ["SNA"],
                "per_measurement": {
                    "SNA": {
                        "unit": "deg",
                        "mae": mae,
                        "mae_ci95": [mae - 0.5, mae + 0.5],
                        "bias": 0.1,
                        "human_mae": 1.0,
                        "accuracy": acc,
                        "human_accuracy": 0.8,
                    }
                },
            },
            "uncertainty": {"coverage": {"0.9": {"overall": 0.88}}},
        }

    rows = comparison_rows([("zero_shot", metrics(3.0, 0.5)), ("fine_tuned", metrics(1.5, 0.75))])
    assert [(r["run"], r["measurement"]) for r in rows] == [
        ("zero_shot", "SNA"),
        ("zero_shot", "coverage@0.9"),
        ("fine_tuned", "SNA"),
        ("fine_tuned", "coverage@0.9"),
    ]
    md = comparison_markdown(rows)
    assert "| SNA | deg | 3.00 [2.50, 3.50] (50 %) | 1.50 [1.00, 2.00] (75 %) | 1.00 (80 %) |" in md
    assert "| coverage@0.9 | fraction | 88.0 % | 88.0 % | - |" in md
    assert "| annotator vs annotator (images of zero_shot) |" in md  # the limit belongs to one run's images
    assert comparison_markdown([]) == ""
