"""The synthetic ISBI 2015-layout tree of ``cephalo make-demo`` (the source-like demo data set).

Layout (Wang et al., Medical Image Analysis 31, 2016), the one the adapter (:mod:`.adapter`) and
the release layout (:mod:`.release`) expect::

    RawImage/{TrainingData,Test1Data,Test2Data}/NNN.bmp
    AnnotationsByMD/{400_senior,400_junior}/NNN.txt   (19 ``x,y`` integer lines, then 8
                                                       classification lines)

Images are rendered by :mod:`cephalo.demo`; ``cephalo make-demo``
(:func:`cephalo.commands.make_demo.make_demo`) runs this writer; the same generator state gives
byte-identical files.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ...demo import DemoConfig, annotate, progress_bar, render_cephalogram, write_image
from ...demo_skull import skull_template
from ...landmarks import AARIZ29, ISBI19
from ...measurements import ISBI2015_KEYS, classify, compute

__all__ = ["write_isbi2015", "isbi_classification"]


def isbi_classification(lms: Mapping[str, np.ndarray], spacing_mm: float) -> list[int]:
    """ISBI 2015 classification labels (ANB, SNB, SNA, ODI, APDI, FHI, FMA, MW) of one image.

    Computed by :mod:`cephalo.measurements` (the challenge's definitions and class ranges, Wang et al.,
    Medical Image Analysis 31, 2016, Table 2) from landmarks in original pixels (canonical name ->
    (2,) xy) at an isotropic ``spacing_mm`` mm/px. The parsers ignore these lines; they make the
    synthetic files look like the release.
    """
    names = list(lms)
    coords = np.stack([np.asarray(lms[n], dtype=np.float64) for n in names])
    values = compute(coords, names, np.array([spacing_mm, spacing_mm]), ISBI2015_KEYS)
    return [int(classify(k, values[k])[0]) for k in ISBI2015_KEYS]


def write_isbi2015(root: str | Path, cfg: DemoConfig, rng: np.random.Generator, progress: bool = False) -> list[dict]:
    """Write the synthetic ISBI 2015 release under ``root`` (created; must not exist or be empty).

    Layout: ``RawImage/{TrainingData,Test1Data,Test2Data}/NNN.bmp`` (numbered consecutively across
    folders, 001...), ``AnnotationsByMD/{400_senior,400_junior}/NNN.txt``: 19 ``x,y`` integer
    lines in ISBI order, then 8 classification lines.

    Returns:
        one dict per image: ``image_id``, ``split`` (folder), ``path``, ``landmarks`` (19, 2)
        float64 true positions (ISBI order, original pixels).
    """
    root = Path(root)
    template = skull_template()
    dev = cfg.isbi_device
    aariz_pos = [AARIZ29.index(n) for n in ISBI19.names]
    for sub in ("AnnotationsByMD/400_senior", "AnnotationsByMD/400_junior"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    records = []
    n = 0
    total = sum(cfg.isbi_counts.values())
    with progress_bar(total, "demo isbi2015", progress) as bar:
        for folder in ("TrainingData", "Test1Data", "Test2Data"):
            count = cfg.isbi_counts.get(folder, 0)
            if count:
                (root / "RawImage" / folder).mkdir(parents=True, exist_ok=True)
            for _ in range(count):
                n += 1
                image_id = f"{n:03d}"
                img, lms29 = render_cephalogram(rng, dev, cfg, template)
                senior, junior = annotate(rng, lms29, dev, cfg)
                path = root / "RawImage" / folder / f"{image_id}.bmp"
                write_image(path, img, dev)
                cls = isbi_classification({nm: lms29[i] for i, nm in enumerate(AARIZ29.names)}, dev.spacing_mm)
                for who, pts in (("400_senior", senior), ("400_junior", junior)):
                    lines = [f"{pts[i, 0]},{pts[i, 1]}" for i in aariz_pos] + [str(c) for c in cls]
                    (root / "AnnotationsByMD" / who / f"{image_id}.txt").write_text("\n".join(lines) + "\n")
                records.append({"image_id": image_id, "split": folder, "path": path, "landmarks": lms29[aariz_pos]})
                bar.update()
    return records
