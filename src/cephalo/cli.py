"""The ``cephalo`` console script.

Each subcommand lives in ``cephalo/commands/<name>.py`` as a ``click.Command``
named ``command`` and is imported only when it is run (heavy imports deferred).
Exit codes: 0 success, 1 a data/config/environment problem (one-line message on
stderr), 2 a usage error (click's own).
"""

from __future__ import annotations

import importlib
import sys

import click

from .errors import CephaloError

#: subcommand name -> (module under cephalo.commands, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "download": ("download", "Fetch a data set release (pooch: pinned URL + checksum) and unpack it."),
    "index": ("index", "Parse a data set into the validated Parquet landmark index + quality report."),
    "preprocess": ("preprocess", "Build one preprocessing variant: image cache + variant index."),
    "fetch-model": ("fetch_model", "Get the public ISBI HRNet checkpoint (local file or Hugging Face)."),
    "train": ("train", "Fine-tune (or train) a heatmap model on a preprocessing variant."),
    "adapt": ("adapt", "Unsupervised AdaBN adaptation of a model to unlabelled target images."),
    "evaluate": ("evaluate", "Predict on a variant and report MRE/SDR in mm, with diagnosis and plots."),
    "predict": ("predict", "Landmarks for an image or folder (PNG/JPEG/BMP/TIFF/DICOM) -> JSON/CSV/overlays."),
    "diagnose": ("diagnose", "What is wrong with predictions made by any pipeline: MRE in mm, mistakes undone."),
    "compare": ("compare", "Table of evaluated runs (zero-shot vs fine-tuned, per variant)."),
    "export-onnx": ("export_onnx", "Export a cephalo checkpoint to ONNX and check it with onnxruntime."),
    "make-demo": ("make_demo", "Generate the embedded synthetic demo data sets (ISBI + Aariz layouts)."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in SUBCOMMANDS:
            return None
        module_name, help_text = SUBCOMMANDS[name]
        cmd = importlib.import_module(f"cephalo.commands.{module_name}").command
        if not cmd.help:
            cmd.help = help_text
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Short help from the table, so `cephalo --help` imports no subcommand.
        with formatter.section("Commands"):
            formatter.write_dl([(n, h) for n, (_, h) in SUBCOMMANDS.items()])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cephalo")
def main() -> None:
    """cephalo: cephalometric landmark detection, from raw release to MRE in millimetres."""


def run() -> None:
    """Entry point: turn CephaloError into a one-line message and exit code 1."""
    try:
        main.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except CephaloError as e:
        click.echo(f"cephalo: error: {e}", err=True)
        sys.exit(1)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    else:
        sys.exit(0)


if __name__ == "__main__":
    run()
