"""The checkpoint bundle: a global model + a refiner, one file that evaluate and predict accept.

``bundle.json`` (written atomically by ``cephalo train-refiner --global CKPT``)::

    {"format": "cephalo-bundle", "format_version": 1,
     "global": "<path>", "global_sha256": "...",       # paths relative to the bundle's folder
     "refiner": "<path>", "refiner_sha256": "...",
     "refine": {"iterations": 1, "batch_size": 64, "tta": {...}},  # inference settings
     "calibration": {...}}                              # optional: cephalo calibrate --model bundle.json

``cephalo evaluate --model bundle.json`` / ``cephalo predict --model bundle.json`` predict with
the global model as usual, then :func:`cephalo.refine.refine_predictions` moves each landmark
with the refiner. A plain checkpoint path keeps working as before (global model only).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config.schema import TTAConfig
from ..errors import CheckpointError, ConfigError
from ..io import file_sha256, write_json
from .model import load_refiner

__all__ = ["BUNDLE_FORMAT", "Bundle", "is_bundle", "read_bundle", "write_bundle"]

BUNDLE_FORMAT = "cephalo-bundle"


@dataclass
class Bundle:
    """A read ``bundle.json``: absolute checkpoint paths and the inference settings."""

    path: Path
    global_path: Path
    refiner_path: Path
    iterations: int = 1
    batch_size: int = 64
    tta: TTAConfig = field(default_factory=TTAConfig)
    #: the ``refine`` settings as stored (written back unchanged by a calibrated copy)
    settings: dict = field(default_factory=dict)
    #: conformal radii of the *refined* predictions (:mod:`cephalo.uncertainty`), or None
    calibration: dict | None = None

    def load_refiner(self, device: str = "cpu"):
        return load_refiner(self.refiner_path, device)


def is_bundle(path: str | Path) -> bool:
    """True for a ``.json`` file (a bundle is the only JSON a ``--model`` option takes)."""
    return Path(path).suffix.lower() == ".json"


def write_bundle(
    path: str | Path,
    global_ckpt: str | Path,
    refiner_ckpt: str | Path,
    settings: dict | None = None,
    calibration: dict | None = None,
) -> Path:
    """Write ``bundle.json`` pairing two checkpoints (paths stored relative to its folder).

    ``calibration``: conformal radii calibrated on the bundle's refined predictions (``cephalo
    calibrate --model bundle.json``); a bundle carries its own, since the global checkpoint's radii
    describe the coarse predictions.

    Raises:
        CheckpointError: a checkpoint file is missing.
    """
    path = Path(path)
    rel = {}
    for key, p in (("global", Path(global_ckpt)), ("refiner", Path(refiner_ckpt))):
        if not p.is_file():
            raise CheckpointError(f"bundle: {key} checkpoint not found", p)
        rel[key] = os.path.relpath(p.resolve(), path.parent.resolve())
        rel[f"{key}_sha256"] = file_sha256(p)
    body = {"format": BUNDLE_FORMAT, "format_version": 1, **rel, "refine": dict(settings or {})}
    if calibration is not None:
        body["calibration"] = calibration
    write_json(path, body)
    return path


def read_bundle(path: str | Path, check_hashes: bool = True) -> Bundle:
    """Read a ``bundle.json``.

    Raises:
        CheckpointError: unreadable/invalid JSON, wrong format, a missing checkpoint, or (``check_hashes``) a
            checkpoint whose SHA-256 differs from the one recorded (it was retrained after the bundle was made).
    """
    path = Path(path)
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read bundle ({type(e).__name__}: {e})".splitlines()[0], path) from None
    if not isinstance(d, dict) or d.get("format") != BUNDLE_FORMAT:
        raise CheckpointError(
            f"not a cephalo bundle (format {d.get('format') if isinstance(d, dict) else None!r})", path
        )
    paths = {}
    for key in ("global", "refiner"):
        if not isinstance(d.get(key), str):
            raise CheckpointError(f"bundle: no '{key}' checkpoint path", path)
        p = Path(d[key])
        p = p if p.is_absolute() else path.parent / p
        if not p.is_file():
            raise CheckpointError(f"bundle: {key} checkpoint not found ({p})", path)
        if check_hashes and d.get(f"{key}_sha256") and file_sha256(p) != d[f"{key}_sha256"]:
            raise CheckpointError(
                f"bundle: {key} checkpoint {p} changed since the bundle was written "
                "(sha256 differs); re-run cephalo train-refiner",
                path,
            )
        paths[key] = p
    s: dict[str, Any] = d.get("refine") or {}
    try:
        return Bundle(
            path=path,
            global_path=paths["global"],
            refiner_path=paths["refiner"],
            iterations=int(s.get("iterations", 1)),
            batch_size=int(s.get("batch_size", 64)),
            tta=TTAConfig.from_dict(s.get("tta"), "refine.tta"),
            settings=dict(s),
            calibration=d["calibration"] if isinstance(d.get("calibration"), dict) else None,
        )
    except (TypeError, ValueError, ConfigError) as e:
        raise CheckpointError(f"bundle: bad refine settings ({e})", path) from None
