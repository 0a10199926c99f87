"""Coarse-to-fine refinement: windows at a fixed fine resolution around each coarse landmark.

* :mod:`.crops` - resample the original image to ``spacing_mm`` and cut windows (exact affines).
* :mod:`.dataset` - :func:`build_crop_set`, jittered training windows with a ``Variant``'s attributes.
* :mod:`.train` - :func:`train_refiner` (the one training loop, ``cephalo.train``).
* :mod:`.model` - :func:`load_refiner`, :func:`refine_predictions` (inference).
* :mod:`.bundle` - ``bundle.json`` (global + refiner) that ``cephalo evaluate``/``predict`` accept.
"""

from .bundle import Bundle, is_bundle, read_bundle, write_bundle
from .config import RefineConfig, TTAConfig
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
                    "CropSet",
                    "RefineConfig",
                    "RefineResult",
                    "Refiner",
                    "TTAConfig",
                    "build_crop_set",
                    "choose_jitter",
                    "cut_windows",
                    "image_refiner",
                    "image_spacing",
                    "is_bundle",
                    "jitter_from_mre",
                    "load_refiner",
                    "original_image_paths",
                    "read_bundle",
                    "refine_predictions",
                    "resample_to_spacing",
                    "train_refiner",
                    "variant_refiner",
                    "write_bundle",
]
