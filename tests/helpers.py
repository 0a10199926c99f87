"""Helpers shared by test modules (import with ``from helpers import ...``; pytest puts tests/ on
the path). conftest.py holds fixtures only."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: the shared folder beside the repository (real data, specs); absent on a user's clone
SHARED = Path(os.environ.get("CEPHALO_SHARED", REPO.parent / "shared"))
SHARED_DATA = SHARED / "data"
SHARED_SPECS = SHARED / "specs"
