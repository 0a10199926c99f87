"""Random-number-generator state capture/restore for bitwise resume.

Captured at every checkpoint: python ``random``, numpy's global RNG, torch's CPU RNG and
every CUDA device's RNG. Data order and augmentation are pure functions of (seed, epoch,
sample) (see :mod:`cephalo.train.data`), so they need no saved state; the per-epoch
loader generator's state is recorded anyway for inspection.
"""

from __future__ import annotations

import random

import numpy as np
import torch

__all__ = ["capture_rng", "restore_rng"]


def capture_rng() -> dict:
    """A picklable dict of the global RNG states (python, numpy, torch CPU, torch CUDA)."""
    ver, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    # only tensors / builtins, so that torch.load(weights_only=True) reads it back
    st = {
        "python": [ver, list(internal), gauss],
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def restore_rng(st: dict) -> None:
    """Restore what :func:`capture_rng` returned (CUDA states only where devices match)."""
    ver, internal, gauss = st["python"]
    random.setstate((ver, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = st["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.int64).astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.as_tensor(st["torch"], dtype=torch.uint8).cpu())
    if "cuda" in st and torch.cuda.is_available():
        states = st["cuda"]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([torch.as_tensor(s, dtype=torch.uint8).cpu() for s in states])

