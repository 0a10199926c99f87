"""Training batches from a preprocessing cache: memmap images -> augmentation -> heatmap targets.

Reproducibility design
----------------------
* The order of samples in epoch ``e`` is a permutation drawn from a ``torch.Generator``
  seeded with ``(seed, e)`` (:class:`EpochBatchSampler`); it does not depend on earlier
  epochs, so a run resumed at any epoch boundary sees exactly the batches of an
  uninterrupted run.
* Augmentation of sample ``i`` in epoch ``e`` is seeded with ``(seed, e, i)``, so its
  result does not depend on the worker that processes it nor on ``num_workers``.
* Worker processes are seeded per worker and epoch (python, numpy, torch) through
  :func:`seed_worker` for anything else that draws random numbers.
* Global batches are cut from the permutation and each DDP rank takes its slice, so
  ``P`` processes with micro-batch ``b`` see the same global batches as one process with
  micro-batch ``P * b``.

Targets are encoded in the workers with the codec (``codec.encode``), never inside the
model step; images stay uint8/uint16 until :func:`cephalo.preprocess.normalise` runs on
the device.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

__all__ = ["HeatmapDataset", "EpochBatchSampler", "seed_worker", "make_loader", "sample_seed", "loader_generator"]


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 32-bit seed for (run seed, epoch, sample index) via numpy's SeedSequence."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch), int(index)]).generate_state(1)[0])


class HeatmapDataset(Dataset):
    """Samples of a preprocessing variant with heatmap targets.

    Args:
        images: ``(N, H, W)`` uint8/uint16 array (usually the variant's memmap), preprocessed
            frame; read one row at a time.
        landmarks: ``(N, K, 2)`` float64, xy, preprocessed pixels (pixel-centre origin),
            NaN missing.
        indices: which rows of ``images`` this dataset serves (e.g. the train split).
        codec: object with ``encode(coords (K, 2)) -> (heatmaps (K, h, w) float32, weights (K,) float32)``.
        augment_factory: ``seed -> callable(image, keypoints (K, 2)) -> (image, keypoints)``
            (``cephalo.augment.build_augmentation(cfg, seed)``) or ``None`` for no augmentation.
        seed: run seed.

        encode: encode targets here (``codec.encode``, in the loader workers); ``False`` leaves
            it to the training step (``codec.encode_torch`` on the GPU).

    Item: dict with ``image`` (H, W) uint8/uint16 tensor, ``keypoints`` (K, 2) float64 (after
    augmentation, preprocessed px, NaN missing), ``index`` int (row in ``images``), and with
    ``encode``: ``heatmaps`` (K, h, w) float32, ``weights`` (K,) float32.
    """

    def __init__(
        self,
        images: np.ndarray,
        landmarks: np.ndarray,
        indices: Sequence[int],
        codec,
        augment_factory: Callable[[int], Callable] | None = None,
        seed: int = 0,
        encode: bool = True,
    ):
        self.images = images
        self.landmarks = np.asarray(landmarks, dtype=np.float64)
        self.indices = np.asarray(indices, dtype=np.int64)
        self.codec = codec
        self.augment_factory = augment_factory
        self.seed = int(seed)
        self.encode = bool(encode)
        self.epoch = 0
        self._aug = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.indices)

    def _augment(self, image: np.ndarray, kp: np.ndarray, s: int):
        if self.augment_factory is None:
            return image, kp
        if self._aug is not None and hasattr(self._aug, "reseed"):  # cephalo.augment.Augmenter
            self._aug.reseed(s)
        elif self._aug is not None and hasattr(self._aug, "set_random_seed"):  # albumentations.Compose
            self._aug.set_random_seed(s)
        else:
            # rebuild: a callable without set_random_seed is seeded only at construction
            self._aug = self.augment_factory(s)
        return self._aug(image, kp)

    def __getitem__(self, i: int) -> dict:
        row = int(self.indices[i])
        image = np.array(self.images[row])  # copy out of the memmap
        kp = self.landmarks[row].copy()
        image, kp = self._augment(image, kp, sample_seed(self.seed, self.epoch, row))
        kp = np.asarray(kp, dtype=np.float64)
        item = {
            "image": torch.from_numpy(np.ascontiguousarray(image)),
            "keypoints": torch.from_numpy(kp.copy()),
            "index": row,
        }
        if self.encode:
            heatmaps, weights = self.codec.encode(kp)
            item["heatmaps"] = torch.as_tensor(np.asarray(heatmaps, dtype=np.float32))
            item["weights"] = torch.as_tensor(np.asarray(weights, dtype=np.float32))
        return item


class EpochBatchSampler(Sampler[list[int]]):
    """Batches of dataset positions for one rank; the permutation is a pure function of (seed, epoch).

    Args:
        n: dataset length.
        batch_size: micro-batch per rank.
        world_size, rank: DDP layout (1, 0 for one process).
        shuffle: permute (training) or keep order (validation).
        drop_last: drop an incomplete final global batch (keeps BatchNorm batches full
            and every rank in step).
        seed: run seed.
        max_batches: cap per epoch (``None``: all).

    The global batch ``g`` is positions ``perm[g*B:(g+1)*B]`` with ``B = batch_size *
    world_size``; rank ``r`` yields ``perm[g*B + r*b : g*B + (r+1)*b]``.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        world_size: int = 1,
        rank: int = 0,
        shuffle: bool = True,
        drop_last: bool = True,
        seed: int = 0,
        max_batches: int | None = None,
    ):
        self.n, self.b, self.world, self.rank = int(n), int(batch_size), int(world_size), int(rank)
        self.shuffle, self.drop_last, self.seed = shuffle, drop_last, int(seed)
        self.max_batches = max_batches
        self.epoch = 0
        self.start = 0  # first batch to yield (a run resumed in the middle of an epoch)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch; ``start`` skips its first batches (mid-epoch resume)."""
        self.epoch = int(epoch)
        self.start = int(start)

    def generator(self) -> torch.Generator:
        """The ``torch.Generator`` that draws this epoch's permutation (fresh, seeded)."""
        g = torch.Generator()
        g.manual_seed(sample_seed(self.seed, self.epoch, -1 & 0xFFFFFFFF))
        return g

    def _global_batches(self) -> list[np.ndarray]:
        perm = torch.randperm(self.n, generator=self.generator()).numpy() if self.shuffle else np.arange(self.n)
        B = self.b * self.world
        nb = self.n // B if self.drop_last else -(-self.n // B)
        if self.max_batches is not None:
            nb = min(nb, int(self.max_batches))
        return [perm[g * B : (g + 1) * B] for g in range(nb)]

    def __iter__(self) -> Iterator[list[int]]:
        for gb in self._global_batches()[self.start :]:
            part = gb[self.rank * self.b : (self.rank + 1) * self.b]
            yield [int(i) for i in part]

    def __len__(self) -> int:
        """Batches in the whole epoch (``start`` not subtracted)."""
        return len(self._global_batches())


class _WorkerSeeder:
    """``worker_init_fn`` seeding python/numpy/torch per (seed, epoch, rank, worker)."""

    def __init__(self, seed: int, epoch: int, rank: int):
        self.seed, self.epoch, self.rank = seed, epoch, rank

    def __call__(self, worker_id: int) -> None:
        seed_worker(self.seed, self.epoch, self.rank, worker_id)


def seed_worker(seed: int, epoch: int, rank: int, worker_id: int) -> int:
    """Seed python ``random``, numpy's global RNG and torch in a data-loader worker; returns the seed."""
    s = int(
        np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch), int(rank), int(worker_id)]).generate_state(1)[0]
    )
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)
    return s


def loader_generator(seed: int, epoch: int, rank: int) -> torch.Generator:
    """The DataLoader's own generator for (seed, epoch, rank).

    The loader draws its worker base seed from it instead of torch's global RNG, so creating a
    loader (again, after a resume) never shifts the global RNG that dropout uses.
    """
    g = torch.Generator()
    g.manual_seed(int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch), int(rank), 7]).generate_state(1)[0]))
    return g


def make_loader(
    dataset: HeatmapDataset,
    sampler: EpochBatchSampler,
    epoch: int,
    num_workers: int,
    pin_memory: bool,
    rank: int = 0,
    start: int = 0,
) -> DataLoader:
    """A DataLoader for one epoch (workers re-created and re-seeded each epoch).

    ``pin_memory`` should be True on CUDA (then copy with ``non_blocking=True``); ``start``
    skips the first batches of the epoch (mid-epoch resume).
    """
    dataset.set_epoch(epoch)
    sampler.set_epoch(epoch, start)
    return DataLoader(
        dataset,
        generator=loader_generator(dataset.seed, epoch, rank),
        batch_sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin_memory,
        worker_init_fn=_WorkerSeeder(dataset.seed, epoch, rank) if num_workers > 0 else None,
        persistent_workers=False,
        prefetch_factor=4 if num_workers > 0 else None,
    )
