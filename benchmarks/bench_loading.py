"""Training batches/s: the variant cache (memory-mapped images.npy) vs decoding + letterboxing
the original images on the fly, side by side in one run. Prints one JSON object.

    python benchmarks/bench_loading.py [--data DIR] [--n-images 32] [--size 768] [--batch 8] [--batches 20]

``--data`` is a folder of images (default: ``../shared/data/isbi2015/RawImage/TrainingData``
when present, else synthetic 1935 x 2400 JPEGs written to a temporary folder). Both paths
end in the same ``normalise(..., "imagenet")`` float32 (B, 3, S, S) tensor.
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

from cephalo.preprocess import normalise, preprocess_image, read_image

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "isbi2015" / "RawImage" / "TrainingData"


def synthetic_images(folder: Path, n: int) -> list[Path]:
    import cv2

    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        img = cv2.GaussianBlur(rng.integers(0, 255, (2400, 1935), dtype=np.uint8), (0, 0), 3)
        p = folder / f"{i:03d}.jpg"
        cv2.imwrite(str(p), img)
        paths.append(p)
    return paths


def build_cache(paths: list[Path], spec: dict, out: Path) -> np.ndarray:
    first, _ = preprocess_image(read_image(paths[0]), spec)
    cache = np.lib.format.open_memmap(out, mode="w+", dtype=first.dtype, shape=(len(paths), *first.shape))
    for k, p in enumerate(paths):
        cache[k] = preprocess_image(read_image(p), spec)[0]
    cache.flush()
    del cache
    return np.load(out, mmap_mode="r")


def rate(fn, n_batches: int) -> float:
    fn()  # warm-up
    t = time.perf_counter()
    for _ in range(n_batches):
        fn()
    return n_batches / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--n-images", type=int, default=32)
    ap.add_argument("--size", type=int, default=768)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--batches", type=int, default=20)
    args = ap.parse_args()

    spec = {"steps": [{"letterbox": {"size": args.size}}]}
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="cephalo-bench-") as tmp:
        tmp = Path(tmp)
        data = args.data or (DEFAULT_DATA if DEFAULT_DATA.is_dir() else None)
        if data is not None:
            paths = sorted(p for p in Path(data).iterdir() if p.suffix.lower() in {".jpg", ".png", ".bmp", ".tif", ".tiff"})
            paths = paths[: args.n_images]
            source = str(data)
        else:
            paths = synthetic_images(tmp, args.n_images)
            source = "synthetic 1935x2400 JPEG"
        t0 = time.perf_counter()
        cache = build_cache(paths, spec, tmp / "images.npy")
        build_s = time.perf_counter() - t0

        def from_cache():
            idx = np.sort(rng.choice(len(paths), args.batch, replace=False))
            return normalise(np.asarray(cache[idx]), "imagenet")

        def on_the_fly():
            idx = rng.choice(len(paths), args.batch, replace=False)
            imgs = np.stack([preprocess_image(read_image(paths[i]), spec)[0] for i in idx])
            return normalise(imgs, "imagenet")

        assert tuple(from_cache().shape) == tuple(on_the_fly().shape) == (args.batch, 3, args.size, args.size)
        r_cache = rate(from_cache, args.batches)
        r_fly = rate(on_the_fly, max(3, args.batches // 4))
    print(json.dumps({
        "benchmark": "loading",
        "source": source,
        "n_images": len(paths),
        "input_size": args.size,
        "batch_size": args.batch,
        "cache_build_s": round(build_s, 3),
        "cache_batches_per_s": round(r_cache, 3),
        "on_the_fly_batches_per_s": round(r_fly, 3),
        "speedup": round(r_cache / r_fly, 2),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }, indent=2))


if __name__ == "__main__":
    main()
