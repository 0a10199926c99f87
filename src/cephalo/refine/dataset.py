"""Training windows for the refiner: jittered around the ground truth, cut from the original images.

:func:`build_crop_set` returns a :class:`CropSet`, an in-memory object with the attributes of a
``cephalo.preprocess.Variant`` (``images``, ``affines``, ``landmarks``, ...), so the one training
loop (``cephalo.train``) trains the refiner exactly as it trains the global model: heatmap targets
from ``cephalo.codecs``, validation MRE in mm through ``geometry.invert(affine)`` and
``cephalo.evaluate.metrics``.

One window per (image, landmark, repeat). Its centre is the ground truth plus a Gaussian offset
(``jitter_mm`` s.d. per axis, clipped at ``max_jitter_mm``), i.e. where the global model would put
it. Labels: every landmark of the image that falls inside the window, in window px (one output
channel per landmark: the "per-landmark heads" design; at inference the window cut for landmark
k is read on channel k). ``landmarks_original`` holds only the window's own landmark, so the
validation MRE is the refiner's error on the landmark it was cut for.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config.schema import RefineConfig
from ..errors import DataError
from ..geometry import apply_affine
from ..imageio import image_bit_depth, read_image
from ..index import recorded_policy
from ..io import file_sha256
from ..preprocess import normalisation_spec
from ..preprocess.variant import _arrays_for, _index_api, _index_root, _landmark_names, _resolve
from .crops import cut_windows, image_spacing, resample_to_spacing

__all__ = ["CropSet", "build_crop_set", "jitter_from_mre"]


def jitter_from_mre(mre_mm: float) -> float:
    """Per-axis s.d. (mm) of an isotropic 2-D Gaussian error whose mean radial error is ``mre_mm``.

    For ``e ~ N(0, s^2 I_2)`` the radial error is Rayleigh with mean ``s * sqrt(pi / 2)``, so
    ``s = MRE / sqrt(pi / 2)``.
    """
    return float(mre_mm) / math.sqrt(math.pi / 2.0)


@dataclass
class CropSet:
    """Refinement windows with the attributes the training loop reads (see ``Variant``).

    Attributes:
        images: ``(N, window, window)`` uint8/uint16 windows.
        image_ids: ``list[str]`` ``"<image_id>|<landmark>|<repeat>"``.
        source_ids: ``(N,)`` object, the original image id of each window.
        crop_landmark: ``(N,)`` int64, the landmark (index into ``landmark_names``) it was cut for.
        splits: ``(N,)`` object, ``train`` / ``valid`` (by original image, never mixed).
        devices, datasets: ``(N,)`` object.
        spacing: ``(N, 2)`` float64 mm/px of the original image.
        affines: ``(N, 2, 3)`` float64 original px -> window px.
        landmarks: ``(N, K, 2)`` window px, every landmark (NaN missing).
        landmarks_original: ``(N, K, 2)`` original px, only the window's own landmark (others NaN).
        landmark_names, input_size ``(window, window)``, normalisation, spec (``RefineConfig.crop_spec``),
        meta (name, source index, jitter), path (a label for logs and provenance).
    """

    images: np.ndarray
    image_ids: list
    source_ids: np.ndarray
    crop_landmark: np.ndarray
    splits: np.ndarray
    devices: np.ndarray
    datasets: np.ndarray
    spacing: np.ndarray
    affines: np.ndarray
    landmarks: np.ndarray
    landmarks_original: np.ndarray
    landmark_names: list
    orig_sizes: np.ndarray
    input_size: tuple
    normalisation: dict
    spec: dict
    meta: dict = field(default_factory=dict, repr=False)
    path: str = ""
    table: Any = None

    def __len__(self) -> int:
        return len(self.image_ids)


def _read_original_images(index_path: Path, ground_truth: str | None):
    """(images table, names, gt (N, K, 2) original px, paths, dtype) of an index."""
    read_index, ground_truth_fn, images_table, landmark_arrays = _index_api()
    df = read_index(index_path)
    if ground_truth is None:
        ground_truth = recorded_policy(index_path)
    root = _index_root(index_path, df)
    names = _landmark_names(df)
    imgs = images_table(df).reset_index(drop=True)
    ids = [str(i) for i in imgs["image_id"]]
    if len(set(ids)) != len(ids):
        raise DataError("index holds the same image_id in several data sets; one data set per refiner", index_path)
    gt = _arrays_for(ids, ground_truth_fn(df, ground_truth), landmark_arrays, names)
    paths = [_resolve(root, p) for p in imgs["image_path"]]
    for p in paths:
        if not p.is_file():
            raise DataError("image file not found (listed in the index)", p)
    dtype = np.uint16 if any(image_bit_depth(p) == 16 for p in paths) else np.uint8
    return imgs, names, gt, paths, dtype, ground_truth


def build_crop_set(
    index_path: str | Path,
    cfg: RefineConfig,
    jitter_sd_mm: float,
    *,
    train_rows: Sequence[int],
    val_rows: Sequence[int] = (),
    seed: int = 0,
    ground_truth: str | None = None,
    normalisation: Any = "imagenet",
    progress: bool = True,
    index=None,
) -> CropSet:
    """Jittered refinement windows of the images ``train_rows`` / ``val_rows`` of an index.

    Args:
        index_path: the Parquet landmark index (original images, ground truth).
        cfg: window resolution/size, ``crops_per_landmark``, ``max_jitter_mm``, ``fallback_spacing_mm``.
        jitter_sd_mm: s.d. (mm) per axis of the window-centre offset around the ground truth.
        train_rows, val_rows: rows of ``cephalo.index.images_table`` (first-appearance order) whose
            windows get split ``train`` / ``valid``; other images (e.g. test splits) are never read.
        seed: jitter seed (the windows are a pure function of the inputs).
        ground_truth: annotator policy (default: the index's recorded one, else ``mean``).
        normalisation: load-time normalisation spec (``cephalo.preprocess.normalise``).
        index: a pre-read ``_read_original_images`` result (internal reuse).

    Returns:
        a :class:`CropSet`.

    Raises:
        DataError: unreadable index/image, an image without pixel spacing and no fallback.
    """
    from tqdm.auto import tqdm

    index_path = Path(index_path)
    imgs, names, gt, paths, dtype, policy = (
        index if index is not None else _read_original_images(index_path, ground_truth)
    )
    K, R, win = len(names), int(cfg.crops_per_landmark), int(cfg.window)
    rows = [(int(r), "train") for r in train_rows] + [(int(r), "valid") for r in val_rows]
    out_imgs, aff, lm, lmo, ids, src, which, splits, devs, dsets, spac, sizes = ([] for _ in range(12))
    for r, split in tqdm(rows, desc="refinement windows", disable=not progress, leave=False):
        row = imgs.iloc[r]
        sp = image_spacing((row["spacing_x_mm"], row["spacing_y_mm"]), cfg.fallback_spacing_mm, str(paths[r]))
        image = read_image(paths[r])
        if image.dtype != dtype:
            image = image.astype(np.uint16) * 257
        res, m_res = resample_to_spacing(image, sp, cfg.spacing_mm)
        g = gt[r]
        ok = np.flatnonzero(np.isfinite(g).all(axis=1))
        if len(ok) == 0:
            continue
        # jitter: a pure function of (seed, image id); s.d. in original px per axis
        h = int(hashlib.sha256(f"{seed}:{row['image_id']}".encode()).hexdigest()[:8], 16)
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, h])
        off_mm = rng.normal(0.0, jitter_sd_mm, size=(len(ok), R, 2)) if jitter_sd_mm > 0 else np.zeros((len(ok), R, 2))
        norm = np.linalg.norm(off_mm, axis=-1, keepdims=True)
        cap = float(cfg.max_jitter_mm)
        off_mm = np.where(norm > cap, off_mm * (cap / np.maximum(norm, 1e-12)), off_mm)
        centres = g[ok][:, None, :] + off_mm / np.asarray(sp)[None, None, :]
        wins, affs = cut_windows(res, m_res, centres.reshape(-1, 2), win)

        in_win = apply_affine(affs, np.broadcast_to(g, (len(affs), K, 2)).copy())
        own = np.full((len(affs), K, 2), np.nan)
        kk = np.repeat(ok, R)
        own[np.arange(len(affs)), kk] = g[kk]
        out_imgs.append(wins)
        aff.append(affs)
        lm.append(in_win)
        lmo.append(own)
        ids += [f"{row['image_id']}|{names[k]}|{j}" for k in ok for j in range(R)]
        src += [str(row["image_id"])] * len(affs)
        which.append(kk)
        splits += [split] * len(affs)
        devs += [str(row.get("device", ""))] * len(affs)
        dsets += [str(row.get("dataset", ""))] * len(affs)
        spac.append(np.tile(np.asarray(sp, dtype=np.float64), (len(affs), 1)))
        sizes.append(np.tile([int(row["width"]), int(row["height"])], (len(affs), 1)))
    if not out_imgs:
        raise DataError("no annotated image to cut refinement windows from", index_path)
    meta = {
        "name": "refine",
        "format": "cephalo-refine-crops",
        "source_index": {"path": str(index_path), "sha256": file_sha256(index_path)},
        "ground_truth": policy,
        "jitter_sd_mm": float(jitter_sd_mm),
        "crops_per_landmark": R,
        "seed": int(seed),
        "n_train_images": len(train_rows),
        "n_val_images": len(val_rows),
    }
    return CropSet(
        images=np.concatenate(out_imgs),
        image_ids=ids,
        source_ids=np.asarray(src, dtype=object),
        crop_landmark=np.concatenate(which).astype(np.int64),
        splits=np.asarray(splits, dtype=object),
        devices=np.asarray(devs, dtype=object),
        datasets=np.asarray(dsets, dtype=object),
        spacing=np.concatenate(spac),
        affines=np.concatenate(aff),
        landmarks=np.concatenate(lm),
        landmarks_original=np.concatenate(lmo),
        landmark_names=list(names),
        orig_sizes=np.concatenate(sizes),
        input_size=(win, win),
        normalisation=normalisation_spec(normalisation),
        spec=cfg.crop_spec(),
        meta=meta,
        path=f"{index_path}#refine-windows",
    )
