"""Synthetic data for the refinement tests: sharp sub-pixel markers on original-size images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

NAMES = ("sella", "nasion")
SIZE = 160           # original px (square)
SPACING = 0.1        # mm/px
TEMPLATE = np.array([[50.0, 60.0], [108.0, 96.0]])


def render(points: np.ndarray, rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """A uint8 image: smooth background + a small sharp disc (radius 1.5 px) per point, supersampled x4."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    img = 40.0 + 30.0 * (xx / size) + 20.0 * np.sin(yy / 17.0)
    ss = (np.arange(4) + 0.5) / 4 - 0.5
    for x, y in points:
        cover = np.zeros_like(img)
        for dy in ss:
            for dx in ss:
                cover += ((xx + dx - x) ** 2 + (yy + dy - y) ** 2 <= 1.5**2)
        img += 180.0 * cover / 16.0
    img += rng.normal(0, 3.0, img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def make_index(root: Path, n_train: int = 40, n_valid: int = 8, n_test: int = 12, seed: int = 0) -> Path:
    """PNG images + landmarks.csv (csv adapter) -> ``root/index.parquet``; returns the index path."""
    import cv2
    import pandas as pd

    from cephalo.index import index_dataset

    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    splits = ["train"] * n_train + ["valid"] * n_valid + ["test"] * n_test
    for i, split in enumerate(splits):
        pts = TEMPLATE + rng.uniform(-25, 25, size=(1, 2)) + rng.uniform(-4, 4, size=TEMPLATE.shape)
        name = f"s{i:03d}.png"
        cv2.imwrite(str(root / "images" / name), render(pts, rng))
        for nm, (x, y) in zip(NAMES, pts):
            rows.append({"image_path": f"images/{name}", "landmark": nm, "x": f"{x:.4f}", "y": f"{y:.4f}",
                         "split": split, "spacing_x_mm": SPACING, "spacing_y_mm": SPACING, "device": "synth"})
    pd.DataFrame(rows).to_csv(root / "landmarks.csv", index=False)
    out = root / "index.parquet"
    index_dataset("synth", {"adapter": "csv", "policy": "default", "options": {},
                            "hash_images": False}, root, out, progress=False)
    return out
