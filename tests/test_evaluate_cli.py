"""Evaluation runner and CLI: outputs, inverse-affine round trip, leakage, human limit."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from cephalo import geometry
from cephalo.evaluate.human import human_limit
from cephalo.evaluate.runner import (
    EvalContext,
    EvalData,
    EvalSettings,
    PredictOptions,
    evaluate_model,
    evaluate_predictions,
    shared_landmarks,
)


def test_evaluate_predictions_writes_all_outputs(tmp_path):
    rng = np.random.default_rng(0)
    n, k = 6, 3
    gt = rng.uniform(50, 250, size=(n, k, 2))
    pred = gt + rng.normal(0, 10, size=gt.shape)
    pred[0, 1] = np.nan
    sp = np.tile([[0.1, 0.12]], (n, 1))
    imgs = {i: (np.zeros((300, 300), np.uint8), geometry.identity()) for i in range(n)}
    human = {"per_landmark": {"a": 1.0, "b": 1.5, "c": 2.0}, "overall": {"mre_mm": 1.5}}
    leak = {"seen": ["i0", "i1"], "n_seen": 2, "warning": "seen 2"}
    res = evaluate_predictions(
        EvalData(
            pred,
            gt,
            sp,
            image_ids=[f"i{i}" for i in range(n)],
            names=["a", "b", "c"],
            devices=["d1", "d1", "d2", "d2", "d2", "d2"],
        ),
        tmp_path / "run",
        EvalSettings(n_boot=100, n_worst=2),
        EvalContext(
            human=human,
            leakage=leak,
            images=lambda i: imgs[i],
            info={
                "gt_policy": "mean",
                "data_index_hash": "h",
                "split": "test",
                "checkpoint_sha256": "c",
                "command": "cephalo evaluate ...",
            },
        ),
    )
    out = tmp_path / "run"
    m = json.loads((out / "metrics.json").read_text())
    assert m == json.loads(json.dumps(res))
    for key in ("gt_policy", "data_index_hash", "split", "checkpoint_sha256", "command"):
        assert key in m
    e = np.hypot((pred - gt)[..., 0] * 0.1, (pred - gt)[..., 1] * 0.12)
    assert m["overall"]["mre_mm"] == pytest.approx(np.nanmean(e))
    assert m["overall"]["n_missing"] == 1 and m["missing"]["prediction"] == 1
    assert m["seen"]["n_images"] == 2 and m["unseen"]["n_images"] == 4
    assert m["unseen"]["mre_mm"] == pytest.approx(np.nanmean(e[2:]))
    assert set(m["per_device"]) == {"d1", "d2"}
    pl = pd.read_csv(out / "per_landmark.csv")
    assert list(pl["landmark"]) == ["a", "b", "c"] and list(pl["human_mre_mm"]) == [1.0, 1.5, 2.0]
    pi = pd.read_csv(out / "per_image.csv")
    assert list(pi["seen"]) == [True, True, False, False, False, False]
    pr = pd.read_parquet(out / "predictions.parquet")
    assert len(pr) == n * k and np.isnan(pr["error_mm"]).sum() == 1
    for f in ("sdr_curve.png", "per_landmark.png", "error_vs_device.png", "diagnosis.png", "sdr_curve.csv"):
        assert (out / "plots" / f).stat().st_size > 0
    assert len(list((out / "overlays").glob("worst_*.png"))) == 2
    assert (out / "diagnosis.md").read_text().startswith("# Diagnosis")


def test_shared_landmarks_by_name():
    names, mi, di = shared_landmarks(["sella", "nasion", "porion"], ["a_point", "porion", "sella"])
    assert names == ["porion", "sella"] and mi == [2, 0] and di == [1, 2]
    with pytest.raises(ValueError):
        shared_landmarks(["x"], ["y"])


def test_human_limit_from_index_uses_per_image_spacing():
    rows = []
    for img, sp in (("1", 0.1), ("2", 0.2)):
        for ann, dx in (("senior", 0.0), ("junior", 10.0), ("mean", 5.0)):
            for lm, y in (("sella", 0.0), ("nasion", 5.0)):
                rows.append(
                    {
                        "image_id": img,
                        "annotator": ann,
                        "landmark_name": lm,
                        "x": 100.0 + dx,
                        "y": y,
                        "spacing_x_mm": sp,
                        "spacing_y_mm": sp,
                    }
                )
    h = human_limit(pd.DataFrame(rows), ["1", "2"], ["sella", "nasion"])
    assert h["annotators"] == ["junior", "senior"] and h["n_images"] == 2
    assert h["per_landmark"]["sella"] == pytest.approx((1.0 + 2.0) / 2)
    assert human_limit(pd.DataFrame(rows)[lambda d: d.annotator != "junior"], ["1"], ["sella"]) is None


class _V(SimpleNamespace):
    """Variant-shaped stand-in (the attributes of cephalo.preprocess.Variant)."""

    def __len__(self):
        return len(self.image_ids)


class _PerfectModel:
    """Returns the codec's encoding of known landmark positions: decoding must give them back."""

    def __init__(self, heatmaps):
        import torch

        self.hm = torch.as_tensor(heatmaps)
        self.i = 0

    def to(self, device):
        return self

    def eval(self):
        return self

    def __call__(self, x):
        b = x.shape[0]
        out = self.hm[self.i : self.i + b]
        self.i += b
        return out


def test_evaluate_model_maps_back_through_inverse_affine(tmp_path):
    pytest.importorskip("cephalo.codecs")
    pytest.importorskip("cephalo.preprocess")
    from cephalo.codecs import create_codec

    W = H = 64
    codec_kw = {
        "name": "gaussian",
        "input_size": (W, H),
        "heatmap_size": (16, 16),
        "sigma": 1.5,
        "decoder": "dark",
        "convention": "pixel_centre",
    }
    codec = create_codec(**codec_kw)
    rng = np.random.default_rng(0)
    n, names = 3, ["sella", "nasion", "orbitale"]
    sizes = np.array([[400, 300], [320, 320], [500, 250]])
    affines, orig, pre, hms = [], [], [], []
    for w, h in sizes:  # letterbox to 64x64
        s = min(W / w, H / h)
        a = geometry.compose(
            geometry.resize_affine((w, h), (round(w * s), round(h * s))),
            geometry.scale_translate(1, 1, (W - round(w * s)) // 2, (H - round(h * s)) // 2),
        )
        p = rng.uniform([0.2 * w, 0.2 * h], [0.8 * w, 0.8 * h], size=(3, 2))
        q = geometry.apply_affine(a, p)
        affines.append(a)
        orig.append(p)
        pre.append(q)
        hms.append(codec.encode(q)[0])
    model_names = ["nasion", "sella", "porion", "orbitale"]  # different order + a model-only landmark
    hm = np.stack(hms)
    order = [names.index(nm) if nm in names else 0 for nm in model_names]
    hm_model = hm[:, order]
    variant = _V(
        images=np.zeros((n, H, W), np.uint8),
        image_ids=["001", "002", "003"],
        splits=np.array(["test", "test", "train"], dtype=object),
        devices=np.array(["a", "b", "a"], dtype=object),
        datasets=np.array(["demo"] * 3, dtype=object),
        spacing=np.array([[0.1, 0.1], [0.1, 0.15], [0.2, 0.2]]),
        affines=np.stack(affines),
        landmarks=np.stack(pre),
        landmarks_original=np.stack(orig),
        annotators={},
        landmark_names=names,
        orig_sizes=sizes,
        input_size=(W, H),
        normalisation={"name": "imagenet"},
        spec={},
        meta={"name": "lb64", "ground_truth": "mean", "source_index": {"sha256": "abc"}},
        path=tmp_path / "variant",
    )
    meta = SimpleNamespace(
        landmark_names=model_names,
        normalisation={"name": "imagenet"},
        codec=codec_kw,
        arch="test",
        input_size=[W, H],
        provenance={},
    )
    res = evaluate_model(
        _PerfectModel(hm_model[:2]),
        meta,
        variant,
        "test",
        tmp_path / "ev",
        settings=EvalSettings(n_boot=50, n_worst=1),
        predict=PredictOptions(progress=False),
    )
    assert res["landmark_mapping"]["shared"] == names and res["landmark_mapping"]["model_only"] == ["porion"]
    assert res["overall"]["n_images"] == 2
    assert res["overall"]["max_mm"] < 0.1 * 0.15 * (max(sizes[:2].ravel()) / W) * 16  # < 0.1 heatmap px
    pr = pd.read_parquet(tmp_path / "ev" / "predictions.parquet")
    np.testing.assert_allclose(
        pr[["x_pred", "y_pred"]].to_numpy(), np.stack(orig[:2]).reshape(-1, 2), atol=0.1 * 4 * 400 / 64
    )
    assert res["gt_policy"] == "mean" and res["data_index_hash"] == "abc"


def test_cli_help_lists_options():
    from cephalo.cli import main

    r = CliRunner().invoke(main, ["evaluate", "--help"])
    assert r.exit_code == 0
    for opt in ("--model", "--data", "--split", "--out", "--name", "--index", "--params"):
        assert opt in r.output


def test_cli_missing_model_is_one_line_error(tmp_path):
    import subprocess
    import sys

    (tmp_path / "params.yaml").write_text("evaluate: {}\ntracking: {enabled: false}\n")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "cephalo",
            "evaluate",
            "--model",
            str(tmp_path / "nope.pt"),
            "--data",
            str(tmp_path),
            "--out",
            str(tmp_path / "o"),
            "--params",
            str(tmp_path / "params.yaml"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and "nope.pt" in r.stderr


def test_leakage_public_hrnet_on_isbi_test1_and_test2(hrnet_spec):
    from cephalo.evaluate.leakage import HF_HRNET_W32_TRAINING_IDS, find_leakage

    spec = json.loads((hrnet_spec / "training_split.json").read_text())
    assert frozenset(spec["splits"]["training"]) == HF_HRNET_W32_TRAINING_IDS
    prov = {"source": "public HF checkpoint cwlachap/hrnet-cephalometric-landmark-detection"}
    t1 = find_leakage([f"{i:03d}" for i in range(151, 301)], ["isbi2015"] * 150, ["test1"] * 150, prov)
    t2 = find_leakage([f"{i:03d}" for i in range(301, 401)], ["isbi2015"] * 100, ["test2"] * 100, prov)
    assert t1["n_seen"] == 112 and t2["n_seen"] == 72
    assert "112 of the 150" in t1["warning"]
    assert find_leakage(["001"], ["aariz"], ["test"], prov)["n_seen"] == 0


def test_leakage_by_content_hash_and_duplicates_across_splits():
    from cephalo.evaluate.leakage import find_leakage, image_content_hash

    a, b = np.zeros((4, 4), np.uint8), np.ones((4, 4), np.uint8)
    ha, hb = image_content_hash(a), image_content_hash(b)
    assert ha == image_content_hash(a.copy()) and ha != hb
    r = find_leakage(
        ["t1", "t2"],
        ["d", "d"],
        ["test", "test"],
        {"train_image_hashes": {"x": hb}},
        content_hashes=[[ha], [hb]],
        all_ids=["x", "t1", "t2"],
        all_splits=["train", "test", "test"],
        all_hashes=[hb, ha, hb],
    )
    assert r["seen"] == ["t2"]
    assert r["duplicates_across_splits"] == [["t2", "test", "x", "train"]]


def test_evaluate_model_undoes_the_public_hrnet_label_mapping(tmp_path):
    """A model trained like the public HRNet (labels x*scale+pad, codec convention hf_corner) that
    predicts its training labels exactly is scored ~0 mm: evaluation inverts the label mapping it
    learned, not the pixel affine (which would leave a systematic ~1 original px offset)."""
    from cephalo.codecs import create_codec

    W = H = 64
    codec_kw = {
        "name": "gaussian",
        "input_size": (W, H),
        "heatmap_size": (16, 16),
        "sigma": 1.5,
        "decoder": "dark",
        "convention": "hf_corner",
    }
    codec = create_codec(**codec_kw)
    rng = np.random.default_rng(1)
    names = ["sella", "nasion", "orbitale"]
    sizes = np.array([[387, 480], [480, 387]])
    affines, orig, hms = [], [], []
    for w, h in sizes:
        lb = geometry.letterbox_geometry((w, h), W)
        p = rng.uniform([0.2 * w, 0.2 * h], [0.8 * w, 0.8 * h], size=(3, 2))
        affines.append(lb.affine())  # what the pixels underwent (stored with the variant)
        orig.append(p)
        hms.append(codec.encode(geometry.apply_affine(lb.hf_label_affine(), p))[0])  # what it learned
    variant = _V(
        images=np.zeros((2, H, W), np.uint8),
        image_ids=["001", "002"],
        splits=np.array(["test", "test"], dtype=object),
        devices=np.array(["a", "a"], dtype=object),
        datasets=np.array(["isbi2015"] * 2, dtype=object),
        spacing=np.array([[0.1, 0.1], [0.1, 0.1]]),
        affines=np.stack(affines),
        landmarks=np.stack([geometry.apply_affine(a, p) for a, p in zip(affines, orig, strict=True)]),
        landmarks_original=np.stack(orig),
        annotators={},
        landmark_names=names,
        orig_sizes=sizes,
        input_size=(W, H),
        normalisation={"name": "imagenet"},
        spec={},
        meta={"name": "lb64", "ground_truth": "mean", "source_index": {"sha256": "abc"}},
        path=tmp_path / "v",
    )
    meta = SimpleNamespace(
        landmark_names=names,
        normalisation={"name": "imagenet"},
        codec=codec_kw,
        arch="test",
        input_size=[W, H],
        provenance={},
    )
    res = evaluate_model(
        _PerfectModel(np.stack(hms)),
        meta,
        variant,
        "test",
        tmp_path / "ev",
        settings=EvalSettings(n_boot=20, n_worst=1),
        predict=PredictOptions(progress=False),
    )
    assert res["overall"]["max_mm"] < 0.01  # 0.1 mm/px: well under a tenth of an original pixel
