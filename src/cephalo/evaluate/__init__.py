"""Evaluation: predictions back in original pixels, metrics in mm, zero-shot diagnosis, plots.

Submodules: :mod:`metrics` (pure numpy), :mod:`diagnosis`, :mod:`human` (annotator limit),
:mod:`leakage`, :mod:`plots`, :mod:`runner` (``evaluate_model``, ``evaluate_predictions``),
:mod:`compare` (tables of runs). Heavy imports (torch, matplotlib) are deferred.
"""

from .metrics import (
    DEFAULT_THRESHOLDS_MM,
    bootstrap_ci,
    paired_wilcoxon,
    radial_errors_mm,
    summarise,
)

__all__ = ["DEFAULT_THRESHOLDS_MM", "radial_errors_mm", "summarise", "bootstrap_ci", "paired_wilcoxon"]
