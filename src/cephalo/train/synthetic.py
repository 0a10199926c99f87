"""Synthetic preprocessing variants with learnable landmarks, for tests and benchmarks.

:func:`make_synthetic_variant` writes a directory in exactly the layout that
:func:`cephalo.preprocess.load_variant` reads (``images.npy``, ``variant.parquet``,
``variant.json``), without any real image. Each image is a smooth background plus one
small bright disc per landmark; the landmark layout is a fixed template shifted and
scaled per image, so a small network can learn it in a few steps. Originals are
``scale`` times larger than the preprocessed frame (a letterbox-like affine per image),
with a per-image pixel spacing, so millimetre validation and the inverse affine are
exercised. Used by ``tests/test_train*.py`` and ``benchmarks/bench_train.py`` (the GPU
machine has no data set).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..geometry import apply_affine, invert, scale_translate
from ..preprocess import normalisation_spec
from ..preprocess.variant import ImagesShape, variant_columns, variant_meta, write_variant

__all__ = ["make_synthetic_variant"]


def make_synthetic_variant(
    out_dir: str | Path,
    n_images: int = 24,
    size: int | tuple[int, int] = 64,
    landmark_names: Sequence[str] = ("sella", "nasion", "orbitale", "porion", "menton"),
    splits: Sequence[str] | dict = (("train", 0.75), ("valid", 0.25)),
    seed: int = 0,
    dtype: str = "uint8",
    spacing_mm: tuple[float, float] = (0.1, 0.1),
    orig_scale: float = 4.0,
) -> Path:
    """Write a synthetic variant directory and return its path.

    Args:
        out_dir: the directory to create (replaced whole, atomically).
        n_images: N.
        size: ``W`` (square) or ``(W, H)`` preprocessed pixels.
        landmark_names: K canonical names (channel order).
        splits: ``((name, fraction), ...)`` in file order (the last takes the remainder).
        seed: numpy seed of the layout and noise.
        dtype: ``uint8`` or ``uint16`` cache.
        spacing_mm: pixel spacing of the *original* images (mm/px, x y); the i-th image
            gets ``spacing * (1 + 0.05 * (i % 3))`` so spacings differ per image.
        orig_scale: original px per preprocessed px (before per-image variation).

    Landmarks: ``(N, K, 2)`` float64 xy, sub-pixel, pixel-centre convention.
    """
    out_dir = Path(out_dir)
    W, H = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    K = len(landmark_names)
    rng = np.random.default_rng(seed)
    # template in [0.2, 0.8] of the frame, fixed for the data set
    template = rng.uniform(0.25, 0.75, size=(K, 2)) * [W - 1, H - 1]
    maxv = 255 if dtype == "uint8" else 65535
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    images = np.zeros((n_images, H, W), dtype=dtype)
    lms = np.zeros((n_images, K, 2))
    radius = max(1.0, min(W, H) / 40.0)
    for i in range(n_images):
        shift = rng.uniform(-0.12, 0.12, size=2) * [W, H]
        scale = rng.uniform(0.9, 1.1)
        centre = np.array([(W - 1) / 2, (H - 1) / 2])
        p = (template - centre) * scale + centre + shift + rng.normal(0, 0.01 * min(W, H), size=(K, 2))
        lms[i] = p
        bg = 0.15 + 0.1 * (xx / W) + 0.05 * np.sin(yy / H * 3.0 + i)
        img = bg + rng.normal(0, 0.02, size=(H, W))
        for k in range(K):
            d2 = (xx - p[k, 0]) ** 2 + (yy - p[k, 1]) ** 2
            img = img + (0.5 + 0.4 * k / max(K - 1, 1)) * np.exp(-d2 / (2 * radius**2))
        images[i] = np.clip(img * maxv, 0, maxv).astype(dtype)

    # split names in file order
    names: list[str] = []
    spl = list(splits.items()) if isinstance(splits, dict) else [tuple(s) for s in splits]
    for j, (name, frac) in enumerate(spl):
        cnt = n_images - len(names) if j == len(spl) - 1 else int(round(frac * n_images))
        names += [name] * cnt
    names = names[:n_images]

    sx = np.array([spacing_mm[0] * (1 + 0.05 * (i % 3)) for i in range(n_images)])
    sy = np.array([spacing_mm[1] * (1 + 0.05 * (i % 3)) for i in range(n_images)])
    affines = np.zeros((n_images, 2, 3))
    orig_sizes = np.zeros((n_images, 2), dtype=np.int64)
    lm_orig = np.zeros_like(lms)
    for i in range(n_images):
        f = orig_scale * (1.0 + 0.1 * (i % 2))  # original px per preprocessed px
        ow, oh = int(round(W * f)), int(round(H * f * 1.05))
        s = min(W / ow, H / oh)
        new_w, new_h = ow * s, oh * s
        pad_x, pad_y = (W - new_w) / 2, (H - new_h) / 2
        # pixel-edge mapping of a resize plus letterbox padding
        affines[i] = scale_translate(s, s, 0.5 * s - 0.5 + pad_x, 0.5 * s - 0.5 + pad_y)
        orig_sizes[i] = (ow, oh)
        lm_orig[i] = apply_affine(invert(affines[i]), lms[i])

    cols = variant_columns(
        {
            "image_id": [f"syn{i:04d}" for i in range(n_images)],
            "split": names,
            "dataset": ["synthetic"] * n_images,
            "device": [f"device{i % 2}" for i in range(n_images)],
            "image_path": [""] * n_images,
            "spacing_x_mm": sx,
            "spacing_y_mm": sy,
            "orig_width": orig_sizes[:, 0].astype(np.int32),
            "orig_height": orig_sizes[:, 1].astype(np.int32),
        },
        affines,
        list(landmark_names),
        lms,
        lm_orig,
    )
    meta = variant_meta(
        name="synthetic",
        spec={"steps": [{"name": "letterbox", "size": [W, H]}], "synthetic": {"seed": seed}},
        ground_truth="mean",
        normalisation=normalisation_spec("imagenet"),
        landmark_names=list(landmark_names),
        annotators=[],
        images=ImagesShape(n_images=n_images, input_size=(W, H), dtype=dtype),
        source_index={"path": "", "sha256": f"synthetic-{seed}-{n_images}-{W}x{H}"},
        reference_indexes={},
        fingerprint=f"synthetic-{seed}-{n_images}-{W}x{H}-{K}",
    )
    return write_variant(out_dir, images, cols, meta)
