"""``cephalo calibrate --model CKPT --data VARIANT --split valid --out CKPT``: conformal prediction radii.

Predicts the ``--split`` images of a variant (the fine-tuning validation split of the target clinic:
never training images, never the evaluated test images), computes per-landmark split-conformal
quantiles of the radial error (:mod:`cephalo.uncertainty`) and writes a cephalo checkpoint that
carries them (top-level ``calibration``). ``--out`` may equal ``--model`` (replaced atomically).

Params ``calibrate:`` (all optional): ``coverages`` ([0.9, 0.95]), ``scale`` (``inverse_confidence``
| ``constant``), ``conf_floor`` (0.01), ``batch_size`` (4), ``device`` (auto), ``split`` (valid),
``shape_split`` (train: the split whose ground-truth landmarks fit the shape model of the review
flags, :class:`cephalo.flags.ShapeModel`; null = none), ``shape_quantile`` (0.99), ``shape_margin`` (1.5).
"""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import DataError
from ._common import params_option, read_params


@click.command(name="calibrate")
@click.option("--model", "model_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="checkpoint (cephalo .pt or the public HF best_model.pth)")
@click.option("--data", "data_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="preprocessing variant directory holding the calibration split")
@click.option("--split", default=None, help="calibration split [default: params calibrate.split, 'valid']")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="checkpoint to write (may be --model itself)")
@click.option("--progress/--no-progress", default=True, show_default=True)
@params_option
def command(model_path: Path, data_dir: Path, split: str | None, out_path: Path, progress: bool,
            params_path: Path) -> None:
    """Per-landmark conformal prediction radii from a held-out split, stored in the checkpoint."""
    cp = read_params(params_path, optional=True).calibrate
    split = split or cp.split
    from ..models import load_checkpoint, save_checkpoint
    from ..predict import resolve_device
    from ..preprocess import load_variant
    from ..uncertainty import calibrate_model, coverage_key

    if not model_path.is_file():
        raise DataError("model checkpoint not found", model_path)
    variant = load_variant(data_dir)
    model, meta, extra = load_checkpoint(model_path, "cpu")
    cal = calibrate_model(model.eval(), meta, variant, split, coverages=cp.coverages, scale=cp.scale,
                          conf_floor=cp.conf_floor, batch_size=cp.batch_size,
                          device=resolve_device(cp.device), progress=progress, shape_split=cp.shape_split,
                          shape_quantile=cp.shape_quantile, shape_margin=cp.shape_margin)
    cal["checkpoint"] = str(model_path)
    from ..models.checkpoint import read_checkpoint

    kind = read_checkpoint(model_path).kind  # public checkpoints' extras (their config) are not carried over
    keep = {k: v for k, v in extra.items() if k != "calibration"} if kind == "cephalo" else {}
    save_checkpoint(out_path, model.cpu(), meta, extra={**keep, "calibration": cal})
    q = cal["q_mm"].get(coverage_key(cp.coverages[0])) or []
    med = float(sorted(v for v in q if v is not None)[len(q) // 2]) if any(v is not None for v in q) else float("nan")
    click.echo(f"{out_path}: conformal radii ({cp.scale}) from {cal['n_images']} '{split}' images, "
               f"coverages {cp.coverages}; median landmark quantile at {cp.coverages[0]:g}: {med:.3g} mm")
