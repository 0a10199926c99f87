"""``cephalo compare``: a table of evaluated runs with CIs and paired Wilcoxon tests."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import params_option, read_params


@click.command(name="compare")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=True, path_type=Path),
              help="output stem: writes <stem>.csv and <stem>.md (a .csv/.md suffix is replaced)")
@params_option
def command(run_dirs: tuple[Path, ...], out_path: Path, params_path: Path) -> None:
    """Table of evaluated runs (zero-shot vs fine-tuned, per variant)."""
    if params_path.exists():
        read_params(params_path)  # validates the file; compare has no params of its own
    import pandas as pd

    from ..evaluate.compare import compare_runs, to_markdown
    from ..io import atomic_path

    rows, pairs = compare_runs(run_dirs)
    stem = out_path.with_suffix("") if out_path.suffix in (".csv", ".md") else out_path
    csv_path, md_path = stem.with_name(stem.name + ".csv"), stem.with_name(stem.name + ".md")
    df = pd.DataFrame(rows)
    if pairs:  # the paired tests also as CSV beside the table
        with atomic_path(stem.with_name(stem.name + "_pairs.csv")) as tmp:
            pd.DataFrame(pairs).to_csv(tmp, index=False, float_format="%.6g")
    with atomic_path(csv_path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    md = to_markdown(rows, pairs)
    from ..evaluate.measurement_errors import comparison_markdown, comparison_rows
    from ..evaluate.runner import read_metrics

    mrows = comparison_rows([(r["run"], read_metrics(d)) for r, d in zip(rows, run_dirs)])
    if mrows:  # cephalometric measurements and coverage, beside the landmark table
        with atomic_path(stem.with_name(stem.name + "_measurements.csv")) as tmp:
            pd.DataFrame(mrows).to_csv(tmp, index=False, float_format="%.6g")
        md += comparison_markdown(mrows)
    with atomic_path(md_path) as tmp:
        tmp.write_text(md)
    click.echo(md, nl=False)
