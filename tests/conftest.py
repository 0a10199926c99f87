"""Test-wide settings: offline switches, and the real data in ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Offline and quiet, whatever the machine: no hub, no telemetry, no update checks.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

from helpers import HRNET_SPEC, SHARED_DATA  # noqa: E402 - after the environment switches


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real cephalograms); skips where it is absent, as on a user's machine."""
    if not (SHARED_DATA / "isbi2015").is_dir():
        pytest.skip(f"real data not present at {SHARED_DATA} (only on the development machines)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def hrnet_spec() -> Path:
    """``tests/data/hf_hrnet_w32``: the public HRNet-W32's key list (keys.json), numerical reference
    (reference_output_256.npz) and published training split, kept in the repository (README there)."""
    p = HRNET_SPEC
    if not (p / "keys.json").is_file():
        pytest.skip(f"HRNet checkpoint spec not present at {p} (an incomplete copy of the repository)")
    return p


@pytest.fixture(scope="module")
def torch_one_thread():
    """One intra-op torch thread for a module: on the 2-core CI machine two contended threads make
    HRNet forward/backward many times slower."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def public_state(hrnet_spec):
    """A random state dict in the exact public HRNet-W32 format (keys.json order/shapes/dtypes,
    filled with the spec's deterministic recipe), built once per session."""
    from cephalo.public_hrnet.reference import read_keys_json, reference_state_dict

    return reference_state_dict(read_keys_json(hrnet_spec / "keys.json"))
