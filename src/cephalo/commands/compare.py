"""``cephalo compare``: evaluated runs over the same landmarks, with CIs, paired tests and figures."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import params_option, read_params


@click.command(name="compare")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(dir_okay=True, path_type=Path),
    help="output stem: writes <stem>.csv, <stem>.md, <stem>.html (self-contained), "
    "<stem>_pairs.csv and <stem>_plots/*.png (a .csv/.md/.html suffix is replaced)",
)
@click.option(
    "--summary-dir",
    "summary_dir",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="also write one compact <run>.json per run here (what `dvc metrics show` displays)",
)
@params_option
def command(run_dirs: tuple[Path, ...], out_path: Path, summary_dir: Path | None, params_path: Path) -> None:
    """Table of evaluated runs (zero-shot vs fine-tuned, per variant) over the landmarks they share.

    Figures over the landmarks all runs share (``/shared``) come first, those over each run's own
    landmarks (``/all``) beside; human figures are given like with like. Warns (stderr and the
    report) when the runs were produced by different code or in different environments. With
    params ``tracking`` enabled, the ``/shared`` figures are also logged to each run's MLflow run.
    """
    # deferred: `cephalo compare --help` and the CLI's start-up import no library (cephalo.commands)
    import pandas as pd

    from .. import provenance
    from ..evaluate.compare import compare_runs, provenance_warnings, public_rows, summary_figures, to_markdown
    from ..evaluate.report_html import write_html
    from ..io import atomic_dir, atomic_path, write_json

    params = read_params(params_path, missing_ok=True)  # only tracking: is read
    rows, pairs = compare_runs(run_dirs)
    warnings = provenance_warnings([r["_run"] for r in rows])
    for w in warnings:
        click.echo(f"warning: {w}", err=True)
    stem = out_path.with_suffix("") if out_path.suffix in (".csv", ".md", ".html") else out_path
    name = stem.name
    csv_path, md_path, html_path = (stem.with_name(name + s) for s in (".csv", ".md", ".html"))
    with atomic_path(stem.with_name(name + "_pairs.csv")) as tmp:
        pd.DataFrame(pairs, columns=None if pairs else ["run_a", "run_b"]).to_csv(tmp, index=False, float_format="%.6g")
    with atomic_path(csv_path) as tmp:
        pd.DataFrame(public_rows(rows)).to_csv(tmp, index=False, float_format="%.6g")
    md = to_markdown(rows, pairs, warnings)
    from ..evaluate.measurement_errors import comparison_markdown, comparison_rows

    mrows = comparison_rows([(r["run"], r["_run"]["metrics"]) for r in rows])
    if mrows:  # cephalometric measurements and coverage, beside the landmark table
        with atomic_path(stem.with_name(name + "_measurements.csv")) as tmp:
            pd.DataFrame(mrows).to_csv(tmp, index=False, float_format="%.6g")
        md += comparison_markdown(mrows)
    with atomic_path(md_path) as tmp:
        tmp.write_text(md)
    prov = provenance.collect()
    footer = (
        f"cephalo {prov['cephalo_version']}, commit {(prov['git_commit'] or '?')[:10]}"
        f"{'+dirty' if prov['git_dirty'] else ''}; {prov['cpu_model']}, {prov['threads']} threads; "
        + ", ".join(f"{k} {v}" for k, v in prov["packages"].items())
    )
    write_html(rows, md, html_path, stem.with_name(name + "_plots"), footer=footer)
    if summary_dir is not None:  # replaced whole: no summary of a run that is no longer compared
        with atomic_dir(summary_dir) as tmp:
            for r in rows:
                write_json(tmp / f"{r['run']}.json", summary_figures(r))
    _log_shared_figures(params, rows)
    click.echo(md, nl=False)


def _log_shared_figures(params, rows: list[dict]) -> None:
    """Add the ``/shared`` figures (and the comparison's landmark count) to each run's MLflow run."""
    # deferred: `cephalo compare --help` and the CLI's start-up import no library (cephalo.commands)
    from .. import tracking

    if not params.tracking.enabled:
        return
    cfg = tracking.config_from_params(params.tracking.model_dump(), root=Path.cwd())
    for r in rows:
        figs = {k: v for k, v in r.items() if k.endswith("/shared") or "/shared/" in k}
        tracking.log_to_evaluation(cfg, metrics_sha256=r["_run"].get("metrics_sha256"), run_name=r["run"], metrics=figs)
