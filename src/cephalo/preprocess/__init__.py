"""Offline preprocessing variants: each image -> (preprocessed image, (2, 3) affine original -> preprocessed).

Public API (``docs/DESIGN.md``): :func:`load_variant`, :class:`Variant`, :func:`normalise`,
:func:`preprocess_image`, :func:`build_variant`; steps by name via :func:`create_step`
(registry :data:`STEPS`: ``letterbox``, ``stretch``, ``spacing``, ``clahe``,
``histogram_match``); :func:`read_image` decodes an image keeping 16-bit depth.
"""

from ..imageio import image_bit_depth, read_image
from .normalise import IMAGENET_MEAN, IMAGENET_STD, NORMALISATIONS, normalisation_spec, normalise
from .steps import STEPS, Clahe, HistogramMatch, Letterbox, Pipeline, Spacing, Step, Stretch, create_step, parse_steps
from .variant import (
    AFFINE_COLUMNS,
    FORMAT_VERSION,
    BuildResult,
    Variant,
    build_variant,
    file_sha256,
    load_variant,
    preprocess_image,
    variant_fingerprint,
)

#: the public ISBI HRNet's preprocessing (``cwlachap/hrnet-cephalometric-landmark-detection``):
#: letterbox to 768 x 768, bicubic, black pads; normalisation ``imagenet``.
HF_HRNET_SPEC = {"steps": [{"step": "letterbox", "size": [768, 768], "interpolation": "cubic"}]}

__all__ = [
    "HF_HRNET_SPEC",
    "read_image",
    "image_bit_depth",
    "normalise",
    "normalisation_spec",
    "NORMALISATIONS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "STEPS",
    "Step",
    "Letterbox",
    "Stretch",
    "Spacing",
    "Clahe",
    "HistogramMatch",
    "Pipeline",
    "create_step",
    "parse_steps",
    "Variant",
    "BuildResult",
    "build_variant",
    "load_variant",
    "preprocess_image",
    "variant_fingerprint",
    "file_sha256",
    "AFFINE_COLUMNS",
    "FORMAT_VERSION",
]
