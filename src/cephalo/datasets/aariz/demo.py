"""The synthetic Aariz-layout tree of ``cephalo make-demo`` (the target-like demo data set).

Layout (Khalid et al., arXiv 2302.07797; figshare 10.6084/m9.figshare.27986417.v1), the one the
adapter (:mod:`.adapter`) and the release layout (:mod:`.release`) expect::

    Aariz/{train,valid,test}/Cephalograms/<cuid>.<ext>
    Aariz/{split}/Annotations/Cephalometric Landmarks/{Senior,Junior} Orthodontists/<cuid>.json
    Aariz/{split}/Annotations/CVM Stages/<cuid>.json
    Aariz/cephalogram_machine_mappings.csv   (UTF-8 BOM)
    Aariz/Readme.txt

Images are rendered by :mod:`cephalo.demo`; ``cephalo make-demo``
(:func:`cephalo.commands.make_demo.make_demo`) runs this writer; the same generator state gives
byte-identical files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ...demo import (
    DEFAULT_AARIZ_DEVICES,
    DemoConfig,
    annotate,
    progress_bar,
    render_cephalogram,
    write_image,
)
from ...demo_skull import skull_template
from ...landmarks import AARIZ29

__all__ = ["write_aariz", "AARIZ_CVM_STAGE_IDS"]

#: CVM stage ``id`` values of the Aariz release, stage 1..6 (DATASETS.md).
AARIZ_CVM_STAGE_IDS = (
    "cl9ci0iy22jm807w12q3331m3",
    "cl9ci0iy22jma07w1fb137cme",
    "cl9ci0iy22jmc07w1fq1o53mi",
    "cl9ci0iy22jme07w142e7coez",
    "cl9ci0iy22jmg07w1eiu566n8",
    "cl9ci0iy22jmi07w13ibffvlh",
)


_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def _cuid(rng: np.random.Generator) -> str:
    """A cuid-like id: ``c`` + 24 base-36 characters (the Aariz file naming)."""
    return "c" + "".join(_B36[i] for i in rng.integers(0, 36, size=24))


def write_aariz(root: str | Path, cfg: DemoConfig, rng: np.random.Generator, progress: bool = False) -> list[dict]:
    """Write the synthetic Aariz release under ``root`` (the ``Aariz/`` folder itself).

    Devices are assigned so that each split gets each device in proportion to its ``weight``
    (shuffled). Landmark JSONs carry the real ``landmark_id``, ``title`` and ``symbol`` of
    :data:`cephalo.landmarks.AARIZ29`; the CVM JSON a stage 1-6 with the release's stage ids.

    Returns:
        one dict per image: ``image_id``, ``split``, ``device``, ``path``, ``landmarks`` (29, 2)
        float64 true positions (AARIZ29 order, original pixels).
    """
    root = Path(root)
    template = skull_template()
    devices = cfg.aariz_devices or DEFAULT_AARIZ_DEVICES
    weights = np.array([d.weight for d in devices], dtype=np.float64)
    records = []
    rows = ["cephalogram_id,machine,pixel_size,image_format,mode"]
    total = sum(cfg.aariz_counts.values())
    with progress_bar(total, "demo aariz", progress) as bar:
        for split in ("train", "valid", "test"):
            count = cfg.aariz_counts.get(split, 0)
            base = root / split
            img_dir = base / "Cephalograms"
            lm_dir = base / "Annotations" / "Cephalometric Landmarks"
            cvm_dir = base / "Annotations" / "CVM Stages"
            for d in (img_dir, lm_dir / "Senior Orthodontists", lm_dir / "Junior Orthodontists", cvm_dir):
                d.mkdir(parents=True, exist_ok=True)
            # device of each image: largest-remainder apportionment by weight, then shuffled
            quota = weights / weights.sum() * count
            k = np.floor(quota).astype(int)
            for i in np.argsort(-(quota - k), kind="stable")[: count - k.sum()]:
                k[i] += 1
            assign = np.repeat(np.arange(len(devices)), k)
            rng.shuffle(assign)
            for di in assign:
                dev = devices[int(di)]
                cid = _cuid(rng)
                img, lms = render_cephalogram(rng, dev, cfg, template)
                senior, junior = annotate(rng, lms, dev, cfg)
                path = img_dir / f"{cid}.{dev.image_format}"
                write_image(path, img, dev)
                stamp = (
                    f"2021-{1 + int(rng.integers(0, 12)):02d}-{1 + int(rng.integers(0, 28)):02d}T"
                    f"{int(rng.integers(0, 24)):02d}:{int(rng.integers(0, 60)):02d}:00.000Z"
                )
                for who, pts in (("Senior Orthodontists", senior), ("Junior Orthodontists", junior)):
                    order = rng.permutation(len(AARIZ29)) if cfg.shuffle_json_landmarks else np.arange(len(AARIZ29))
                    entries = [
                        {
                            "landmark_id": AARIZ29[int(i)].source_id,
                            "title": AARIZ29[int(i)].title,
                            "symbol": AARIZ29[int(i)].symbol,
                            "value": {"x": int(pts[int(i), 0]), "y": int(pts[int(i), 1])},
                        }
                        for i in order
                    ]
                    doc = {
                        "ceph_id": cid,
                        "landmarks": entries,
                        "labeled_at": stamp,
                        "dataset_name": "Aariz (cephalo synthetic demo)",
                    }
                    (lm_dir / who / f"{cid}.json").write_text(json.dumps(doc, indent=1) + "\n")
                stage = 1 + int(rng.integers(0, 6))
                cvm = {
                    "ceph_id": cid,
                    "cvm_stage": {"id": AARIZ_CVM_STAGE_IDS[stage - 1], "title": f"CVM-S{stage}", "value": stage},
                    "labeled_at": stamp,
                    "dataset_name": "Aariz (cephalo synthetic demo)",
                }
                (cvm_dir / f"{cid}.json").write_text(json.dumps(cvm, indent=1) + "\n")
                rows.append(f"{cid},{dev.name},{dev.spacing_mm:g},{dev.image_format},{split}")
                records.append({"image_id": cid, "split": split, "device": dev.name, "path": path, "landmarks": lms})
                bar.update()
    # the release's mapping file starts with a UTF-8 byte order mark
    (root / "cephalogram_machine_mappings.csv").write_bytes(("\ufeff" + "\n".join(rows) + "\n").encode("utf-8"))
    (root / "Readme.txt").write_text(
        "Synthetic Aariz-layout data set generated by `cephalo make-demo` (not real patients).\n"
        "29 cephalometric landmarks (senior and junior orthodontists), CVM stages 1-6, "
        f"{len(devices)} devices: "
        + ", ".join(f"{d.name} ({d.spacing_mm:g} mm/px, {d.size[0]}x{d.size[1]})" for d in devices)
        + ".\n"
    )
    return records
