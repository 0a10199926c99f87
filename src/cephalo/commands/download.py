"""``cephalo download DATASET --out DIR``: fetch a release and unpack it (all or nothing).

Params: ``data.datasets.<DATASET>.download`` (optional; every key has a default)::

    url: null            # mirror URL; null -> the release's pinned URL
    known_hash: null     # "md5:<hex>" / "sha256:<hex>" (or {file name: hash}); null -> published one
    cache_dir: null      # null -> $CEPHALO_CACHE or the OS cache folder of "cephalo"
    keep_archive: true   # keep the downloaded archive in the cache
    timeout_s: 60        # HTTP connect/read timeout
    link: false          # --from-folder: hard-link instead of copying
    folder: null         # an unpacked copy to take instead of downloading (as --from-folder)

Command-line options win over params.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import click

from ..config.schema import DatasetDownload
from ..datasets import release_names
from ..datasets.fetch.release import FetchSettings, fetch_release
from ._common import params_option, read_params


@click.command(name="download")
@click.argument("dataset", type=click.Choice(release_names()))
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="folder to create with the unpacked release",
)
@click.option(
    "--mirror", "mirror", default=None, help="download from this URL instead of the release URL (same checksum)"
)
@click.option(
    "--archive",
    "archives",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="use a local archive (repeatable: ISBI ships several RARs)",
)
@click.option(
    "--from-folder",
    "folder",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="use a folder that already holds the unpacked release",
)
@click.option("--known-hash", "known_hash", default=None, help="pin the checksum, e.g. sha256:<hex> (overrides params)")
@click.option("--force", is_flag=True, help="replace a non-empty --out that does not hold this release")
@click.option("--progress/--no-progress", default=True, show_default=True, help="tqdm progress bars")
@params_option
def command(
    dataset: str,
    out: Path,
    mirror: str | None,
    archives: tuple[Path, ...],
    folder: Path | None,
    known_hash: str | None,
    force: bool,
    progress: bool,
    params_path: Path,
) -> None:
    """Fetch a data set release (pooch: pinned URL + checksum) and unpack it into --out."""
    spec = read_params(params_path).data.datasets.get(dataset)
    cfg = spec.download if spec is not None else DatasetDownload()
    if sum(bool(x) for x in (mirror, archives, folder)) > 1:
        raise click.UsageError("give at most one of --mirror, --archive, --from-folder")
    if not (mirror or archives or folder) and cfg.folder:
        folder = Path(cfg.folder)
    url = mirror or (None if (archives or folder) else cfg.url)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = _fetch(dataset, out, url, archives, folder, known_hash, cfg, progress, force)
    for w in caught:
        click.echo(f"cephalo: warning: {w.message}", err=True)
    click.echo(f"{dataset}: release unpacked in {path}")


def _fetch(dataset, out, url, archives, folder, known_hash, cfg: DatasetDownload, progress, force) -> Path:
    return fetch_release(
        dataset,
        out,
        url=url,
        archive=list(archives) if archives else None,
        folder=folder,
        known_hash=known_hash or cfg.known_hash,
        progress=progress,
        force=force,
        settings=FetchSettings(
            cache_dir=cfg.cache_dir, keep_archive=cfg.keep_archive, timeout_s=cfg.timeout_s, link=cfg.link
        ),
    )
