"""Leakage: which evaluated images has the model already seen?

A cephalo checkpoint records its training images as content hashes
(``meta.provenance["train_image_hashes"]``, see :func:`image_content_hash`, or SHA-256 of the
original files, see :func:`file_sha256`); it may also list ids per data set
(``meta.provenance["train_image_ids"] = {"isbi2015": ["001", ...]}``). The public ISBI HRNet
(Hugging Face ``cwlachap/hrnet-cephalometric-landmark-detection``) was trained on a random
70/15/15 split of all 400 ISBI 2015 images; its training list (published with its training code;
``training_split.json``, :mod:`cephalo.public_hrnet.split`) is :data:`HF_HRNET_W32_TRAINING_IDS`: it covers 112 of
the 150 official Test1 images (151-300) and 72 of the 100 Test2 images (301-400).

Evaluation reports seen images separately and warns; it also finds byte-identical duplicates
across splits of the evaluated data (same pixel hash, different split).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence

import numpy as np

from ..io import file_sha256  # re-exported (see __all__)
from ..public_hrnet.hub import HF_REPO_ID
from ..public_hrnet.split import PUBLIC_HRNET_SPLIT

__all__ = [
    "HF_HRNET_W32_TRAINING_IDS",
    "HF_HRNET_W32_REPO",
    "image_content_hash",
    "file_sha256",
    "is_public_hrnet",
    "find_leakage",
]

#: the public model's Hugging Face repository (one home: :mod:`cephalo.public_hrnet.hub`)
HF_HRNET_W32_REPO = HF_REPO_ID

#: ISBI 2015 image numbers in the public HRNet-W32's *training* split (278 images; source:
#: its published ``training_split.json``, annotator 400_junior; one home: :mod:`cephalo.public_hrnet.split`).
HF_HRNET_W32_TRAINING_IDS: frozenset[int] = frozenset(PUBLIC_HRNET_SPLIT["training"])


def image_content_hash(pixels: np.ndarray) -> str:
    """SHA-256 (hex) of an image array's bytes (C order): equal for byte-identical images.

    The same hash the trainer records in ``provenance["train_image_array_hashes"]``
    (``cephalo.train.runner.image_hashes``).

    Args:
        pixels: (H, W) or (H, W, C) array, any dtype.
    """
    return hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()


def _number(image_id: str) -> int | None:
    """The image number of a numbered id (``"001"``, ``"1"``, ``"001.bmp"``), else None.

    Only ids that *are* numbers (ISBI's ``NNN``) compare by number; ids such as Aariz's cuids
    (``"c3a96d771qguw..."``) contain digits but are not numbers and must never match by them.
    """
    m = re.fullmatch(r"\s*(\d+)(?:\.\w+)?\s*", str(image_id))
    return int(m.group(1)) if m else None


def is_public_hrnet(provenance: Mapping | None) -> bool:
    """True if a checkpoint's provenance says it is the public HF HRNet-W32 (any value naming its repo,
    or ``provenance["public_model"] == "hf_hrnet_w32"``)."""
    if not provenance:
        return False
    if provenance.get("public_model") == "hf_hrnet_w32":
        return True
    return any(HF_HRNET_W32_REPO in str(v) for v in provenance.values())


def _hash_values(x) -> set[str]:
    if not x:
        return set()
    if isinstance(x, Mapping):
        return {str(v) for v in x.values() if v}
    return {str(v) for v in x if v}


def _training_ids(prov: Mapping) -> dict[str, set]:
    """``{dataset: {ids...}}`` from ``train_image_ids`` when it names its data set.

    Accepts ``{"dataset": "isbi2015", "training": [2, 3, ...]}`` (the public model) or
    ``{"isbi2015": [...], ...}``. A plain list (no data set) is not used: ids collide between
    data sets; content hashes cover cephalo's own checkpoints.
    """
    t = prov.get("train_image_ids")
    if isinstance(t, Mapping):
        if "dataset" in t and "training" in t:
            return {str(t["dataset"]): {str(v) for v in t["training"]}}
        return {str(k): {str(v) for v in vs} for k, vs in t.items() if isinstance(vs, (list, tuple, set))}
    return {}


def _same_id(iid: str, ids: set) -> bool:
    if iid in ids:
        return True
    n = _number(iid)
    return n is not None and str(n) in {str(_number(x)) for x in ids if _number(x) is not None}


def find_leakage(
    image_ids: Sequence[str],
    datasets: Sequence[str],
    splits: Sequence[str],
    provenance: Mapping | None,
    content_hashes: Sequence[Sequence[str]] | None = None,
    all_ids: Sequence[str] | None = None,
    all_splits: Sequence[str] | None = None,
    all_hashes: Sequence[str] | None = None,
) -> dict:
    """Which evaluated images the model has seen in training, and duplicates across splits.

    Args:
        image_ids, datasets, splits: one entry per evaluated image.
        provenance: the checkpoint's ``meta.provenance`` (may be empty). Used:
            ``train_image_hashes`` / ``train_image_array_hashes`` (dict id -> sha256 or list),
            ``train_image_ids`` naming its data set, and the public HRNet's identity.
        content_hashes: per evaluated image, its hashes (pixel-array hash and/or file SHA-256).
        all_ids, all_splits, all_hashes: every image of the data (all splits) with its pixel
            hash, to find byte-identical duplicates of evaluated images in *other* splits.

    Returns:
        dict ``seen`` (list of image ids), ``n_seen``, ``n_evaluated``, ``reasons``
        (id -> why), ``duplicates_across_splits`` (list of ``[evaluated_id, split, other_id,
        other_split]``), ``warning`` (one line, empty when clean).
    """
    prov = dict(provenance or {})
    train_hashes = _hash_values(prov.get("train_image_hashes")) | _hash_values(prov.get("train_image_array_hashes"))
    train_ids = _training_ids(prov)
    public = is_public_hrnet(prov)
    if public and not train_ids:
        train_ids = {"isbi2015": {str(i) for i in HF_HRNET_W32_TRAINING_IDS}}
    reasons: dict[str, str] = {}
    for i, (iid, ds) in enumerate(zip(image_ids, datasets, strict=False)):
        iid = str(iid)
        hs = {str(h) for h in (content_hashes[i] if content_hashes is not None else [])}
        if train_hashes and hs & train_hashes:
            reasons[iid] = "content hash in the checkpoint's training images"
        elif str(ds) in train_ids and _same_id(iid, train_ids[str(ds)]):
            what = "the public HRNet-W32's training split" if public else "the checkpoint's training list"
            reasons[iid] = f"{ds} image {iid} is in {what}"
    dups: list[list[str]] = []
    if content_hashes is not None and all_hashes is not None and all_ids is not None and all_splits is not None:
        by_hash: dict[str, list[tuple[str, str]]] = {}
        for oid, osp, oh in zip(all_ids, all_splits, all_hashes, strict=False):
            by_hash.setdefault(str(oh), []).append((str(oid), str(osp)))
        for iid, sp, hs in zip(image_ids, splits, content_hashes, strict=False):
            seen_pairs = set()
            for h in hs:
                for oid, osp in by_hash.get(str(h), []):
                    if oid != str(iid) and osp != str(sp) and (oid, osp) not in seen_pairs:
                        seen_pairs.add((oid, osp))
                        dups.append([str(iid), str(sp), oid, osp])
    seen = [str(i) for i in image_ids if str(i) in reasons]
    n = len(image_ids)
    warning = ""
    if seen:
        warning = (
            f"the model has seen {len(seen)} of the {n} evaluated images in training "
            f"(e.g. {reasons[seen[0]]}); their metrics are reported separately as 'seen'."
        )
    if dups:
        warning += (" " if warning else "") + (
            f"{len(dups)} evaluated images are byte-identical to images in another split."
        )
    return {
        "seen": seen,
        "n_seen": len(seen),
        "n_evaluated": n,
        "reasons": reasons,
        "duplicates_across_splits": dups,
        "warning": warning,
    }
