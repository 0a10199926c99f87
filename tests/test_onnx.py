"""ONNX export checked against PyTorch with onnxruntime; the export-onnx CLI."""

from __future__ import annotations

import json
import sys

import pytest
import torch

pytest.importorskip("onnxruntime")

from click.testing import CliRunner  # noqa: E402

from cephalo.cli import main  # noqa: E402
from cephalo.models import ModelMeta, create_model, export_onnx, save_checkpoint  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _tiny(k=4):
    torch.manual_seed(0)
    model = create_model("hrnet_w18", k, num_modules=(1, 1, 1), num_blocks=1)
    # non-trivial BatchNorm statistics, so eval-mode folding is exercised
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return model


def test_export_matches_torch(tmp_path):
    import onnxruntime as ort

    model = _tiny(4)
    report = export_onnx(model, tmp_path / "m.onnx", (64, 48))
    assert report["passed"] and report["max_abs_diff"] < 1e-4
    assert report["output_shape"] == [2, 4, 12, 16]  # dynamic batch checked with B=2
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].name == "image" and sess.get_outputs()[0].name == "heatmaps"
    x = torch.randn(3, 3, 48, 64)
    (out,) = sess.run(None, {"image": x.numpy()})
    with torch.no_grad():
        ref = model.eval()(x).numpy()
    assert abs(out - ref).max() < 1e-4
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


def test_export_timm_model(tmp_path):
    model = create_model("timm:hrnet_w18_small", 3, pretrained=False, head_channels=16)
    report = export_onnx(model, tmp_path / "t.onnx", (64, 64), dynamic_batch=False)
    assert report["passed"] and report["output_shape"] == [1, 3, 16, 16]


def test_failed_check_writes_nothing(tmp_path):
    from cephalo.errors import CheckpointError

    with pytest.raises(CheckpointError, match="differs from PyTorch"):
        export_onnx(_tiny(2), tmp_path / "m.onnx", (32, 32), atol=0.0 - 1.0)
    assert list(tmp_path.iterdir()) == []


def _ckpt(tmp_path):
    meta = ModelMeta("hrnet_w18", ["sella", "nasion"], (64, 64), (16, 16))
    return save_checkpoint(tmp_path / "model.pt", _tiny(2), meta)


def test_cli_export_onnx(tmp_path):
    ckpt = _ckpt(tmp_path)
    params = tmp_path / "params.yaml"
    params.write_text(
        "model:\n  onnx:\n    opset: 17\n    dynamic_batch: true\n    atol: 1.0e-4\n    input_size: [64, 32]\n"
    )
    out = tmp_path / "export" / "model.onnx"
    res = CliRunner().invoke(main, ["export-onnx", "--model", str(ckpt), "--out", str(out), "--params", str(params)])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "export" / "model.check.json").read_text())
    assert report["passed"] and report["input_size"] == [64, 32] and report["output_shape"] == [2, 2, 8, 16]
    assert report["meta"]["landmark_names"] == ["sella", "nasion"]
    assert "max abs diff" in res.output
    import onnx

    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(props["cephalo_meta"])["input_size"] == [64, 64]


def test_cli_help_and_bad_checkpoint_exit_1(tmp_path, monkeypatch, capsys):
    from cephalo.cli import run

    res = CliRunner().invoke(main, ["export-onnx", "--help"])
    assert res.exit_code == 0 and "--model" in res.output and "--params" in res.output
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x80\x02not really")
    params = tmp_path / "params.yaml"
    params.write_text("model: {}\n")
    monkeypatch.setattr(
        sys,
        "argv",
        ["cephalo", "export-onnx", "--model", str(bad), "--out", str(tmp_path / "o.onnx"), "--params", str(params)],
    )
    with pytest.raises(SystemExit) as e:
        run()
    assert e.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and "truncated" in lines[0], lines
    assert not (tmp_path / "o.onnx").exists()
