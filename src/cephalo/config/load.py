"""Load and validate a params file: :func:`load_params` (commands), :func:`validate_params` (Snakefile).

Errors are one line, ``<file>: <dotted.key>: <value> <problem> (expected <what>)``, raised as
:class:`cephalo.errors.ConfigError` (the console script prints ``cephalo: error: ...``, exit 1).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from .messages import format_validation_error, validate_section
from .schema import Params

__all__ = [
    "load_params",
    "read_params_file",
    "validate_params",
    "validate_section",
    "format_validation_error",
    "check_pipeline",
]


def read_params_file(path: str | Path) -> dict:
    """The raw mapping of a params YAML file (no schema check).

    Raises:
        ConfigError: missing file, invalid YAML, or a top level that is not a mapping.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError("params file not found", path) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"invalid YAML: {e}".replace("\n", " "), path) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("params file must hold a mapping at the top level", path)
    return data


def load_params(path: str | Path) -> Params:
    """Read and validate a params file (every section, its defaults filled in).

    Raises:
        ConfigError: missing/unreadable file, or the first bad value / unknown key, in one line
            naming the file and the dotted key.
    """
    return validate_params(read_params_file(path), source=path)


def validate_params(data: Mapping[str, Any], source: str | Path | None = None) -> Params:
    """Validate a params mapping (e.g. Snakemake's ``config``) against :class:`Params`.

    ``source`` names the file in error messages.

    Raises:
        ConfigError: one line naming ``source`` and the dotted key.
    """
    return validate_section(Params, data, "", source)


# --- cross-section consistency of the workflow --------------------------------------------
def check_pipeline(params: Params, source: str | Path | None = None) -> None:
    """Check that ``pipeline:`` only names data sets and variants the file defines.

    Raises:
        ConfigError: the first inconsistency, naming the dotted key.
    """
    pipe = params.pipeline
    if pipe is None:
        raise ConfigError("pipeline: missing (the workflow needs it)", source)
    datasets = params.data.datasets
    errors = []
    for name in list(pipe.raw) + list(pipe.download):
        if name not in datasets:
            errors.append(f"pipeline: data set {name!r} has no data.datasets.{name} entry")
    for name in pipe.raw:
        if name in datasets and datasets[name].adapter is None:
            errors.append(f"data.datasets.{name}.adapter: missing (pipeline.raw indexes it)")
    for name in pipe.download:
        if pipe.raw.get(name) != f"resources/raw/{name}":
            errors.append(f"pipeline.raw.{name}: a downloaded data set lives in resources/raw/{name}")
    if pipe.target not in pipe.raw:
        errors.append(f"pipeline.target: {pipe.target!r} is not in pipeline.raw")
    for name in pipe.source:
        if name not in pipe.raw:
            errors.append(f"pipeline.source: {name!r} is not in pipeline.raw")
        if name == pipe.target:
            errors.append(f"pipeline.source: {name!r} is also the target")
    for v in list(pipe.variants) + [pipe.source_variant]:
        if v not in params.variants:
            errors.append(f"pipeline: variant {v!r} has no variants.{v} entry")
    if len(pipe.train_source) + len(pipe.fetch_source) != 1:
        errors.append(
            "pipeline: exactly one of train_source ([DATASET]) and fetch_source ([public]) must name the source model"
        )
    for name in pipe.train_source:
        if name not in pipe.source:
            errors.append(f"pipeline.train_source: {name!r} is not in pipeline.source")
    for name in pipe.refine_source:
        if name not in pipe.source:
            errors.append(f"pipeline.refine_source: {name!r} is not in pipeline.source")
    for v in pipe.refine_variants:
        if v not in pipe.variants:
            errors.append(f"pipeline.refine_variants: {v!r} is not in pipeline.variants")
    if pipe.refine_variants and not pipe.refine_source:
        errors.append(
            "pipeline.refine_variants: needs pipeline.refine_source (the fine-tuned refiner starts "
            "from the source refiner)"
        )
    if errors:
        raise ConfigError("; ".join(errors), source)
