"""``cephalo download`` and ``cephalo index`` share one ISBI 2015 layout check (issue #25, point 6).

Annotator folders other than 400_senior/400_junior/400_mean (``400_a``, ``400_b``) and one wrapper
folder (``AnnotationsByMD/<wrapper>/400_x``, ``RawImage/RawImage/...``) were accepted by the index
and refused by the download check; a tree without annotator folders must be refused by both.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cephalo.datasets import create_adapter, get_release
from cephalo.datasets.fetch.layout import check_release_layout, validate_layout
from cephalo.errors import DataError, DownloadError


def _tree(root: Path, annotators=("400_a", "400_b"), ann_wrapper: str = "", raw_wrapper: bool = False) -> Path:
    raw = root / "RawImage" / ("RawImage" if raw_wrapper else "")
    for split, image_id in (("TrainingData", "001"), ("Test1Data", "151")):
        (raw / split).mkdir(parents=True)
        Image.fromarray(np.zeros((40, 30), np.uint8)).save(raw / split / f"{image_id}.bmp")
    ann = root / "AnnotationsByMD" / ann_wrapper
    ann.mkdir(parents=True)
    for who in annotators:
        for image_id in ("001", "151"):
            (ann / who).mkdir(exist_ok=True)
            (ann / who / f"{image_id}.txt").write_text("".join(f"{i + 1},{i + 2}\n" for i in range(19)))
    return root


def _download_check(root: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        validate_layout(root, get_release("isbi2015").layout, source=str(root))


@pytest.mark.parametrize("kind", ["400_a_400_b", "wrapper_folder", "raw_wrapper"])
def test_both_accept(tmp_path, kind):
    root = _tree(tmp_path, ann_wrapper="wrapper" if kind == "wrapper_folder" else "", raw_wrapper=kind == "raw_wrapper")
    _download_check(root)  # was: DownloadError "missing 400_senior or 400_junior or 400_mean"
    check_release_layout("isbi2015", root)
    res = create_adapter("isbi2015").parse(root)
    assert {r["annotator"] for r in res.rows} == {"a", "b"}


@pytest.mark.parametrize("kind", ["no_annotator_folder", "files_only"])
def test_both_refuse(tmp_path, kind):
    root = _tree(tmp_path, annotators=() if kind == "no_annotator_folder" else ("notes",))
    with pytest.raises(DownloadError, match=r"AnnotationsByMD/400_<name>/"):
        _download_check(root)
    with pytest.raises(DataError, match=r"AnnotationsByMD/400_<name>/"):
        create_adapter("isbi2015").parse(root)
