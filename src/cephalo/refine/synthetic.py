"""Synthetic data where resolution matters: small sharp markers at sub-pixel positions.

For the refinement tests (``tests/test_refine.py``) and the ablation benchmark
(``benchmarks/bench_refine.py --synthetic``): 160 x 160 px images at 0.1 mm/px with one disc of
radius 1.5 px per landmark (supersampled x4, so its centroid is the sub-pixel position) on a smooth
background with noise. A global model at a 32-px letterbox sees 0.5 mm pixels (2 mm heatmap
pixels); a refiner at 0.2 mm/px sees the disc.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..config.schema import RefineConfig
from ..index import index_dataset
from ..preprocess import build_variant
from ..train import TrainConfig, train_on_variant
from .bundle import write_bundle
from .train import train_refiner

NAMES = ("sella", "nasion")
SIZE = 160  # original px (square)
SPACING = 0.1  # mm/px
TEMPLATE = np.array([[50.0, 60.0], [108.0, 96.0]])


__all__ = ["NAMES", "SIZE", "SPACING", "TEMPLATE", "make_index", "render", "train_pair"]


def render(points: np.ndarray, rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """A uint8 image: smooth background + a small sharp disc (radius 1.5 px) per point, supersampled x4."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    img = 40.0 + 30.0 * (xx / size) + 20.0 * np.sin(yy / 17.0)
    ss = (np.arange(4) + 0.5) / 4 - 0.5
    for x, y in points:
        cover = np.zeros_like(img)
        for dy in ss:
            for dx in ss:
                cover += (xx + dx - x) ** 2 + (yy + dy - y) ** 2 <= 1.5**2
        img += 180.0 * cover / 16.0
    img += rng.normal(0, 3.0, img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def make_index(root: Path, n_train: int = 40, n_valid: int = 8, n_test: int = 12, seed: int = 0) -> Path:
    """PNG images + landmarks.csv (csv adapter) -> ``root/index.parquet``; returns the index path."""
    import cv2
    import pandas as pd

    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    splits = ["train"] * n_train + ["valid"] * n_valid + ["test"] * n_test
    for i, split in enumerate(splits):
        pts = TEMPLATE + rng.uniform(-25, 25, size=(1, 2)) + rng.uniform(-4, 4, size=TEMPLATE.shape)
        name = f"s{i:03d}.png"
        cv2.imwrite(str(root / "images" / name), render(pts, rng))
        for nm, (x, y) in zip(NAMES, pts, strict=True):
            rows.append(
                {
                    "image_path": f"images/{name}",
                    "landmark": nm,
                    "x": f"{x:.4f}",
                    "y": f"{y:.4f}",
                    "split": split,
                    "spacing_x_mm": SPACING,
                    "spacing_y_mm": SPACING,
                    "device": "synth",
                }
            )
    pd.DataFrame(rows).to_csv(root / "landmarks.csv", index=False)
    out = root / "index.parquet"
    index_dataset(
        "synth", {"adapter": "csv", "policy": "default", "options": {}, "hash_images": False}, root, out, progress=False
    )
    return out


def train_pair(
    root: Path, index: Path, *, global_epochs: int = 16, refiner_epochs: int = 6, seed: int = 0, progress: bool = False
) -> dict:
    """Train the global model (32-px letterbox) and the refiner (32-px windows at 0.2 mm/px) on ``index``.

    Both ``timm:resnet10t`` from scratch, CPU, no augmentation; jitter ``auto`` (1 x the global
    validation MRE). Returns the paths: ``variant``, ``global``, ``refiner``, ``bundle``.
    """
    root = Path(root)
    vd = root / "lb32"
    build_variant(index, {"steps": [{"letterbox": {"size": 32}}]}, vd, progress=False)
    kw = {"pretrained": False}
    cfg = TrainConfig.from_dict(
        {
            "epochs": global_epochs,
            "batch_size": 4,
            "lr": 3e-3,
            "head_lr": 3e-3,
            "device": "cpu",
            "num_workers": 0,
            "augment": None,
            "warmup_epochs": 0.5,
            "seed": seed,
        }
    )
    train_on_variant(
        vd, root / "global", cfg, arch="timm:resnet10t", model_kwargs=kw, codec_params={"sigma": 1.5}, progress=progress
    )
    rcfg = RefineConfig.from_dict(
        {
            "spacing_mm": 0.2,
            "window": 32,
            "arch": "timm:resnet10t",
            "kwargs": kw,
            "crops_per_landmark": 4,
            "jitter_mm": "auto",
            "jitter_scale": 1.0,
            "max_jitter_mm": 2.5,
        }
    )
    train_refiner(
        index,
        root / "refiner",
        cfg.with_overrides(epochs=refiner_epochs, batch_size=16),
        rcfg,
        global_ckpt=root / "global" / "best.pt",
        codec_params={"sigma": 1.5},
        progress=progress,
    )
    write_bundle(
        root / "refiner" / "bundle.json",
        root / "global" / "best.pt",
        root / "refiner" / "best.pt",
        rcfg.inference_settings(),
    )
    return {
        "variant": vd,
        "global": root / "global" / "best.pt",
        "refiner": root / "refiner" / "best.pt",
        "bundle": root / "refiner" / "bundle.json",
    }
