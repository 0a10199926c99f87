"""``cephalo make-demo --out DIR``: the embedded synthetic demo data (params ``demo:``)."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import params_option, read_params


@click.command(name="make-demo")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="output folder; writes OUT/isbi2015/ (ISBI 2015 layout) and OUT/aariz/Aariz/ (Aariz layout).")
@click.option("--seed", type=int, default=None, help="override params demo.seed.")
@click.option("--quiet", is_flag=True, help="no progress bars.")
@params_option
def command(out_dir: Path, seed: int | None, quiet: bool, params_path: Path) -> None:
    """Generate the synthetic demo data sets (ISBI 2015 source layout + Aariz target layout).

    Deterministic: the same params (demo.seed) give byte-identical files.
    """
    from ..demo import DemoConfig, make_demo

    demo = read_params(params_path).demo
    if seed is not None:
        demo = demo.model_copy(update={"seed": seed})
    cfg = DemoConfig.from_params(demo.model_dump(exclude_none=True))
    result = make_demo(out_dir, cfg, progress=not quiet)
    for name, recs in result.items():
        click.echo(f"{name}: {len(recs)} images -> {out_dir / name}")
