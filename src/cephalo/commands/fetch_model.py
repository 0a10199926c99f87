"""``cephalo fetch-model --out FILE``: the public ISBI HRNet checkpoint, from Hugging Face or a file.

Params: ``model.source`` (optional; every key has a default)::

    kind: huggingface    # huggingface | local
    repo_id: cwlachap/hrnet-cephalometric-landmark-detection
    filename: best_model.pth
    revision: null       # branch/tag/commit; null -> main (warns: pin a 40-hex commit)
    cache_dir: null      # Hugging Face cache; null -> $HF_HUB_CACHE / ~/.cache/huggingface/hub
    path: null           # kind=local: a best_model.pth on disk
    sha256: null         # optional pin, verified
    offline: null        # true -> cache only; null -> follow HF_HUB_OFFLINE
    link: false          # hard-link FILE to the cached file instead of copying

``--checkpoint PATH`` overrides the source with a local file.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import click

from ..public_hrnet.checkpoint import load_public_hrnet
from ..public_hrnet.hub import ModelSource, fetch_model
from ._common import params_option, read_params


@click.command(name="fetch-model")
@click.option(
    "--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="checkpoint file to write"
)
@click.option(
    "--checkpoint",
    "checkpoint",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="use this local best_model.pth instead of model.source",
)
@params_option
def command(out: Path, checkpoint: Path | None, params_path: Path) -> None:
    """Get the public ISBI HRNet checkpoint (local file or Hugging Face), check that it loads into
    HRNet-W32 (every tensor present, every shape right), and write it to --out."""
    src = ModelSource(**read_params(params_path).model.source.model_dump())
    if checkpoint is not None:
        src = ModelSource(kind="local", path=str(checkpoint), sha256=src.sha256, link=src.link)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resolved = fetch_model(src, out, verify=load_public_hrnet)
    for w in caught:
        click.echo(f"cephalo: warning: {w.message}", err=True)
    origin = (
        f"{resolved.repo_id}/{resolved.filename}@{resolved.commit or resolved.revision}"
        if resolved.kind == "huggingface"
        else str(resolved.path)
    )
    click.echo(f"checkpoint {out} <- {origin} (sha256 {resolved.sha256[:16]}..., {resolved.size} bytes)")
