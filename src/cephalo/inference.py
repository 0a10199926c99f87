"""The one path from a model's output to landmarks in original pixels.

Training validation (:class:`cephalo.train.Trainer`), ``cephalo evaluate``
(:func:`cephalo.evaluate.runner.evaluate_model`) and ``cephalo predict``
(:func:`cephalo.predict.predict_images`) all call this module, so the three can never disagree
on the device, the normalisation, the codec or the way back to the original image.

Per batch of preprocessed images (``(H, W)`` uint8/uint16, the model-input frame):

1. normalise (:func:`cephalo.preprocess.normalise`, white level from each image's dtype) and run
   the model on the resolved device (:func:`resolve_device`), optionally under autocast;
2. decode the ``(B, K, h, w)`` float32 output with the codec (:mod:`cephalo.codecs`; built from
   the checkpoint's ``meta.codec`` with ``heatmap_size`` read off the output, or given ready) into
   model-input pixels;
3. undo the label frame and the preprocessing affine in one step: the inverse of
   :func:`cephalo.geometry.label_frame_affine` of each image's affine (the pixel affine itself for
   ``convention="pixel_centre"``, the public HRNet's ``x * scale + pad`` for ``"hf_corner"``), giving
   xy in original pixels, origin at the centre of the top-left pixel (:mod:`cephalo.geometry`).

Millimetres are not computed here (only in :mod:`cephalo.evaluate.metrics`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import geometry as G
from .errors import ConfigError

__all__ = ["DEVICES", "Predictions", "Predictor", "resolve_device", "predict_variant"]

#: the device names accepted everywhere (params ``*.device``, ``--device``)
DEVICES = "auto, cpu, cuda, cuda:N"


def resolve_device(spec: Any = "auto", local_rank: int = 0, key: str = "device"):
    """The ``torch.device`` a device setting names.

    Args:
        spec: ``auto`` (``cuda:LOCAL_RANK`` when CUDA is available, else ``cpu``) | ``cpu`` |
            ``cuda`` (``cuda:LOCAL_RANK``) | ``cuda:N``; case and surrounding blanks are ignored;
            ``None``/empty = ``auto``. A ``torch.device`` passes through the same checks.
        local_rank: this process's local rank (``torchrun``), for ``auto``/``cuda``.
        key: the setting's name in messages (e.g. ``evaluate.device``).

    Returns:
        ``torch.device``.

    Raises:
        ConfigError: an unknown name, CUDA asked for where it is not available, or a CUDA index
            beyond the devices present.
    """
    import torch

    s = str(spec if spec is not None else "auto").strip().lower() or "auto"
    cuda = torch.cuda.is_available()
    if s == "auto":
        s = "cuda" if cuda else "cpu"
    if s == "cpu":
        return torch.device("cpu")
    if s == "cuda" or s.startswith("cuda:"):
        idx_s = s[5:] if s.startswith("cuda:") else str(int(local_rank))
        if not idx_s.isdigit():
            raise ConfigError(f"{key}: unknown device {spec!r}; valid: {DEVICES}")
        if not cuda:
            raise ConfigError(f"{key}: {spec!r} asked for but CUDA is not available here; use auto or cpu")
        idx = int(idx_s)
        n = torch.cuda.device_count()
        if idx >= n:
            raise ConfigError(f"{key}: {spec!r} asked for but only {n} CUDA device(s) are present")
        return torch.device("cuda", idx)
    raise ConfigError(f"{key}: unknown device {spec!r}; valid: {DEVICES}")


@dataclass
class Predictions:
    """Landmarks predicted on N images, in original pixels.

    Attributes:
        coords: ``(N, K, 2)`` float64, xy, original-image pixels (origin at the centre of the
            top-left pixel); NaN where ``degenerate``. K = the model's channels, in its order.
        confidence: ``(N, K)`` float64, the codec's confidence (decoder-dependent scale; 0 where
            degenerate).
        degenerate: ``(N, K)`` bool, flat or non-finite heatmap (no position).
        coords_input: ``(N, K, 2)`` float64, the same points in model-input pixels (as decoded).
    """

    coords: np.ndarray
    confidence: np.ndarray
    degenerate: np.ndarray
    coords_input: np.ndarray

    def __len__(self) -> int:
        return int(self.coords.shape[0])

    @staticmethod
    def concatenate(parts: Sequence[Predictions], n_landmarks: int = 0) -> Predictions:
        """One :class:`Predictions` from consecutive batches (an empty list gives N = 0)."""
        if not parts:
            k = int(n_landmarks)
            return Predictions(np.zeros((0, k, 2)), np.zeros((0, k)), np.zeros((0, k), bool), np.zeros((0, k, 2)))
        return Predictions(
            *(
                np.concatenate([getattr(p, f) for p in parts])
                for f in ("coords", "confidence", "degenerate", "coords_input")
            )
        )


class Predictor:
    """A model ready for inference: device, normalisation and codec settled once.

    Args:
        model: ``nn.Module``, ``(B, 3, H, W) float32 -> (B, K, h, w)`` heatmaps/logits. Moved to
            the device and put in eval mode by each call (training switches it back itself).
        codec: a ready codec (``cephalo.codecs``), or None to build one from ``codec_spec``.
        codec_spec: ``meta.codec`` (``create_codec`` keywords); ``input_size`` comes from the
            images and ``heatmap_size`` from the first output, so a stale size in the meta cannot
            disagree with the model.
        normalisation: :func:`cephalo.preprocess.normalise` spec (``None`` = imagenet).
        device: a setting for :func:`resolve_device` or a ``torch.device``.
        n_landmarks: the K the model must output (its meta's landmark count), checked per batch.
        autocast_dtype: run the forward pass under ``torch.autocast`` with this dtype (training
            validation under mixed precision); None = float32.
        device_key: the setting's name in device errors.

    Raises:
        ConfigError: bad device (at construction); a model whose output does not fit ``n_landmarks``
            or the codec (``CodecConfigError``, a ConfigError) at the first batch.
    """

    def __init__(
        self,
        model: Any,
        *,
        codec: Any = None,
        codec_spec: Mapping | None = None,
        normalisation: Any = None,
        device: Any = "auto",
        n_landmarks: int | None = None,
        autocast_dtype: Any = None,
        device_key: str = "device",
    ):
        import torch

        if codec is None and codec_spec is None:
            raise ValueError("Predictor needs a codec or a codec_spec")
        self.model = model
        self.codec = codec
        self.codec_spec = dict(codec_spec or {})
        self.normalisation = normalisation
        self.device = device if isinstance(device, torch.device) else resolve_device(device, key=device_key)
        self.n_landmarks = None if n_landmarks is None else int(n_landmarks)
        self.autocast_dtype = autocast_dtype

    @classmethod
    def from_meta(
        cls, model: Any, meta: Any, *, normalisation: Any = None, device: Any = "auto", device_key: str = "device"
    ) -> Predictor:
        """A predictor for a loaded checkpoint (``cephalo.models.load_model``): codec from
        ``meta.codec``, normalisation ``meta.normalisation`` (else ``normalisation``), K from
        ``meta.landmark_names``."""
        return cls(
            model,
            codec_spec=dict(getattr(meta, "codec", None) or {}),
            normalisation=getattr(meta, "normalisation", None) or normalisation,
            device=device,
            n_landmarks=len(meta.landmark_names),
            device_key=device_key,
        )

    def _codec_for(self, input_wh: tuple[int, int], hm_shape: Sequence[int]):
        if self.codec is None:
            from .codecs import create_codec

            kw = dict(self.codec_spec)
            kw.update(input_size=input_wh, heatmap_size=(int(hm_shape[-1]), int(hm_shape[-2])))
            self.codec = create_codec(**kw)
        return self.codec

    def heatmaps(self, images: Sequence[np.ndarray]):
        """Run the model on one batch: ``(B, K, h, w)`` float32 tensor on the device.

        Args:
            images: B preprocessed ``(H, W)`` uint8/uint16 arrays of one size (dtypes may differ:
                each is normalised with its own white level).
        """
        import torch

        from .preprocess import normalise

        # NHWC (channels-last) layout, as in training (train.channels_last): oneDNN's fast convolution
        # path on CPU; the values differ from NCHW only by float rounding
        x = torch.cat([normalise(np.asarray(im)[None], self.normalisation) for im in images]).to(self.device)
        x = x.contiguous(memory_format=torch.channels_last)
        layout = {"memory_format": torch.channels_last} if isinstance(self.model, torch.nn.Module) else {}
        self.model.to(self.device, **layout).eval()  # a duck-typed model (test double, wrapper) keeps its own
        ctx = (
            torch.autocast(self.device.type, dtype=self.autocast_dtype)
            if self.autocast_dtype
            else contextlib.nullcontext()
        )
        with torch.no_grad(), ctx:
            out = self.model(x)
        out = out.float()
        if self.n_landmarks is not None and out.shape[1] != self.n_landmarks:
            raise ConfigError(
                f"the model outputs {out.shape[1]} heatmaps but its meta names {self.n_landmarks} landmarks"
            )
        return out

    def predict(
        self,
        images: Sequence[np.ndarray],
        affines: np.ndarray,
        orig_sizes: np.ndarray,
        on_heatmaps: Callable[[Any], None] | None = None,
    ) -> Predictions:
        """Predict one batch and map it back to original pixels.

        Args:
            images: B preprocessed ``(H, W)`` uint8/uint16 images (model-input frame).
            affines: ``(B, 2, 3)`` float64, original px -> model-input px (the preprocessing).
            orig_sizes: ``(B, 2)`` original ``(w, h)`` px (needed by the ``hf_corner`` label frame).
            on_heatmaps: called with the ``(B, K, h, w)`` float32 output tensor before decoding
                (e.g. the validation loss).

        Returns:
            :class:`Predictions` of the B images.
        """
        images = [np.asarray(im) for im in images]
        if not images:
            return Predictions.concatenate([], self.n_landmarks or 0)
        h, w = images[0].shape[:2]
        out = self.heatmaps(images)
        if on_heatmaps is not None:
            on_heatmaps(out)
        codec = self._codec_for((int(w), int(h)), out.shape)
        dec = codec.decode(out)
        coords_in = np.asarray(dec.coords, dtype=np.float64)
        convention = str(getattr(codec, "convention", "pixel_centre"))
        aff = np.asarray(affines, dtype=np.float64).reshape(-1, 2, 3)
        sizes = np.asarray(orig_sizes).reshape(-1, 2)
        inv = np.stack(
            [
                G.invert(
                    G.label_frame_affine(aff[b], (int(sizes[b, 0]), int(sizes[b, 1])), (int(w), int(h)), convention)
                )
                for b in range(len(images))
            ]
        )
        return Predictions(
            coords=G.apply_affine(inv, coords_in),
            confidence=np.asarray(dec.confidence, dtype=np.float64),
            degenerate=np.asarray(dec.degenerate, dtype=bool),
            coords_input=coords_in,
        )


def predict_variant(
    predictor: Predictor,
    variant: Any,
    rows: Sequence[int] | np.ndarray,
    *,
    batch_size: int = 4,
    on_heatmaps: Callable[[Sequence[int], Any], None] | None = None,
    progress: bool = False,
    desc: str = "predict",
) -> Predictions:
    """Predict the images ``rows`` of a preprocessing variant, in original pixels.

    Args:
        predictor: the model (:class:`Predictor`).
        variant: a :class:`cephalo.preprocess.Variant` (or any object with ``images`` (N, H, W),
            ``affines`` (N, 2, 3) original -> preprocessed, ``orig_sizes`` (N, 2) (w, h)).
        rows: image rows to predict (in this order).
        batch_size: images per forward pass (>= 1).
        on_heatmaps: called as ``(batch_rows, heatmaps (B, K, h, w) float32 tensor)`` per batch.
        progress: show a tqdm bar.

    Returns:
        :class:`Predictions` with ``len(rows)`` images.

    Raises:
        ConfigError: ``batch_size < 1`` (and as :class:`Predictor`).
    """
    if int(batch_size) < 1:
        raise ConfigError(f"batch size must be >= 1, got {batch_size}")
    from tqdm.auto import tqdm

    rows = [int(r) for r in rows]
    affines = np.asarray(variant.affines, dtype=np.float64)
    sizes = np.asarray(variant.orig_sizes)
    parts = []
    bs = int(batch_size)
    for s in tqdm(range(0, len(rows), bs), desc=desc, disable=not progress, leave=False):
        r = rows[s : s + bs]
        hook = None if on_heatmaps is None else (lambda hm, r=r: on_heatmaps(r, hm))
        parts.append(predictor.predict([variant.images[i] for i in r], affines[r], sizes[r], on_heatmaps=hook))
    return Predictions.concatenate(parts, predictor.n_landmarks or 0)
