"""Training batches/s: the variant cache (memory-mapped images.npy) vs decoding + letterboxing
the original images on the fly, per DataLoader worker count, with the decode-only bound for the
same images, side by side in one run. Prints one JSON object.

    python benchmarks/bench_loading.py [--data DIR] [--n-images 32] [--size 768] [--batch 8]
                                       [--batches 10] [--workers 0 1 2]

``--data`` is a folder of images (default: ``../shared/data/isbi2015/RawImage/TrainingData``
when present, else synthetic 1935 x 2400 JPEGs written to a temporary folder).

Three per-sample paths, each through a ``torch.utils.data.DataLoader`` with N workers and the
same random batches (indices drawn with replacement, seed 0):

* ``cache``: copy row ``i`` out of the memmap (what ``cephalo.train.data.HeatmapDataset`` does);
* ``on_the_fly``: ``cephalo.preprocess.read_image`` + ``preprocess_image`` (letterbox ``size``);
* ``decode_only``: ``read_image`` alone (the result is dropped in the worker): the upper bound on
  any on-the-fly loader of these files, whatever its resize.

``cache`` and ``on_the_fly`` batches end in the same ``normalise(..., "imagenet")`` float32
(B, 3, S, S) tensor in the main process. Heatmap targets are not part of the batch (their cost is
the same for both paths). The first batch of each loader (worker start-up) is not timed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from cephalo.preprocess import normalise, preprocess_image, read_image

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "isbi2015" / "RawImage" / "TrainingData"
SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}
MODES = ("cache", "on_the_fly", "decode_only")


def synthetic_images(folder: Path, n: int, size: tuple[int, int] = (1935, 2400)) -> list[Path]:
    """Write ``n`` smooth-noise greyscale JPEGs of ``size`` (W, H) into ``folder``; return their paths."""
    import cv2

    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        img = cv2.GaussianBlur(rng.integers(0, 255, (size[1], size[0]), dtype=np.uint8), (0, 0), 3)
        p = folder / f"{i:03d}.jpg"
        cv2.imwrite(str(p), img)
        paths.append(p)
    return paths


def list_images(folder: Path, n: int) -> list[Path]:
    """The first ``n`` image files (by name) of ``folder``."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in SUFFIXES)[:n]


def build_cache(paths: list[Path], spec: dict, out: Path) -> np.ndarray:
    """Preprocess ``paths`` into a ``.npy`` (N, H, W) cache at ``out``; return it memory-mapped."""
    first, _ = preprocess_image(read_image(paths[0]), spec)
    cache = np.lib.format.open_memmap(out, mode="w+", dtype=first.dtype, shape=(len(paths), *first.shape))
    for k, p in enumerate(paths):
        cache[k] = preprocess_image(read_image(p), spec)[0]
    cache.flush()
    del cache
    return np.load(out, mmap_mode="r")


class _Samples(Dataset):
    """One sample per image for the three loading paths (module docstring)."""

    def __init__(self, mode: str, paths: list[Path], spec: dict, cache: np.ndarray | None):
        self.mode, self.paths, self.spec, self.cache = mode, paths, spec, cache

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        if self.mode == "cache":
            return torch.from_numpy(np.array(self.cache[i]))
        img = read_image(self.paths[i])
        if self.mode == "decode_only":
            return torch.tensor(img.shape)
        return torch.from_numpy(preprocess_image(img, self.spec)[0])


def loader_rate(ds: _Samples, batches: list[list[int]], workers: int) -> float:
    """Batches/s of ``ds`` through a DataLoader with ``workers`` workers; the first batch is warm-up."""
    loader = DataLoader(ds, batch_sampler=batches, num_workers=workers, prefetch_factor=2 if workers else None)
    t0 = None
    n = 0
    for b in loader:
        if ds.mode != "decode_only":
            x = normalise(b, "imagenet")
            assert x.ndim == 4 and x.shape[1] == 3
        if t0 is None:
            t0 = time.perf_counter()
        else:
            n += 1
    return n / (time.perf_counter() - t0)


def run(
    paths: list[Path],
    size: int = 768,
    batch: int = 8,
    batches: int = 10,
    workers: tuple[int, ...] = (0, 1, 2),
    source: str = "",
    progress: bool = False,
) -> dict:
    """Measure the three loading paths for each worker count (module docstring).

    Args:
        paths: original image files (any size; greyscale or colour, read as grey).
        size: letterbox side S (px) of the cache / on-the-fly output.
        batch: images per batch; batches: timed batches per loader (one more is drawn as warm-up).
        workers: DataLoader worker counts.

    Returns:
        dict with ``cache_build_s``, ``per_workers`` ``[{workers, cache_batches_per_s,
        on_the_fly_batches_per_s, decode_only_batches_per_s, speedup_cache_vs_on_the_fly,
        on_the_fly_vs_decode_only}]`` and the inputs.
    """
    from tqdm import tqdm

    spec = {"steps": [{"letterbox": {"size": size}}]}
    rng = np.random.default_rng(0)
    plan = [sorted(rng.choice(len(paths), batch, replace=True).tolist()) for _ in range(batches + 1)]
    with tempfile.TemporaryDirectory(prefix="cephalo-bench-") as tmp:
        t0 = time.perf_counter()
        cache = build_cache(paths, spec, Path(tmp) / "images.npy")
        build_s = time.perf_counter() - t0
        rows = []
        bar = tqdm(total=len(workers) * len(MODES), desc="loading", unit="run", disable=not progress)
        for w in workers:
            rec: dict = {"workers": int(w)}
            for mode in MODES:
                rec[f"{mode}_batches_per_s"] = loader_rate(_Samples(mode, paths, spec, cache), plan, int(w))
                bar.update(1)
            rec["speedup_cache_vs_on_the_fly"] = rec["cache_batches_per_s"] / rec["on_the_fly_batches_per_s"]
            rec["on_the_fly_vs_decode_only"] = rec["on_the_fly_batches_per_s"] / rec["decode_only_batches_per_s"]
            rows.append(rec)
        bar.close()
        del cache
    first = read_image(paths[0])
    return {
        "benchmark": "loading",
        "source": source,
        "n_images": len(paths),
        "original_size": [int(first.shape[1]), int(first.shape[0])],
        "input_size": size,
        "batch_size": batch,
        "timed_batches": batches,
        "cache_build_s": build_s,
        "per_workers": rows,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--n-images", type=int, default=32)
    ap.add_argument("--size", type=int, default=768)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="cephalo-bench-") as tmp:
        data = args.data or (DEFAULT_DATA if DEFAULT_DATA.is_dir() else None)
        if data is not None:
            paths, source = list_images(data, args.n_images), str(data)
        else:
            paths, source = synthetic_images(Path(tmp), args.n_images), "synthetic 1935x2400 JPEG"
        res = run(paths, args.size, args.batch, args.batches, tuple(args.workers), source, progress=True)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
