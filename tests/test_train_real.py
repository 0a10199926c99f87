"""The engine on real cephalograms (../shared/data/isbi2015, read in place; skipped where absent)."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from cephalo.train import TrainConfig

pytestmark = pytest.mark.shared_data


def test_train_on_real_isbi_variant_reports_mm_in_the_original_frame(shared_data, tmp_path):
    from cephalo.index import index_dataset, write_index
    from cephalo.inference import Predictor, predict_variant
    from cephalo.preprocess import build_variant, load_variant
    from cephalo.train import train_on_variant

    # the real-data profile (params.yaml is the demo, whose ISBI-layout source is drawn at 0.8 mm/px)
    params = yaml.safe_load((__import__("pathlib").Path(__file__).parents[1] / "profiles" / "real.yaml").read_text())
    assert params["data"]["datasets"]["isbi2015"]["options"]["spacing_mm"] == 0.1
    df, _ = index_dataset(
        "isbi2015",
        params["data"]["datasets"]["isbi2015"],
        shared_data / "isbi2015",
        tmp_path / "full.parquet",
        progress=False,
    )
    ids = sorted(df[df.split == "train"].image_id.unique())[:8] + sorted(df[df.split == "test1"].image_id.unique())[:4]
    sub = df[df.image_id.isin(ids)].copy()
    sub.attrs = df.attrs
    write_index(sub, tmp_path / "sub.parquet")
    build_variant(tmp_path / "sub.parquet", {"steps": [{"letterbox": {"size": 64}}]}, tmp_path / "v", progress=False)

    # ISBI has no validation split: auto holds out 1 of the 8 training images, never test1
    cfg = TrainConfig.from_dict(
        {"epochs": 2, "batch_size": 3, "lr": 1e-3, "num_workers": 0, "loss": "mse", "val_fraction": 0.125}
    )
    res = train_on_variant(
        tmp_path / "v",
        tmp_path / "run",
        cfg,
        arch="hrnet_w18",
        model_kwargs={"num_modules": [1, 1, 1], "num_blocks": 1},
        codec_params={"sigma": 1.5, "decoder": "argmax"},
        progress=False,
    )
    last = res.history[-1]
    # 0.1 mm/px isotropic: the mm error (spacing applied once, in evaluate.metrics) is 0.1 x the
    # original-pixel error computed here independently
    assert last["val_mre_mm"] == pytest.approx(0.1 * last["val_mre_px"], rel=1e-9)
    import json

    summary = json.loads((tmp_path / "run" / "train.json").read_text())
    assert summary["n_train"] == 7 and summary["n_val"] == 1 and "held out" in summary["validation"]

    # predictions come back in original 1935 x 2400 pixels
    import torch

    from cephalo.models import load_model

    model, meta = load_model(tmp_path / "run" / "best.pt")
    from cephalo.codecs import create_codec

    v = load_variant(tmp_path / "v")
    pred = predict_variant(
        Predictor(
            model, codec=create_codec(**meta.codec), normalisation=meta.normalisation, device=torch.device("cpu")
        ),
        v,
        range(len(v)),
    ).coords
    assert pred.shape == (12, 19, 2)
    # forward through each image's affine they are inside the 64 x 64 network frame ...
    from cephalo.geometry import apply_affine

    fwd = apply_affine(v.affines, pred)
    assert np.all(fwd >= -0.5 - 1e-9) and np.all(fwd <= 63.5 + 1e-9)
    # ... which in the original frame is the 2400-px-tall image plus the letterbox pads left/right
    pad = (2400 - 1935) / 2
    assert np.all(pred[..., 0] > -pad - 25) and np.all(pred[..., 0] < 1935 + pad + 25)
    assert np.all(pred[..., 1] > -25) and np.all(pred[..., 1] < 2400 + 25)
    assert set(meta.provenance["train_image_ids"]["isbi2015"]) <= set(ids[:8])
    assert meta.provenance["train_image_hash_kind"] == "original_file_sha256"
