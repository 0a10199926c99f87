"""Device memory of a training step, from measured activations; a batch that cannot fit is refused.

Peak memory of one optimiser step of a heatmap network (PyTorch, AdamW, optional autocast) is
modelled as::

    peak ~= MARGIN x (state + fixed + batch x per_image)

- ``state``: parameters + gradients + AdamW's two moments, all float32 (autocast keeps float32
  master weights): ``4 x parameter bytes``.
- ``per_image`` and ``fixed``: the bytes autograd keeps for the backward pass, counted exactly with
  :func:`torch.autograd.graph.saved_tensors_hooks` (each storage once, parameters excluded) in a
  forward pass of batch 1 and of batch 2 at the training dtype: ``per_image = saved(2) - saved(1)``,
  ``fixed = saved(1) - per_image`` (e.g. weights cast to bfloat16 by autocast). The heatmap output
  and its gradient are counted with them.
- ``MARGIN`` (1.25): the caching allocator's fragmentation, cuDNN workspaces and the transient
  buffers of the backward pass, which the saved tensors do not show. It is an assumption, stated
  here and in every estimate; ``benchmarks/gpu.sh`` measures the real peak where a GPU is at hand.

The count is device independent (the same tensors are saved on CPU and CUDA), so the table for a
GPU can be computed on a CPU (``benchmarks/bench_memory.py``). On CUDA the trainer measures it on
the device itself before the first step (:func:`check_batch_fits`) and stops with one line naming
``train.batch_size`` instead of a CUDA out-of-memory traceback.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..errors import ConfigError

__all__ = ["MARGIN", "MemoryEstimate", "estimate_training_memory", "check_batch_fits"]

#: allocator fragmentation, cuDNN workspaces, backward transients (an assumption, see the module doc)
MARGIN = 1.25
GiB = 1024**3


@dataclass(frozen=True)
class MemoryEstimate:
    """Training-step memory of one model at one input size and dtype (bytes)."""

    state_bytes: int  #: parameters + gradients + AdamW moments (float32)
    fixed_bytes: int  #: saved for backward, independent of the batch (autocast weight copies)
    per_image_bytes: int  #: saved for backward, per image of the batch
    input_size: tuple[int, int]  #: (W, H) px
    dtype: str  #: "float32" | "bfloat16" | "float16"
    margin: float = MARGIN

    def peak_bytes(self, batch_size: int) -> int:
        """Estimated peak device memory of a training step with ``batch_size`` images."""
        return int(self.margin * (self.state_bytes + self.fixed_bytes + batch_size * self.per_image_bytes))

    def largest_batch(self, available_bytes: int) -> int:
        """The largest batch whose estimate fits in ``available_bytes`` (0 when none does)."""
        room = available_bytes / self.margin - self.state_bytes - self.fixed_bytes
        return max(0, int(room // max(self.per_image_bytes, 1)))

    def to_dict(self) -> dict:
        return asdict(self)


def _saved_bytes(
    model: nn.Module, batch: int, size_wh: tuple[int, int], device: torch.device, amp_dtype: torch.dtype | None
) -> int:
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        if st.data_ptr() not in params:
            storages[st.data_ptr()] = st.nbytes()
        return t

    w, h = size_wh
    x = torch.zeros(batch, 3, h, w, device=device)
    amp = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), amp:
        out = model(x)
    total = sum(storages.values()) + 2 * out.numel() * 4  # float32 heatmaps in the loss + their gradient
    del out
    return total


def estimate_training_memory(
    model: nn.Module, size_wh: tuple[int, int], device: torch.device | str = "cpu", amp_dtype: torch.dtype | None = None
) -> MemoryEstimate:
    """Measure ``model``'s saved activations at ``size_wh`` (W, H) px and return the step's model.

    Runs two forward passes in training mode (batch 1 and 2, zeros) with autograd on, under
    ``torch.autocast(device, amp_dtype)`` when ``amp_dtype`` is given; BatchNorm running statistics
    are saved and restored, so the model is unchanged.
    """
    device = torch.device(device)
    was_training = model.training
    buffers = {
        k: v.detach().clone() for k, v in model.state_dict().items() if not v.is_floating_point() or "running" in k
    }
    model.train()
    try:
        s1 = _saved_bytes(model, 1, size_wh, device, amp_dtype)
        s2 = _saved_bytes(model, 2, size_wh, device, amp_dtype)
    finally:
        model.load_state_dict(buffers, strict=False)
        model.train(was_training)
    per_image = max(s2 - s1, 0)
    n_param_bytes = sum(p.numel() * 4 for p in model.parameters())
    return MemoryEstimate(
        state_bytes=4 * n_param_bytes,
        fixed_bytes=max(s1 - per_image, 0),
        per_image_bytes=per_image,
        input_size=(int(size_wh[0]), int(size_wh[1])),
        dtype=str(amp_dtype or torch.float32).removeprefix("torch."),
    )


def check_batch_fits(
    est: MemoryEstimate, batch_size: int, available_bytes: int, device_name: str, key: str = "train.batch_size"
) -> None:
    """Refuse a batch whose estimated peak exceeds ``available_bytes``, in one line naming ``key``.

    Raises:
        ConfigError: ``train.batch_size=16 needs about 92.1 GiB ... lower train.batch_size (7 fits) ...``.
    """
    need = est.peak_bytes(batch_size)
    if need <= available_bytes:
        return
    fits = est.largest_batch(available_bytes)
    w, h = est.input_size
    hint = f"{fits} fits" if fits else "not even 1 fits: lower the input size"
    raise ConfigError(
        f"{key}={batch_size} needs about {need / GiB:.1f} GiB on {device_name} ({available_bytes / GiB:.1f} GiB "
        f"free) at {w}x{h} px in {est.dtype} (estimate: measured activations x {est.margin}); lower {key} "
        f"({hint}) and raise train.accumulate to keep the effective batch"
    )
