"""Process layout: single process, or DDP under ``torchrun`` (one process per device).

``torchrun`` sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT``;
:func:`setup` initialises the process group with NCCL on CUDA and gloo on CPU, and pins
each process to ``cuda:LOCAL_RANK``. Rank 0 alone logs and writes files. Device names are
resolved by :func:`cephalo.inference.resolve_device` (re-exported here).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..inference import resolve_device

__all__ = ["DistInfo", "setup", "teardown", "resolve_device", "barrier", "broadcast_floats", "all_min", "all_sum"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size``, ``local_rank`` on its node, ``device``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(device_spec: str = "auto") -> DistInfo:
    """Read the torchrun environment, start the process group when ``WORLD_SIZE > 1``.

    Returns the :class:`DistInfo`. Safe to call when a group is already initialised.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_spec, local, key="train.device")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank=rank, world_size=world, local_rank=local, device=device)


def teardown() -> None:
    """Destroy the process group if this module's :func:`setup` created one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def broadcast_floats(values: list[float], info: DistInfo) -> list[float]:
    """Rank 0's ``values`` on every rank (float64)."""
    if not info.distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=info.device if _nccl() else "cpu")
    dist.broadcast(t, src=0)
    return [float(v) for v in t.cpu()]


def all_min(value: float, info: DistInfo) -> float:
    """The minimum of ``value`` over ranks."""
    if not info.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=info.device if _nccl() else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return float(t.item())


def all_sum(values: list[float], info: DistInfo) -> list[float]:
    """Element-wise sum of ``values`` over ranks (float64)."""
    if not info.distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=info.device if _nccl() else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return [float(v) for v in t.cpu()]


def _nccl() -> bool:
    return dist.is_initialized() and dist.get_backend() == "nccl"
