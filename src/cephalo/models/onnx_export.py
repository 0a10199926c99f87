"""Export a heatmap model to ONNX and check it against PyTorch with onnxruntime.

Export uses ``torch.onnx.export`` (TorchScript exporter, ``dynamo=False``) with a dynamic batch
axis; the check runs the same seeded input through the eval-mode PyTorch model and an
onnxruntime CPU session and reports the max absolute difference of the heatmap logits.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError
from ..io import atomic_path
from .checkpoint import unwrap_model

__all__ = ["export_onnx", "check_onnx"]


def check_onnx(
    model: nn.Module, path: str | Path, input_size: Sequence[int], batch: int = 1, seed: int = 0
) -> dict[str, Any]:
    """Max abs difference between PyTorch and onnxruntime outputs on a seeded N(0,1) input.

    Args:
        input_size: (W, H) input pixels.
    Returns:
        dict: ``max_abs_diff`` (float), ``output_shape`` (list), ``onnxruntime`` version.
    Raises:
        CheckpointError: the ONNX file cannot be loaded by onnxruntime.
    """
    import onnxruntime as ort

    w, h = (int(v) for v in input_size)
    x = torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(seed))
    model = unwrap_model(model).eval()
    with torch.no_grad():
        ref = model(x).numpy()
    try:
        so = ort.SessionOptions()
        so.intra_op_num_threads = max(1, min(4, os.cpu_count() or 1))
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
        raise CheckpointError(f"onnxruntime cannot load the exported model ({e})", path) from None
    (out,) = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    if out.shape != ref.shape:
        raise CheckpointError(f"ONNX output shape {out.shape} != PyTorch {ref.shape}", path)
    return {
        "max_abs_diff": float(np.max(np.abs(out - ref))),
        "output_shape": list(out.shape),
        "onnxruntime": ort.__version__,
        "check_input": {"shape": [batch, 3, h, w], "distribution": "N(0,1)", "seed": seed},
    }


def export_onnx(
    model: nn.Module,
    path: str | Path,
    input_size: Sequence[int],
    *,
    opset: int = 17,
    dynamic_batch: bool = True,
    check: bool = True,
    atol: float = 1e-4,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Export ``model`` to ``path`` (atomic) and, with ``check``, compare onnxruntime vs torch.

    Args:
        model: heatmap model, (B, 3, H, W) float32 -> (B, K, H/4, W/4); exported in eval mode.
        path: output ``.onnx`` file; input ``"image"``, output ``"heatmaps"``.
        input_size: (W, H) input pixels (e.g. ``meta.input_size``).
        opset: ONNX opset.
        dynamic_batch: make the batch axis dynamic.
        check: run :func:`check_onnx` (batch 2 when dynamic).
        atol: fail if the max abs difference exceeds it.
        metadata: stored as ONNX ``metadata_props`` (values JSON-encoded unless str), e.g.
            ``{"cephalo_meta": meta.to_dict()}`` so that an ONNX consumer knows the landmark
            names, input size, normalisation and codec.

    Returns:
        report dict: ``path``, ``input_size``, ``opset``, ``dynamic_batch``, ``torch``, ``onnx``,
        ``bytes``, and the :func:`check_onnx` fields with ``passed``.

    Raises:
        CheckpointError: export failed, or the check exceeded ``atol`` (the file is then not written).
    """
    import onnx

    w, h = (int(v) for v in input_size)
    bare = unwrap_model(model)
    was_training = bare.training
    bare.eval()
    path = Path(path)
    report: dict[str, Any] = {
        "path": str(path),
        "input_size": [w, h],
        "opset": int(opset),
        "dynamic_batch": bool(dynamic_batch),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
    }
    try:
        with atomic_path(path) as tmp:
            x = torch.zeros(1, 3, h, w)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    torch.onnx.export(
                        bare,
                        (x,),
                        str(tmp),
                        input_names=["image"],
                        output_names=["heatmaps"],
                        opset_version=opset,
                        dynamo=False,
                        do_constant_folding=True,
                        dynamic_axes={"image": {0: "batch"}, "heatmaps": {0: "batch"}} if dynamic_batch else None,
                    )
                except Exception as e:
                    raise CheckpointError(
                        f"ONNX export failed ({type(e).__name__}: {e})".splitlines()[0], path
                    ) from None
            if metadata:
                proto = onnx.load(str(tmp))
                for key, value in metadata.items():
                    entry = proto.metadata_props.add()
                    entry.key = str(key)
                    entry.value = value if isinstance(value, str) else json.dumps(value)
                onnx.save(proto, str(tmp))
            onnx.checker.check_model(str(tmp))
            if check:
                report.update(check_onnx(bare, tmp, (w, h), batch=2 if dynamic_batch else 1))
                report["atol"] = atol
                report["passed"] = report["max_abs_diff"] <= atol
                if not report["passed"]:
                    raise CheckpointError(
                        f"ONNX output differs from PyTorch by {report['max_abs_diff']:.3g} > atol {atol:g}", path
                    )
            report["bytes"] = tmp.stat().st_size
    finally:
        bare.train(was_training)
    return report
