"""Mistakes in landmark predictions made outside cephalo, searched as composable transforms.

:mod:`.transforms` (each mistake an affine per image and axis), :mod:`.candidates` (the compositions
worth trying, fitted on half a group's images), :mod:`.search` (the simplest composition that
explains a group, confirmed on the other half), :mod:`.report` (global vs per-group explanations,
named :class:`Mistake` s), :mod:`.predictions` (the full report).
"""

from __future__ import annotations

from .predictions import PredictionsReport, diagnose_predictions
from .report import Mistake, explain, find_mistakes
from .transforms import Frame, Structure, apply, undo

__all__ = [
    "Mistake",
    "PredictionsReport",
    "diagnose_predictions",
    "explain",
    "find_mistakes",
    "Frame",
    "Structure",
    "apply",
    "undo",
]
