"""``cephalo export-onnx --model CKPT --out FILE.onnx [--report FILE.json] --params FILE``.

Params (``model.onnx``, all optional): ``opset`` (17), ``dynamic_batch`` (true), ``atol`` (1e-4),
``input_size`` ([W, H]; default: the checkpoint's ``meta.input_size``).
Writes the ONNX file (ModelMeta JSON in its ``metadata_props["cephalo_meta"]``) and a JSON check
report (onnxruntime vs PyTorch max abs difference);
exit 1 if the check fails (nothing written then).
"""

from __future__ import annotations

from pathlib import Path

import click

from ._common import params_option, read_params


@click.command(name="export-onnx")
@click.option(
    "--model",
    "model_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="cephalo checkpoint or the public HF best_model.pth.",
)
@click.option(
    "--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path), help="output .onnx file."
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="check report JSON [default: OUT with suffix .check.json].",
)
@params_option
def command(model_path: Path, out_path: Path, report_path: Path | None, params_path: Path) -> None:
    """Export a cephalo checkpoint to ONNX and check it with onnxruntime."""
    # deferred: `cephalo export-onnx --help` and the CLI's start-up import no library (cephalo.commands)
    from ..io import write_json
    from ..models import load_model
    from ..models.onnx_export import export_onnx

    onnx_params = read_params(params_path).model.onnx
    model, meta = load_model(model_path, "cpu")
    input_size = onnx_params.input_size or list(meta.input_size)
    click.echo(
        f"exporting {meta.arch} ({meta.num_landmarks} landmarks) at {input_size[0]}x{input_size[1]}, "
        "then checking with onnxruntime ...",
        err=True,
    )
    report = export_onnx(
        model,
        out_path,
        input_size,
        opset=onnx_params.opset,
        dynamic_batch=onnx_params.dynamic_batch,
        atol=onnx_params.atol,
        metadata={"cephalo_meta": meta.to_dict(), "cephalo_checkpoint": str(model_path)},
    )
    report["checkpoint"] = str(model_path)
    report["meta"] = meta.to_dict()
    report_path = report_path or out_path.with_suffix(".check.json")
    write_json(report_path, report)
    click.echo(
        f"wrote {out_path} ({report['bytes'] / 1e6:.1f} MB); onnxruntime vs torch max abs diff "
        f"{report['max_abs_diff']:.2e} (atol {report['atol']:g}); report {report_path}"
    )
