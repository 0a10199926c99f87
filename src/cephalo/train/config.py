"""Training configuration: the ``train:`` params section as a typed, validated object.

The schema (types, defaults, checks) lives in :mod:`cephalo.config.schema` - one home for every
params section; this module re-exports the training part for the library. ``cephalo train``
loads the params file once (:func:`cephalo.config.load_params`), picks the stage
(:meth:`cephalo.config.schema.TrainSection.for_stage`) and passes the :class:`TrainConfig` on.
Bad values raise :class:`cephalo.errors.ConfigError` naming ``train.<key>``.
"""

from __future__ import annotations

from ..config.schema import INIT_SOURCES, PRECISIONS, EMAConfig, InitConfig, TrainConfig

__all__ = ["TrainConfig", "InitConfig", "EMAConfig", "PRECISIONS", "INIT_SOURCES"]
