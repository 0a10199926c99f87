"""``cephalo evaluate``: predict on a variant split, report MRE/SDR in mm, diagnose, plot, track."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from ..errors import DataError
from ._common import params_option, read_params


@click.command(name="evaluate")
@click.option(
    "--model",
    "model_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="checkpoint (cephalo .pt or the public HF best_model.pth), or a bundle.json "
    "(global model + refiner, cephalo train-refiner)",
)
@click.option(
    "--data",
    "data_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="preprocessing variant directory (cephalo preprocess output)",
)
@click.option("--split", default="test", show_default=True, help="split to evaluate ('all' for every image)")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="output folder (metrics.json, CSVs, plots, overlays, diagnosis.md)",
)
@click.option("--name", default=None, help="run name (default: the output folder's name)")
@click.option(
    "--index",
    "index_path",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="landmark index with two or more annotators: human limit beside the model",
)
@click.option(
    "--stage",
    default="evaluate",
    show_default=True,
    help="evaluation stage tag: source, naive, zero_shot, adabn, finetune, refine_source or refine",
)
@click.option(
    "--normalisation",
    type=click.Choice(["imagenet", "unit", "zscore", "raw"]),
    default=None,
    help="override the model's input normalisation (raw = grey values 0-255 unscaled): reproduces a "
    "preprocessing mistake, e.g. the clinic's first run with the public model",
)
@click.option(
    "--decoder",
    type=click.Choice(["dark", "argmax", "soft_argmax"]),
    default=None,
    help="override the model's heatmap decoder (soft_argmax at temperature 1 on the raw outputs = "
    "the public HRNet demo)",
)
@params_option
def command(
    model_path: Path,
    data_dir: Path,
    split: str,
    out_dir: Path,
    name: str | None,
    index_path: Path | None,
    stage: str,
    normalisation: str | None,
    decoder: str | None,
    params_path: Path,
) -> None:
    """Predict on a variant and report MRE/SDR in mm, with diagnosis and plots."""
    params = read_params(params_path)
    ep = params.evaluate
    # deferred: `cephalo evaluate --help` and the CLI's start-up import no library (cephalo.commands)
    from ..evaluate.leakage import file_sha256
    from ..evaluate.runner import EvalContext, EvalSettings, PredictOptions, evaluate_model
    from ..models import load_model
    from ..preprocess import load_variant
    from ..uncertainty import read_calibration

    if not model_path.is_file():
        raise DataError("model checkpoint not found", model_path)
    variant = load_variant(data_dir)
    bundle, refine = None, None
    from ..refine import is_bundle

    if is_bundle(model_path):
        from ..refine import image_refiner, read_bundle, variant_refiner

        bundle = read_bundle(model_path)
        model, meta = load_model(bundle.global_path)
        refiner = bundle.load_refiner(ep.device)
        refine = variant_refiner(
            image_refiner(
                refiner,
                list(meta.landmark_names),
                tta=bundle.tta,
                iterations=bundle.iterations,
                batch_size=bundle.batch_size,
            ),
            variant,
        )
    else:
        model, meta = load_model(model_path)
    human = None
    if index_path is not None and ep.human_limit:
        from ..evaluate.human import human_limit
        from ..index import read_index

        rows = range(len(variant)) if split == "all" else [i for i, s in enumerate(variant.splits) if s == split]
        ids = [variant.image_ids[i] for i in rows]
        names = [n for n in variant.landmark_names if n in set(meta.landmark_names)]
        try:
            human = human_limit(read_index(index_path), ids, names, ep.thresholds_mm)
        except ValueError as e:
            raise DataError(str(e), index_path) from None
        if human is not None:
            human["source"] = str(index_path)
    command_line = (
        "cephalo " + shlex.join(sys.argv[1:])
        if sys.argv and "evaluate" in sys.argv
        else (f"cephalo evaluate --model {model_path} --data {data_dir} --split {split} --out {out_dir}")
    )
    from .. import provenance

    info = {
        "stage": stage,
        "command": command_line,
        "checkpoint": str(model_path),
        "checkpoint_sha256": file_sha256(model_path),
        "provenance": provenance.collect(params, seed=ep.seed, device=ep.device),
    }
    if bundle is not None:
        info["refine"] = {
            "bundle": str(model_path),
            "global": str(bundle.global_path),
            "global_sha256": file_sha256(bundle.global_path),
            "refiner": str(bundle.refiner_path),
            "refiner_sha256": file_sha256(bundle.refiner_path),
            "iterations": bundle.iterations,
            "tta": bundle.tta.to_dict(),
        }
    name = name or out_dir.name
    try:
        result = evaluate_model(
            model,
            meta,
            variant,
            split,
            out_dir,
            settings=EvalSettings.from_config(ep),
            context=EvalContext(label=name, human=human, info=info, calibration=read_calibration(model_path)),
            predict=PredictOptions(
                batch_size=ep.batch_size, device=ep.device, refine=refine, normalisation=normalisation, decoder=decoder
            ),
        )
    except ValueError as e:
        raise DataError(str(e), data_dir) from None
    o = result["overall"]
    if result.get("leakage") and result["leakage"].get("warning"):
        click.echo(f"warning: {result['leakage']['warning']}", err=True)
    sdr = ", ".join(f"SDR@{t} {100 * v:.1f}%" for t, v in o["sdr"].items() if v is not None)
    click.echo(
        f"{name}: {o['n_images']} images, MRE {o['mre_mm']:.3f} mm [{o['ci95']['mre_mm'][0]:.3f}, "
        f"{o['ci95']['mre_mm'][1]:.3f}], {sdr}"
    )
    click.echo(f"diagnosis: {result['diagnosis']['summary']}")
    for c in ((result.get("uncertainty") or {}).get("coverage") or {}).values():
        if c.get("overall") is not None and c.get("mean_radius") is not None:
            click.echo(
                f"coverage of the {100 * c['nominal']:.0f}% radii: {100 * c['overall']:.1f}% "
                f"(mean radius {c['mean_radius']:.2f} mm)"
            )
    meas = (result.get("measurements") or {}).get("per_measurement") or {}
    if meas:
        click.echo(
            "measurements (MAE, human limit, class accuracy): "
            + ", ".join(
                f"{k} {r['mae']:.2f}"
                + (f"/{r['human_mae']:.2f}" if r.get("human_mae") is not None else "")
                + (f" {100 * r['accuracy']:.0f}%" if r.get("accuracy") is not None else "")
                for k, r in meas.items()
                if r.get("mae") is not None
            )
        )

    _track(params, ep, result, variant, meta, name, out_dir, model_path, info)


def _track(params, ep, result, variant, meta, name, out_dir, model_path, info) -> None:
    """One MLflow run: the evaluation's own settings as params, figures as metrics, linked to its training run.

    ``info`` is the evaluation's provenance record (``stage``, ``command``, ``checkpoint_sha256``, ...).
    """
    stage, command_line = info["stage"], info["command"]
    # deferred: `cephalo evaluate --help` and the CLI's start-up import no library (cephalo.commands)
    from .. import tracking
    from ..evaluate.leakage import file_sha256

    cfg = tracking.config_from_params(params.tracking.model_dump(), root=Path.cwd())
    dataset = str(variant.datasets[0]) if len(variant) else "unknown"
    codec = dict(getattr(meta, "codec", {}) or {})
    own = {
        "stage": stage,
        "split": result.get("split"),
        "variant": result.get("variant"),
        "gt_policy": result.get("gt_policy"),
        "model": str(model_path),
        "model_arch": getattr(meta, "arch", None),
        "model_input_size": "x".join(str(v) for v in (getattr(meta, "input_size", None) or [])),
        "decoder": codec.get("decoder"),
        "codec_convention": codec.get("convention"),
        "n_landmarks": len(result.get("landmarks") or []),
        "n_boot": ep.n_boot,
        "confidence_level": (result.get("settings") or {}).get("confidence_level"),
        "bootstrap_seed": ep.seed,
        "thresholds_mm": ep.thresholds_mm,
    }
    figures = dict(result.get("figures") or {})  # SDR in percent, CI bounds, /all landmark set
    meas = (result.get("measurements") or {}).get("per_measurement") or {}
    # the ~60 per-measurement figures go to a table artifact, not the metrics: Compare shows the headline
    meas_rows = [
        {"measurement": k, **{f: r.get(f) for f in ("mae", "bias", "human_mae", "accuracy")}} for k, r in meas.items()
    ]
    figures["coverage"] = {
        lv: c.get("overall") for lv, c in ((result.get("uncertainty") or {}).get("coverage") or {}).items()
    }
    from ..provenance import weights_chain

    # the weights evaluated and those they come from: a bundle's global model, a calibrated or
    # AdaBN checkpoint's source (the chain each derived checkpoint stores), newest first
    derived = [info["checkpoint_sha256"]]
    if info.get("refine"):
        derived.append(info["refine"]["global_sha256"])
    derived += weights_chain(getattr(meta, "provenance", None))
    mpath = out_dir / "metrics.json"
    run = tracking.RunRecord(
        dataset=dataset,
        stage=stage,
        variant=str(result.get("variant") or ""),
        run_name=name,
        experiment=tracking.experiment_name(cfg, params, dataset),
        command=command_line,
        data_index_hash=result.get("data_index_hash"),
        checkpoint=model_path,
        checkpoint_hash=info["checkpoint_sha256"],
        provenance=info.get("provenance"),
        link_checkpoints=derived,
    )
    tracking.log_run(
        cfg,
        run,
        params=own,
        metrics=figures,
        artifacts=[
            mpath,
            out_dir / "per_landmark.csv",
            out_dir / "per_image.csv",
            out_dir / "measurements.csv",
            out_dir / "diagnosis.md",
            out_dir / "plots",
            out_dir / "overlays",
        ],
        tags={"metrics_sha256": file_sha256(mpath), "eval_dir": str(out_dir)},
        tables={"measurement_errors": meas_rows} if meas_rows else None,
    )
