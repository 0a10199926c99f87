"""cephalo's one config layer: the typed schema of every ``params.yaml`` section, with its defaults.

Every section of the params file (``demo``, ``data``, ``variants``, ``model``, ``codec``,
``train``, ``adapt``, ``evaluate``, ``tracking``, ``pipeline``, ``predict``) is a pydantic v2
model in :mod:`cephalo.config.schema` (``extra="forbid"``: an unknown key is an error). The
defaults live there and nowhere else; library constants that other code imports (e.g.
``cephalo.evaluate.metrics.DEFAULT_THRESHOLDS_MM``) are read from these models.

How it is used:

* every ``cephalo`` command calls :func:`load_params` once and reads typed attributes
  (``params.predict.batch_size``); command-line options override them;
* the library receives these typed objects (or plain values taken from them) and never reads a
  params file;
* the Snakefile (``workflow/rules/common.smk``) validates the effective params with
  :func:`validate_params` at parse time, so ``snakemake -n`` rejects what a run would reject;
  ``cephalo check-params FILE`` does the same for DVC users (``dvc repro`` also stops at the
  first stage's ``cephalo`` command with the same message).

A bad value or unknown key is a :class:`cephalo.errors.ConfigError` of one line naming the file,
the dotted key, the value and what is expected, e.g.
``params.yaml: predict.batch_size: 'four' is not an integer (expected an integer >= 1)``;
an unknown key suggests the closest valid one (``did you mean 'epochs'?``).

**Adding a params key is one line**: add a field with its type and default to the section's model
in :mod:`cephalo.config.schema` (``new_key: PosInt = 3``), then the value in ``params.yaml``
(and ``python profiles/build.py``). Use the shared constrained types at the top of the schema
(``PosInt``, ``NonNegFloat``, ``Prob``, ``Device``, ...) so the error message says what is expected.
A new section is one model plus one field on :class:`~cephalo.config.schema.Params`.
"""

from __future__ import annotations

from .load import load_params, read_params_file, validate_params
from .messages import format_validation_error, validate_section
from .schema import (
    AdaptConfig,
    AugmentConfig,
    CodecConfig,
    DataConfig,
    DatasetSpec,
    DemoConfigSchema,
    DiagnosisConfig,
    EMAConfig,
    EvaluateConfig,
    InitConfig,
    ModelConfig,
    Params,
    PipelineConfig,
    PredictConfig,
    TrackingSection,
    TrainConfig,
    VariantSpec,
)

__all__ = [
    "AdaptConfig",
    "AugmentConfig",
    "CodecConfig",
    "DataConfig",
    "DatasetSpec",
    "DemoConfigSchema",
    "DiagnosisConfig",
    "EMAConfig",
    "EvaluateConfig",
    "InitConfig",
    "ModelConfig",
    "Params",
    "PipelineConfig",
    "PredictConfig",
    "TrackingSection",
    "TrainConfig",
    "VariantSpec",
    "format_validation_error",
    "load_params",
    "read_params_file",
    "validate_params",
    "validate_section",
]
