"""Coarse-to-fine refinement: windows at a fixed fine resolution around each coarse landmark.

* :mod:`.crops` - resample the original image to ``spacing_mm`` and cut windows (exact affines).
* :mod:`.dataset` - :func:`build_crop_set`, jittered training windows with a ``Variant``'s attributes.
* :mod:`.train` - :func:`train_refiner` (the one training loop, ``cephalo.train``).
* :mod:`.model` - :func:`load_refiner`, :func:`refine_predictions` (inference).
* :mod:`.bundle` - ``bundle.json`` (global + refiner) that ``cephalo evaluate``/``predict`` accept.
"""

from ..config.schema import RefineConfig, TTAConfig
from .bundle import Bundle, is_bundle, read_bundle, write_bundle
from .crops import cut_windows, image_spacing, resample_to_spacing
from .dataset import CropSet, build_crop_set, jitter_from_mre
from .model import (
    Refiner,
    RefineResult,
    image_refiner,
    load_refiner,
    original_image_paths,
    refine_predictions,
    variant_refiner,
)
from .train import choose_jitter, train_refiner

__all__ = [
    "Bundle",
    "is_bundle",
    "read_bundle",
    "write_bundle",
    "RefineConfig",
    "TTAConfig",
    "cut_windows",
    "image_spacing",
    "resample_to_spacing",
    "CropSet",
    "build_crop_set",
    "jitter_from_mre",
    "Refiner",
    "RefineResult",
    "load_refiner",
    "refine_predictions",
    "choose_jitter",
    "train_refiner",
    "image_refiner",
    "original_image_paths",
    "variant_refiner",
]
