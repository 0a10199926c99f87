"""``cephalo index``: parse a data set into the validated Parquet landmark index + quality report."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import params_option, read_params


@click.command(name="index")
@click.option("--dataset", "dataset", required=True, help="data set name: a key of params data.datasets.")
@click.option(
    "--root",
    type=click.Path(file_okay=True, path_type=Path),
    required=True,
    help="release root folder (or the CSV file for the csv adapter).",
)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="output index (.parquet).")
@click.option(
    "--report",
    "report_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="folder for quality.json + quality.md.",
)
@params_option
def command(dataset: str, root: Path, out: Path, report_dir: Path | None, params_path: Path) -> None:
    """Parse a data set into the validated Parquet landmark index + quality report."""
    # deferred: `cephalo index --help` and the CLI's start-up import no library (cephalo.commands)
    from ..config.schema import suggest
    from ..errors import ConfigError
    from ..index import index_dataset

    datasets = read_params(params_path).data.datasets
    if dataset not in datasets:
        s = suggest(dataset, list(datasets))
        raise ConfigError(
            f"data.datasets.{dataset}: no such data set"
            + (f"; did you mean {s!r}?" if s else "")
            + f" (defined: {', '.join(datasets) or 'none'})",
            params_path,
        )
    if datasets[dataset].adapter is None:
        from ..config.schema import ADAPTER_NAMES

        raise ConfigError(f"data.datasets.{dataset}.adapter: missing (expected {ADAPTER_NAMES})", params_path)
    spec = datasets[dataset].model_dump()
    df, report = index_dataset(dataset, spec, root, out, report_dir)
    n_img = df["image_id"].nunique()
    msg = f"{out}: {n_img} images, {len(df)} rows"
    if report is not None:
        msg += f"; {report['exclusions']['count']} exclusion(s); report in {report_dir}"
        for d in report["annotator_disagreement"]:
            msg += f"; {d['annotators'][0]} vs {d['annotators'][1]} {d['mre_mm']:.2f} mm"
    click.echo(msg)
