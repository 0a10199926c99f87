"""Benchmark: index a synthetic 1000-image Aariz-format release, image sizes from headers vs decoding.

Usage: python benchmarks/bench_index.py [--images 1000] [--size 384x480] [--keep DIR]
Prints one JSON object (seconds; images/s). The release is generated in a temporary folder
(small noisy PNGs, both annotators, CVM stages, the machine-mapping CSV with a BOM).
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
from PIL import Image

from cephalo.datasets import create_adapter
from cephalo.datasets.base import _header
from cephalo.index import build_index, write_index
from cephalo.landmarks import AARIZ29


def make_release(root: Path, n: int, w: int, h: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    a = root / "Aariz"
    rows = ["cephalogram_id,machine,pixel_size,image_format,mode"]
    splits = ["train"] * int(n * 0.7) + ["valid"] * int(n * 0.15)
    splits += ["test"] * (n - len(splits))
    for i, split in enumerate(splits):
        cid = f"synth{i:05d}"
        d = a / split
        (d / "Cephalograms").mkdir(parents=True, exist_ok=True)
        img = rng.integers(0, 255, (h, w), dtype=np.uint8)
        Image.fromarray(img).save(d / "Cephalograms" / f"{cid}.png", compress_level=1)
        for who, off in (("Senior", 0), ("Junior", 2)):
            p = d / "Annotations" / "Cephalometric Landmarks" / f"{who} Orthodontists" / f"{cid}.json"
            p.parent.mkdir(parents=True, exist_ok=True)
            xy = rng.uniform([w * 0.2, h * 0.2], [w * 0.8, h * 0.8], (29, 2)).round()
            p.write_text(
                json.dumps(
                    {
                        "ceph_id": cid,
                        "landmarks": [
                            {
                                "landmark_id": lm.source_id,
                                "title": lm.title,
                                "symbol": lm.symbol,
                                "value": {"x": int(xy[k, 0]) + off, "y": int(xy[k, 1])},
                            }
                            for k, lm in enumerate(AARIZ29)
                        ],
                    }
                )
            )
        c = d / "Annotations" / "CVM Stages" / f"{cid}.json"
        c.parent.mkdir(parents=True, exist_ok=True)
        c.write_text(json.dumps({"ceph_id": cid, "cvm_stage": {"value": int(rng.integers(1, 7))}}))
        rows.append(f"{cid},ART Plus,0.1,png,{split}")
    (a / "cephalogram_machine_mappings.csv").write_text("\ufeff" + "\n".join(rows) + "\n")


def run(images: int = 1000, size: tuple[int, int] = (384, 480), keep: Path | None = None) -> dict:
    """Index a synthetic ``images``-image Aariz release twice (sizes from headers, then from decoded pixels).

    Returns a dict: ``images``, ``image_size`` [W, H], ``rows``, ``generate_s``, per mode
    (``header``, ``pixels``) ``parse_s``/``build_s``/``write_s`` seconds and ``build_images_per_s``,
    ``build_s_per_1000`` (seconds per 1000 images), and ``speedup_header_vs_pixels``
    (pixels build_s / header build_s).
    """
    w, h = size
    with tempfile.TemporaryDirectory(prefix="cephalo-bench-") as tmp:
        root = keep or Path(tmp)
        t0 = time.perf_counter()
        make_release(root, images, w, h)
        t_make = time.perf_counter() - t0
        out = {
            "images": images,
            "image_size": [w, h],
            "rows": None,
            "generate_s": round(t_make, 3),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        }
        for mode in ("header", "pixels"):
            _header.cache_clear()
            t0 = time.perf_counter()
            res = create_adapter("aariz").parse(root)
            t_parse = time.perf_counter() - t0
            _header.cache_clear()  # the adapter's format check reads headers too; measure the index alone
            t1 = time.perf_counter()
            df = build_index(res, root, size_from=mode, progress=False)
            t_build = time.perf_counter() - t1
            t2 = time.perf_counter()
            write_index(df, root / f"index_{mode}.parquet")
            t_write = time.perf_counter() - t2
            out["rows"] = len(df)
            out[mode] = {
                "parse_s": round(t_parse, 4),
                "build_s": round(t_build, 4),
                "write_s": round(t_write, 4),
                "build_images_per_s": round(images / t_build, 1),
                "build_s_per_1000": 1000.0 * t_build / images,
            }
        out["speedup_header_vs_pixels"] = round(out["pixels"]["build_s"] / out["header"]["build_s"], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--size", default="384x480", help="W x H of each synthetic image")
    ap.add_argument("--keep", type=Path, default=None, help="generate into this folder instead of a temp one")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.lower().split("x"))
    print(json.dumps(run(args.images, (w, h), args.keep), indent=2))


if __name__ == "__main__":
    main()
