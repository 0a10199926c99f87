"""The deterministic state-dict fill of the public-HRNet numerical reference.

Source: ``shared/specs/hf_hrnet_w32/README.md`` ("Numerical reference"). Filling a key-compatible
model this way and running the seeded 256x256 input must reproduce
``reference_output_256.npz`` (1, 19, 64, 64) float32 within 1e-4, without the real weights.
Also used to build a random checkpoint in the exact public ``best_model.pth`` format for tests.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch

__all__ = ["fill_tensor", "reference_state_dict", "reference_input", "read_keys_json", "public_training_dict"]

_DTYPES = {"float32": torch.float32, "float64": torch.float64, "int64": torch.int64, "float16": torch.float16}


def fill_tensor(key: str, shape: Iterable[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The reference value of tensor ``key`` with ``shape`` (recipe of the spec README).

    Seeded with ``zlib.crc32(key)``: ``num_batches_tracked`` zeros; ``running_var`` 1 + U[0,1);
    ``running_mean`` 0.1 N(0,1); 4-D weights N(0,1)/sqrt(fan_in); other ``*weight`` 0.5 + 0.1 N;
    everything else 0.1 N.
    """
    s = tuple(int(v) for v in shape)
    g = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    if key.endswith("num_batches_tracked"):
        return torch.zeros(s, dtype=torch.int64)
    if key.endswith("running_var"):
        t = 1 + torch.rand(s, generator=g)
    elif key.endswith("running_mean"):
        t = 0.1 * torch.randn(s, generator=g)
    elif len(s) == 4 and key.endswith("weight"):
        t = torch.randn(s, generator=g) / math.sqrt(s[1] * s[2] * s[3])
    elif key.endswith("weight"):
        t = 0.5 + 0.1 * torch.randn(s, generator=g)
    else:
        t = 0.1 * torch.randn(s, generator=g)
    return t.to(dtype)


def read_keys_json(path: str | Path) -> list[tuple[str, tuple[int, ...], torch.dtype]]:
    """``keys.json`` of the spec -> ordered ``[(key, shape, dtype), ...]`` (1832 entries for W32/19)."""
    data = json.loads(Path(path).read_text())
    return [(t["key"], tuple(t["shape"]), _DTYPES[t["dtype"]]) for t in data["tensors"]]


def reference_state_dict(
    spec: Mapping[str, torch.Tensor] | Iterable[tuple[str, tuple[int, ...], torch.dtype]],
) -> dict[str, torch.Tensor]:
    """Filled state dict, same keys/order/shapes as ``spec`` (a state dict or ``read_keys_json`` output)."""
    items = [(k, tuple(v.shape), v.dtype) for k, v in spec.items()] if isinstance(spec, Mapping) else list(spec)
    return {k: fill_tensor(k, s, d) for k, s, d in items}


def reference_input(size: int = 256) -> torch.Tensor:
    """The reference input: (1, 3, size, size) float32 N(0, 1), generator seed 1234."""
    return torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1234))


def public_training_dict(state_dict: Mapping[str, torch.Tensor], num_joints: int = 19) -> dict:
    """A dict in the layout of the public ``best_model.pth`` around ``state_dict`` (for tests/demos).

    Keys ``epoch``, ``model_state_dict``, ``optimizer_state_dict``, ``scheduler_state_dict``,
    ``best_val_loss``, ``best_val_mre``, ``config`` (INPUT.IMAGE_SIZE [768, 768],
    INPUT.HEATMAP_SIZE [192, 192], MODEL.NUM_JOINTS), as described in the spec README.
    """
    return {
        "epoch": 87,
        "model_state_dict": dict(state_dict),
        "optimizer_state_dict": {"state": {}, "param_groups": [{"lr": 1e-4, "params": []}]},
        "scheduler_state_dict": {"last_epoch": 87},
        "best_val_loss": 0.0012,
        "best_val_mre": 1.83,
        "config": {
            "INPUT": {"IMAGE_SIZE": [768, 768], "HEATMAP_SIZE": [192, 192], "SIGMA": 2},
            "MODEL": {"NAME": "pose_hrnet", "NUM_JOINTS": num_joints, "EXTRA": {"FINAL_CONV_KERNEL": 1}},
        },
    }
