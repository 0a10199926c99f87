"""``cephalo preprocess``: build one preprocessing variant (image cache + variant index)."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import params_option, read_params


@click.command(name="preprocess")
@click.option(
    "--index",
    "index_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="landmark index (.parquet) from `cephalo index`.",
)
@click.option("--variant", "variant", required=True, help="variant name: a key of params variants.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="output variant directory (images.npy, variant.parquet, variant.json).",
)
@click.option("--force", is_flag=True, help="rebuild even when the output's fingerprint is up to date.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="show progress bars.")
@params_option
def command(index_path: Path, variant: str, out: Path, force: bool, progress: bool, params_path: Path) -> None:
    """Build one preprocessing variant: image cache + variant index.

    Params ``variants.<NAME>``: ``steps`` (list of steps: letterbox, stretch, spacing, clahe,
    histogram_match), optional ``ground_truth`` (annotator policy; default the index's
    recorded policy, else ``mean``) and ``normalisation`` (imagenet | unit | zscore).
    Only a changed (index, spec) recomputes: an up-to-date output is left as it is.
    """
    # deferred: `cephalo preprocess --help` and the CLI's start-up import no library (cephalo.commands)
    from ..config.schema import suggest
    from ..errors import ConfigError
    from ..preprocess import build_variant

    variants = read_params(params_path).variants
    if variant not in variants:
        s = suggest(variant, list(variants))
        raise ConfigError(
            f"variants.{variant}: no such variant"
            + (f"; did you mean {s!r}?" if s else "")
            + f" (defined: {', '.join(variants) or 'none'})",
            params_path,
        )
    spec = variants[variant]
    try:
        res = build_variant(
            index_path,
            {"steps": spec.steps},
            out,
            name=variant,
            ground_truth=spec.ground_truth,
            normalisation=spec.normalisation,
            force=force,
            progress=progress,
        )
    except ValueError as e:  # unknown step / normalisation name: a params problem
        raise ConfigError(f"params: variants.{variant}: {e}", params_path) from None
    if res.skipped:
        click.echo(f"{out}: up to date (fingerprint {res.fingerprint[:12]}), {res.n_images} images; nothing to do")
    else:
        click.echo(f"{out}: {res.n_images} images preprocessed (variant {variant}, fingerprint {res.fingerprint[:12]})")
