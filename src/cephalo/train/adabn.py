"""AdaBN: unsupervised domain adaptation by re-estimating BatchNorm statistics.

Li, Wang, Shi, Liu, Hou, "Revisiting Batch Normalization For Practical Domain Adaptation"
(ICLR 2017 workshop; arXiv 1603.04779, 2016): replace every BatchNorm layer's running mean
and variance by the statistics of the *target* domain, computed over unlabelled target
images; all learned weights (convolutions, BN affine gamma/beta) stay as they are.

Here the statistics are the cumulative average over batches (PyTorch ``momentum=None``)
after ``reset_running_stats()``; dropout and everything else run in eval mode; no gradient
is computed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..preprocess import normalise

__all__ = ["adapt_batchnorm", "batchnorm_layers"]


def batchnorm_layers(model: nn.Module) -> list[tuple[str, nn.modules.batchnorm._BatchNorm]]:
    """``(name, module)`` of every BatchNorm (1d/2d/3d, SyncBatchNorm) layer tracking running stats."""
    return [
        (n, m)
        for n, m in model.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]


@torch.no_grad()
def adapt_batchnorm(
    model: nn.Module,
    images: np.ndarray,
    rows: Sequence[int],
    normalisation: Any,
    device: str | torch.device = "cpu",
    batch_size: int = 16,
    progress: bool = True,
) -> dict:
    """Re-estimate BatchNorm running statistics of ``model`` in place on ``images[rows]``.

    Args:
        model: heatmap model ``(B, 3, H, W) -> (B, K, h, w)``; left in eval mode.
        images: ``(N, H, W)`` uint8/uint16 preprocessed target images (variant memmap).
        rows: which images (unlabelled; labels are never read).
        normalisation: spec for ``cephalo.preprocess.normalise`` (the model's).
        device: where to run.
        batch_size: images per forward pass (>= 2 for meaningful batch statistics; the
            average is over batches, so equal-size batches weigh images equally).

    Returns:
        report dict: ``n_images``, ``n_batches``, ``n_bn_layers``, ``mean_abs_change_mean``,
        ``mean_abs_change_var`` (averaged over layers), ``source`` citation.

    Raises:
        ValueError: no BatchNorm layer, or no images.
    """
    from tqdm.auto import tqdm

    rows = [int(r) for r in rows]
    if not rows:
        raise ValueError("AdaBN needs at least one target image")
    bns = batchnorm_layers(model)
    if not bns:
        raise ValueError("the model has no BatchNorm layer with running statistics: AdaBN does not apply")
    device = torch.device(device)
    model.to(device).eval()
    before = {n: (m.running_mean.clone(), m.running_var.clone()) for n, m in bns}
    momenta = {n: m.momentum for n, m in bns}
    grads = {n: p.requires_grad for n, p in model.named_parameters()}
    for p in model.parameters():
        p.requires_grad_(False)
    n_batches = 0
    try:
        for _, m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average
            m.train()
        for s in tqdm(range(0, len(rows), batch_size), desc="AdaBN", disable=not progress, leave=False):
            r = rows[s : s + batch_size]
            x = normalise(torch.from_numpy(np.stack([np.asarray(images[i]) for i in r])).to(device), normalisation)
            model(x)
            n_batches += 1
    finally:
        for n, m in bns:
            m.momentum = momenta[n]
            m.eval()
        for n, p in model.named_parameters():
            p.requires_grad_(grads[n])
        model.eval()
    dm = [float((m.running_mean - before[n][0].to(m.running_mean.device)).abs().mean()) for n, m in bns]
    dv = [float((m.running_var - before[n][1].to(m.running_var.device)).abs().mean()) for n, m in bns]
    return {
        "method": "AdaBN",
        "source": "Li et al. 2016, Revisiting Batch Normalization For Practical Domain Adaptation (arXiv 1603.04779)",
        "n_images": len(rows),
        "n_batches": n_batches,
        "batch_size": batch_size,
        "n_bn_layers": len(bns),
        "mean_abs_change_mean": float(np.mean(dm)),
        "mean_abs_change_var": float(np.mean(dv)),
    }
