"""The peer side of benchmarks/peer_landmarker.py: train and predict with the `landmarker` package.

Runs with the peer's own interpreter (``.venv-peer/bin/python``, built by benchmarks/peer/setup.sh),
never with cephalo's: it imports nothing from cephalo. The driver hands it a manifest (JSON: image
paths, ground truth in original pixels, pixel spacing) and reads back plain files.

Recipe: the one the landmarker documentation gives for ISBI 2015 cephalograms (the "adaptive
heatmap regression" SCN example): ``OriginalSpatialConfigurationNet(in_channels=1,
out_channels=19)``; learnable anisotropic Gaussian target (``GaussianHeatmapGenerator(sigmas=3,
gamma=100, learnable=True)``) and ``GaussianHeatmapL2Loss(alpha=5)``; SGD (lr 1e-6, momentum 0.99,
Nesterov, weight decay 1e-3 on the network), batch size 1; ``ReduceLROnPlateau(factor=0.5,
patience=10, cooldown=10)`` on the validation loss; the documented augmentation (intensity
scaling, noise, contrast, histogram shift, random affine); images resized with aspect-preserving
padding (``resize_with_pad``) to a square input; decoding ``local_soft_argmax``. The only change
is the input size (the documentation uses 512 x 512 on a GPU; ``--size``).

Subcommands (all write JSON/npy under --out):

  train        train for --budget-s seconds of wall clock (training steps and the recipe's own
               per-epoch validation; loading and resizing the images is not counted), saving the
               weights at --marks equally spaced wall-clock marks: snap_{k}.pt, train.json.
  predict      predict the manifest's test images from every snapshot: pred_{k}.npy
               ((N, K, 2) xy, original pixels), predict.json (with landmarker's point_error in mm).
  point-error  landmarker's point_error (mm) of a prediction file against the manifest's test
               ground truth (the metric cross-check).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

SIGMA = 3.0
GAMMA = 100.0
LR = 1e-6
MOMENTUM = 0.99
WEIGHT_DECAY = 1e-3
ALPHA = 5.0
DECODER = "local_soft_argmax"
VAL_EVERY_NTH = 10  # hold out every 10th training image (10 %, as cephalo's train.val_fraction)


def _read(path: str) -> torch.Tensor:
    img = np.asarray(Image.open(path).convert("L"), dtype=np.float32)
    return torch.from_numpy(img)[None]  # (1, H, W), 0..255


def _prepare(items: list[dict], size: int):
    """Resize every image with landmarker's own aspect-preserving pad + resize; landmarks (y, x)."""
    from landmarker.transforms.images import resize_with_pad
    from landmarker.transforms.landmarks import resize_landmarks

    imgs, lms, dims, pads, spacing = [], [], [], [], []
    for it in items:
        img = _read(it["path"])
        dim_orig = torch.tensor(img.shape[-2:], dtype=torch.float32)
        img_r, pad = resize_with_pad(img, (size, size))
        pad_t = torch.tensor(pad, dtype=torch.float32)
        yx = torch.tensor(np.asarray(it["xy"], dtype=np.float32)[:, ::-1].copy())
        lms.append(resize_landmarks(yx, dim_orig, (size, size), pad_t))
        imgs.append(img_r.float())
        dims.append(dim_orig)
        pads.append(pad_t)
        sx, sy = it["spacing"]
        spacing.append(torch.tensor([sy, sx], dtype=torch.float32))
    return imgs, torch.stack(lms), torch.stack(dims), torch.stack(pads), torch.stack(spacing)


def _transforms():
    from landmarker.transforms.images import UseOnlyFirstChannel
    from monai.transforms import (
        Compose,
        RandAdjustContrastd,
        RandAffined,
        RandGaussianNoised,
        RandHistogramShiftd,
        RandScaleIntensityd,
        ScaleIntensityd,
    )

    k = ("image",)
    train = Compose(
        [
            UseOnlyFirstChannel(k),
            ScaleIntensityd(k),
            RandGaussianNoised(k, prob=0.2, mean=0, std=0.1),
            RandScaleIntensityd(k, factors=0.25, prob=0.2),
            RandAdjustContrastd(k, prob=0.2, gamma=(0.5, 4.5)),
            RandHistogramShiftd(k, prob=0.2),
            ScaleIntensityd(k),
            RandAffined(
                k,
                prob=1,
                rotate_range=(-np.pi / 12, np.pi / 12),
                translate_range=(-10, 10),
                scale_range=(-0.1, 0.1),
                shear_range=(-0.1, 0.1),
            ),
        ]
    )
    infer = Compose([UseOnlyFirstChannel(k), ScaleIntensityd(k)])
    return train, infer


def _model(n_landmarks: int):
    from landmarker.models.spatial_configuration_net import OriginalSpatialConfigurationNet

    return OriginalSpatialConfigurationNet(in_channels=1, out_channels=n_landmarks)


def _generator(n_landmarks: int, size: int):
    from landmarker.heatmap.generator import GaussianHeatmapGenerator

    return GaussianHeatmapGenerator(
        nb_landmarks=n_landmarks, sigmas=SIGMA, gamma=GAMMA, heatmap_size=(size, size), learnable=True
    )


def _dataset(imgs, lms, spacing, transform):
    from landmarker.data import LandmarkDataset

    return LandmarkDataset(
        imgs=list(imgs), landmarks=lms, pixel_spacing=spacing, transform=transform, store_imgs=True, dim_img=None
    )


def cmd_train(a) -> int:
    from landmarker.losses import GaussianHeatmapL2Loss
    from torch.utils.data import DataLoader

    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    man = json.loads(Path(a.manifest).read_text())
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    items = man["train"]
    val_idx = [i for i in range(len(items)) if i % VAL_EVERY_NTH == VAL_EVERY_NTH - 1] or [len(items) - 1]
    tr_idx = [i for i in range(len(items)) if i not in val_idx]
    t_prep = time.perf_counter()
    imgs, lms, _, _, spacing = _prepare(items, a.size)
    prep_s = time.perf_counter() - t_prep
    train_tf, infer_tf = _transforms()
    ds_tr = _dataset([imgs[i] for i in tr_idx], lms[tr_idx], spacing[tr_idx], train_tf)
    ds_va = _dataset([imgs[i] for i in val_idx], lms[val_idx], spacing[val_idx], infer_tf)
    k = lms.shape[1]
    model = _model(k)
    gen = _generator(k, a.size)
    opt = torch.optim.SGD(
        [
            {"params": model.parameters(), "weight_decay": WEIGHT_DECAY},
            {"params": gen.sigmas},
            {"params": gen.rotation},
        ],
        lr=LR,
        momentum=MOMENTUM,
        nesterov=True,
    )
    crit = GaussianHeatmapL2Loss(alpha=ALPHA)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.5, patience=10, cooldown=10)
    dl_tr = DataLoader(ds_tr, batch_size=1, shuffle=True, num_workers=0)
    dl_va = DataLoader(ds_va, batch_size=1, shuffle=False, num_workers=0)

    budget = float(a.budget_s)
    marks = [budget * (i + 1) / a.marks for i in range(a.marks)]
    snaps: list[dict] = []
    history: list[dict] = []
    paused = 0.0  # seconds spent writing snapshots (not training)
    t0 = time.perf_counter()

    def elapsed() -> float:
        return time.perf_counter() - t0 - paused

    def snapshot(epoch: int, step: int) -> None:
        nonlocal paused
        t = time.perf_counter()
        i = len(snaps)
        path = out / f"snap_{i + 1}.pt"
        torch.save(
            {
                "model": model.state_dict(),
                "sigmas": gen.sigmas.detach().clone(),
                "rotation": gen.rotation.detach().clone(),
            },
            path,
        )
        snaps.append(
            {
                "mark": i + 1,
                "mark_s": marks[i],
                "trained_s": round(elapsed(), 2),
                "epoch": epoch,
                "steps": step,
                "path": path.name,
            }
        )
        print(f"[landmarker] snapshot {i + 1}/{a.marks} at {elapsed():.0f} s (epoch {epoch}, step {step})", flush=True)
        paused += time.perf_counter() - t

    step = 0
    epoch = 0
    done = False
    while not done:
        epoch += 1
        model.train()
        run_loss, n = 0.0, 0
        for batch in dl_tr:
            img = batch["image"]
            lm = batch["landmark"]
            opt.zero_grad()
            outputs = model(img)
            loss = crit(outputs, gen.sigmas, gen(lm))
            loss.backward()
            opt.step()
            run_loss += float(loss.item())
            n += 1
            step += 1
            while len(snaps) < a.marks and elapsed() >= marks[len(snaps)]:
                snapshot(round(epoch - 1 + n / len(dl_tr), 2), step)
            if len(snaps) >= a.marks:
                done = True
                break
        if done:
            break
        # the recipe's per-epoch validation (loss drives ReduceLROnPlateau); counted as training time
        model.eval()
        vloss = 0.0
        with torch.no_grad():
            for batch in dl_va:
                outputs = model(batch["image"])
                vloss += float(crit(outputs, gen.sigmas, gen(batch["landmark"])).item())
        vloss /= max(1, len(dl_va))
        sched.step(vloss)
        history.append(
            {"epoch": epoch, "train_loss": run_loss / max(1, n), "val_loss": vloss, "elapsed_s": round(elapsed(), 2)}
        )
        print(
            f"[landmarker] epoch {epoch}: train loss {run_loss / max(1, n):.2f}, val loss {vloss:.2f}, "
            f"{elapsed():.0f} s",
            flush=True,
        )
        while len(snaps) < a.marks and elapsed() >= marks[len(snaps)]:
            snapshot(float(epoch), step)
        done = len(snaps) >= a.marks

    info = {
        "budget_s": budget,
        "size": a.size,
        "n_train": len(tr_idx),
        "n_val": len(val_idx),
        "prepare_s": round(prep_s, 2),
        "epochs_completed": len(history),
        "steps": step,
        "snapshots": snaps,
        "history": history,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "recipe": recipe(a.size),
        "landmarker": importlib.metadata.version("landmarker"),
        "monai": importlib.metadata.version("monai"),
    }
    (out / "train.json").write_text(json.dumps(info, indent=2))
    return 0


def recipe(size: int) -> dict:
    return {
        "model": "landmarker OriginalSpatialConfigurationNet(in_channels=1, out_channels=19)",
        "input": f"{size}x{size} grey, aspect-preserving pad + resize (landmarker resize_with_pad), ScaleIntensity",
        "target": f"GaussianHeatmapGenerator(sigmas={SIGMA:g}, gamma={GAMMA:g}, learnable=True), "
        f"full-resolution heatmaps ({size}x{size})",
        "loss": f"GaussianHeatmapL2Loss(alpha={ALPHA:g})",
        "optimiser": f"SGD lr {LR:g}, momentum {MOMENTUM}, Nesterov, weight decay {WEIGHT_DECAY:g}, batch 1, "
        "ReduceLROnPlateau(0.5, patience 10, cooldown 10)",
        "augmentation": "landmarker ISBI example: noise, intensity scale, contrast, histogram shift, "
        "RandAffine (rotate 15 deg, translate 10 px, scale 0.1, shear 0.1)",
        "decoding": f"heatmap_to_coord(method='{DECODER}') (window 5, t 10), mapped back with "
        "landmarker pixel_to_unit (undo resize and pad)",
        "validation": f"every {VAL_EVERY_NTH}th TrainingData image held out (loss drives ReduceLROnPlateau)",
    }


def cmd_predict(a) -> int:
    from landmarker.heatmap.decoder import heatmap_to_coord
    from landmarker.metrics import point_error
    from landmarker.utils.utils import pixel_to_unit

    man = json.loads(Path(a.manifest).read_text())
    out = Path(a.out)
    info = json.loads((out / "train.json").read_text())
    size = int(info["size"])
    items = man["test"]
    t_prep = time.perf_counter()
    imgs, lms, dims, pads, spacing = _prepare(items, size)
    prep_s = time.perf_counter() - t_prep
    _, infer_tf = _transforms()
    ds = _dataset(imgs, lms, spacing, infer_tf)
    k = lms.shape[1]
    results = []
    for s in info["snapshots"]:
        state = torch.load(out / s["path"], map_location="cpu")
        model = _model(k)
        model.load_state_dict(state["model"])
        model.eval()
        t = time.perf_counter()
        pred_orig = np.zeros((len(items), k, 2), dtype=np.float64)
        pe = []
        with torch.inference_mode():
            for b0 in range(0, len(ds), a.batch_size):
                idx = list(range(b0, min(len(ds), b0 + a.batch_size)))
                x = torch.stack([ds[i]["image"] for i in idx])
                yx_b = heatmap_to_coord(model(x), offset_coords=0, method=DECODER)  # (B, K, 2) resized px
                for j, i in enumerate(idx):
                    yx = yx_b[j : j + 1]
                    # landmarker's own metric, called as in its ISBI example (resized frame, dim,
                    # dim_orig, pixel spacing, padding)
                    pe.append(
                        float(
                            point_error(
                                lms[i : i + 1],
                                yx,
                                x.shape[-2:],
                                dims[i : i + 1],
                                spacing[i : i + 1],
                                pads[i : i + 1],
                                reduction="mean",
                            )
                        )
                    )
                    orig = pixel_to_unit(yx, None, x.shape[-2:], dims[i : i + 1], pads[i : i + 1])  # (1, K, 2) yx
                    pred_orig[i] = orig[0].numpy()[:, ::-1]
        name = f"pred_{s['mark']}.npy"
        np.save(out / name, pred_orig)
        results.append(
            {**s, "pred": name, "predict_s": round(time.perf_counter() - t, 2), "point_error_mm": float(np.mean(pe))}
        )
        print(f"[landmarker] snapshot {s['mark']}: point_error {np.mean(pe):.3f} mm", flush=True)
    (out / "predict.json").write_text(
        json.dumps({"ids": [it["id"] for it in items], "prepare_s": round(prep_s, 2), "snapshots": results}, indent=2)
    )
    return 0


def cmd_point_error(a) -> int:
    """landmarker.metrics.point_error of --pred (xy, original px) against the test ground truth, in mm."""
    from landmarker.metrics import point_error

    man = json.loads(Path(a.manifest).read_text())
    items = man["test"]
    gt = torch.tensor(np.asarray([it["xy"] for it in items], dtype=np.float64)[..., ::-1].copy())
    pred = torch.tensor(np.load(a.pred)[..., ::-1].copy())
    sp = torch.tensor(np.asarray([it["spacing"] for it in items], dtype=np.float64)[:, ::-1].copy())
    v = float(point_error(gt, pred, pixel_spacing=sp, reduction="mean"))
    print(json.dumps({"point_error_mm": v}))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--manifest", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--budget-s", type=float, required=True)
    t.add_argument("--marks", type=int, default=4)
    t.add_argument("--size", type=int, default=256)
    t.add_argument("--seed", type=int, default=0)
    pr = sub.add_parser("predict")
    pr.add_argument("--manifest", required=True)
    pr.add_argument("--out", required=True)
    pr.add_argument("--batch-size", type=int, default=4)
    pe = sub.add_parser("point-error")
    pe.add_argument("--manifest", required=True)
    pe.add_argument("--pred", required=True)
    a = p.parse_args(argv)
    if a.cmd == "train" and (a.marks < 1 or not math.isfinite(a.budget_s) or a.budget_s <= 0):
        p.error("--marks >= 1 and a positive --budget-s")
    return {"train": cmd_train, "predict": cmd_predict, "point-error": cmd_point_error}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
