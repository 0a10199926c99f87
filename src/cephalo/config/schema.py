"""The typed schema of ``params.yaml``: one pydantic model per section, defaults here only.

Adding a key = one field line in its section's model (see the package docstring). Types:
use the constrained aliases below so a bad value's message says what is expected.
Every model forbids unknown keys (with a "did you mean" suggestion, see :mod:`cephalo.config.messages`).

Importing this module is cheap (pydantic and the data-set registry): the Snakefile imports it at
parse time. The preprocessing registries (steps, normalisations) import OpenCV/NumPy, so the
validators that need them import them when they run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

from annotated_types import Ge, Gt, Le, Lt
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ..datasets import DATASETS
from ..errors import ConfigError
from .messages import Expect, Walk, suggest, validate_section

__all__ = [
    "Expect",
    "Section",
    "Params",
    "PosInt",
    "NonNegInt",
    "PosFloat",
    "NonNegFloat",
    "Prob",
    "Device",
    "DemoDevice",
    "DemoIsbi",
    "DemoAariz",
    "DemoConfigSchema",
    "DatasetDownload",
    "DatasetSpec",
    "DataConfig",
    "VariantSpec",
    "ModelTransfer",
    "ModelOnnx",
    "ModelSourceConfig",
    "ModelConfig",
    "CodecConfig",
    "AugmentConfig",
    "InitConfig",
    "EMAConfig",
    "TrainConfig",
    "AdaptConfig",
    "DiagnosisConfig",
    "EvaluateConfig",
    "TrackingSection",
    "PipelineConfig",
    "PredictConfig",
    "ReviewConfig",
    "CalibrateConfig",
    "TTAConfig",
    "RefineConfig",
    "PRECISIONS",
    "INIT_SOURCES",
    "NON_TRAJECTORY_KEYS",
]


# --- shared constrained types --------------------------------------------------------------
PosInt = Annotated[int, Ge(1)]
NonNegInt = Annotated[int, Ge(0)]
PosFloat = Annotated[float, Gt(0)]
NonNegFloat = Annotated[float, Ge(0)]
Prob = Annotated[float, Ge(0), Le(1)]
Fraction = Annotated[float, Ge(0), Lt(1)]


def _device(v: str) -> str:
    if v in ("auto", "cpu", "cuda") or (v.startswith("cuda:") and v[5:].isdigit()):
        return v
    raise PydanticCustomError("device", "is not a device")


#: ``auto`` (cuda if available, else cpu) | ``cpu`` | ``cuda`` | ``cuda:N``
Device = Annotated[str, AfterValidator(_device), Expect("auto | cpu | cuda | cuda:N")]


def _number_or_pair(v: Any) -> Any:
    def num(x: Any) -> float:
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            raise PydanticCustomError("number_or_pair", "is not a number or [lo, hi]")
        return float(x)

    if isinstance(v, (list, tuple)):
        if len(v) != 2:
            raise PydanticCustomError("number_or_pair", "is not a number or [lo, hi]")
        lo, hi = num(v[0]), num(v[1])
        if lo > hi:
            raise PydanticCustomError("number_or_pair", "has lo > hi")
        return [lo, hi]
    return num(v)


#: a number or a ``[lo, hi]`` pair (augmentation ranges)
NumberOrPair = Annotated[Any, AfterValidator(_number_or_pair), Expect("a number or [lo, hi]")]


def _wh_pair(v: Any) -> list[int]:
    if (
        isinstance(v, bool)
        or not isinstance(v, (list, tuple))
        or len(v) != 2
        or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in v)
    ):
        raise PydanticCustomError("wh", "is not a [W, H] pair of positive integers")
    return [int(v[0]), int(v[1])]


#: ``[W, H]`` in pixels
WH = Annotated[Any, AfterValidator(_wh_pair), Expect("[W, H], two positive integers")]

Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+$"), Expect("a name of letters, digits, _ and -")]


def _demo_size(v: list[int]) -> list[int]:
    if min(v) < 32:
        raise PydanticCustomError("demo_size", "is too small (a demo image is at least 32 px a side)")
    return v


#: ``[W, H]`` of a synthetic demo image
DemoWH = Annotated[Any, AfterValidator(_wh_pair), AfterValidator(_demo_size), Expect("[W, H], two integers >= 32")]


class Section(BaseModel):
    """Base of every params model: unknown keys are errors (with a did-you-mean), no coercion to str."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, arbitrary_types_allowed=True)

    @model_validator(mode="before")
    @classmethod
    def _unknown_keys(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            valid = [n for n in cls.model_fields]
            for key in data:
                if key not in cls.model_fields:
                    raise PydanticCustomError(
                        "unknown_key",
                        "unknown key {key}",
                        {"key": str(key), "valid": valid, "suggestion": suggest(str(key), valid)},
                    )
        return data

    @classmethod
    def from_dict(cls, data: Any, prefix: str = "", source: Any = None) -> Any:
        """Validate ``data`` (None = all defaults) as this section; ``prefix`` is its dotted place in
        the params file (e.g. ``"refine.tta"``) for the message.

        Raises:
            ConfigError: the first bad key or value, as one line naming the dotted key.
        """
        return validate_section(cls, {} if data is None else data, prefix, source)


# --- demo -----------------------------------------------------------------------------------
class DemoDevice(Section):
    """One synthetic X-ray device (``cephalo.demo.DeviceSpec``)."""

    name: str | None = None
    spacing_mm: PosFloat
    size: DemoWH
    gamma: PosFloat = 1.0
    contrast: PosFloat = 1.0
    brightness: float = 0.0
    noise_sd: NonNegFloat = 0.02
    blur_px: NonNegFloat = 0.6
    image_format: Literal["png", "jpg", "jpeg", "bmp"] = "png"
    channels: Literal[1, 3] = 1
    weight: PosFloat = 1.0
    head_size: PosFloat = 1.0  # mean head scale of the device's patients
    tilt_deg: float = 0.0  # mean head rotation (positioning), degrees
    head_offset_mm: tuple[float, float] = (0.0, 0.0)  # mean head position from the field centre, mm
    collimation: Annotated[float, Field(ge=0.0, lt=0.3)] = 0.0  # bright unexposed border, fraction per side
    labels: bool = False  # burnt-in text labels


class DemoIsbi(Section):
    """``demo.isbi2015``: image counts per release folder and the single device's keys."""

    n_train: NonNegInt = 40
    n_test1: NonNegInt = 20
    n_test2: NonNegInt = 0
    name: str | None = None
    spacing_mm: PosFloat | None = None
    size: DemoWH | None = None
    gamma: PosFloat | None = None
    contrast: PosFloat | None = None
    brightness: float | None = None
    noise_sd: NonNegFloat | None = None
    blur_px: NonNegFloat | None = None
    image_format: Literal["bmp"] | None = None
    channels: Literal[1, 3] | None = None
    weight: PosFloat | None = None

    @model_validator(mode="after")
    def _three_digit_names(self) -> DemoIsbi:
        if self.n_train + self.n_test1 + self.n_test2 > 999:
            raise PydanticCustomError("init", "at most 999 images (the release's file names have 3 digits)")
        return self


class DemoAariz(Section):
    n_train: NonNegInt = 30
    n_valid: NonNegInt = 10
    n_test: NonNegInt = 10
    devices: Annotated[list[DemoDevice], Field(min_length=1)] | None = None  # None: cephalo.demo.DEFAULT_AARIZ_DEVICES


class DemoConfigSchema(Section):
    """``demo:`` (``cephalo make-demo``): its checks and defaults live here only; the renderer's
    ``cephalo.demo.DemoConfig`` is built from it by ``cephalo.commands.make_demo.demo_config``."""

    seed: int = 2015
    head_scale: PosFloat = 1.0  # real-size head; coarse demo spacings keep images small
    rotation_deg: NonNegFloat = 3.0
    scale_sd: NonNegFloat = 0.04
    shift_mm: NonNegFloat = 4.0
    elastic_mm: NonNegFloat = 2.5
    junior_jitter_mm: NonNegFloat = 1.0
    shuffle_json_landmarks: bool = True
    isbi2015: DemoIsbi = Field(default_factory=DemoIsbi)
    aariz: DemoAariz = Field(default_factory=DemoAariz)


# --- data -----------------------------------------------------------------------------------
def _known_hash(v: Any) -> Any:
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, Mapping) and all(isinstance(k, str) and isinstance(h, str) for k, h in v.items()):
        return dict(v)
    raise PydanticCustomError("known_hash", "is not a hash")


ADAPTER_NAMES = "aariz | isbi2015 | cldetection2023 | labelme | csv"


class DatasetDownload(Section):
    """``data.datasets.<name>.download`` (``cephalo download``)."""

    url: str | None = None
    known_hash: Annotated[
        Any, AfterValidator(_known_hash), Expect('"md5:<hex>" / "sha256:<hex>", {file: hash} or null')
    ] = None
    cache_dir: str | None = None
    keep_archive: bool = True
    timeout_s: PosFloat = 60.0
    link: bool = False
    #: a folder that already holds the unpacked release (``.../Aariz`` or the folder holding it): used
    #: instead of ``url`` ("I already have it"; ``--from-folder`` on the command line)
    folder: str | None = None


def _adapter(v: str) -> str:
    if v not in DATASETS:
        s = suggest(v, list(DATASETS))
        raise PydanticCustomError("adapter", "is not an adapter" + (f" (did you mean {s!r}?)" if s else ""))
    return v


class DatasetSpec(Section):
    """``data.datasets.<name>`` (``cephalo index``; see ``cephalo.index.index_dataset``)."""

    #: required by ``cephalo index`` (and for every data set the pipeline indexes); a download-only entry may omit it
    adapter: Annotated[str, AfterValidator(_adapter), Expect(ADAPTER_NAMES)] | None = None
    policy: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    drop_out_of_image: bool = False
    require_spacing: bool = True
    hash_images: bool = True
    allow_implausible_spacing: bool = False
    download: DatasetDownload = Field(default_factory=DatasetDownload)

    @field_validator("options", "download", mode="before")
    @classmethod
    def _null_is_default(cls, v: Any) -> Any:
        return {} if v is None else v


class DataConfig(Section):
    datasets: dict[str, DatasetSpec] = Field(default_factory=dict)


# --- variants -------------------------------------------------------------------------------
def _steps(v: Any) -> list:
    """Check a variant's steps against the real registry ``cephalo.preprocess.STEPS`` (names, kwargs, types)."""
    # lazy: the step registry imports OpenCV and NumPy (measured: importing it doubles the import
    # time of cephalo.config, +0.4-0.6 s on 2 loaded cores), which the Snakefile's parse-time check
    # and `cephalo CMD --help` need not pay for when no variant is validated
    from ..preprocess.steps import STEPS

    if not isinstance(v, list) or not v:
        raise PydanticCustomError("steps", "is not a non-empty list of steps")
    for i, item in enumerate(v):
        if isinstance(item, str):
            name, kw = item, {}
        elif isinstance(item, Mapping) and "step" in item:
            name, kw = item["step"], {k: x for k, x in item.items() if k != "step"}
        elif isinstance(item, Mapping) and len(item) == 1:
            ((name, kw),) = item.items()
            kw = {} if kw is None else kw
        else:
            raise PydanticCustomError(
                "step", '[{i}] {item!r} is not a step ("name" or {{name: {{kwargs}}}})', {"i": i, "item": item}
            )
        if name not in STEPS:
            s = suggest(str(name), list(STEPS))
            raise PydanticCustomError(
                "step",
                "[{i}]: unknown step {name}{hint}; valid: {valid}",
                {"i": i, "name": repr(name), "hint": f" (did you mean {s!r}?)" if s else "", "valid": ", ".join(STEPS)},
            )
        if not isinstance(kw, Mapping):
            raise PydanticCustomError(
                "step", "[{i}].{name}: {kw!r} is not a mapping of arguments", {"i": i, "name": name, "kw": kw}
            )
        cls = STEPS[name]
        fields = [f.name for f in dataclasses.fields(cls) if f.init]
        for k in kw:
            if k not in fields:
                s = suggest(str(k), fields)
                raise PydanticCustomError(
                    "step",
                    "[{i}].{name}.{k}: unknown argument{hint}; valid: {valid}",
                    {
                        "i": i,
                        "name": name,
                        "k": k,
                        "hint": f" (did you mean {s!r}?)" if s else "",
                        "valid": ", ".join(fields),
                    },
                )
        try:
            TypeAdapter(cls).validate_python(dict(kw))
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(x) for x in err["loc"])
            msg = err["msg"].split(",")[0]
            raise PydanticCustomError(
                "step",
                "[{i}].{name}.{where}: {value} is not valid ({msg})",
                {
                    "i": i,
                    "name": name,
                    "where": where,
                    "value": repr(err.get("input")),
                    "msg": msg[:1].lower() + msg[1:],
                },
            ) from None
        except (ConfigError, ValueError, TypeError) as e:
            raise PydanticCustomError("step", "[{i}].{name}: {msg}", {"i": i, "name": name, "msg": str(e)}) from None
    return v


def _normalisation(v: Any) -> Any:
    # lazy, as STEPS above (NumPy)
    from ..preprocess.normalise import normalisation_spec

    try:
        normalisation_spec(v)
    except ValueError:
        raise PydanticCustomError("normalisation", "is not a normalisation") from None
    return v


class VariantSpec(Section):
    """``variants.<name>`` (``cephalo preprocess``): steps from ``cephalo.preprocess.STEPS``."""

    steps: Annotated[list, AfterValidator(_steps), Expect("a list of steps from cephalo.preprocess.STEPS")]
    ground_truth: str | None = None
    normalisation: Annotated[
        Any, AfterValidator(_normalisation), Expect("imagenet | unit | zscore (or {name: ..., ...})")
    ] = "imagenet"


# --- model / codec --------------------------------------------------------------------------
class ModelTransfer(Section):
    min_backbone_fraction: Prob = 0.95
    new_channel_init: Literal["mean", "default"] = "mean"


class ModelOnnx(Section):
    opset: PosInt = 17
    dynamic_batch: bool = True
    atol: PosFloat = 1.0e-4
    input_size: WH | None = None


class ModelSourceConfig(Section):
    """``model.source`` (``cephalo fetch-model``; the library object is ``cephalo.public_hrnet.ModelSource``)."""

    kind: Literal["huggingface", "local"] = "huggingface"
    repo_id: str = "cwlachap/hrnet-cephalometric-landmark-detection"
    filename: str = "best_model.pth"
    revision: str | None = None
    cache_dir: str | None = None
    path: str | None = None
    sha256: (
        Annotated[
            str, Field(pattern=r"^(sha256:)?[0-9a-fA-F]{64}$"), Expect("64 hex digits, optionally prefixed sha256:")
        ]
        | None
    ) = None
    offline: bool | None = None
    link: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> ModelSourceConfig:
        if self.kind == "local" and not self.path:
            raise PydanticCustomError("source", "kind is 'local' but path is not set")
        return self


class ModelConfig(Section):
    arch: str | None = None
    pretrained: bool = False
    kwargs: dict[str, Any] = Field(default_factory=dict)
    transfer: ModelTransfer = Field(default_factory=ModelTransfer)
    onnx: ModelOnnx = Field(default_factory=ModelOnnx)
    source: ModelSourceConfig = Field(default_factory=ModelSourceConfig)

    @field_validator("kwargs", "transfer", "onnx", "source", mode="before")
    @classmethod
    def _null_is_default(cls, v: Any) -> Any:
        return {} if v is None else v


class CodecConfig(Section):
    """``codec:`` = keyword arguments of ``cephalo.codecs.create_codec`` (sizes come from the variant)."""

    name: Literal["gaussian"] = "gaussian"
    sigma: PosFloat = 2.0
    decoder: Literal["dark", "argmax", "soft_argmax"] = "dark"
    convention: Literal["pixel_centre", "hf_corner"] = "pixel_centre"
    temperature: PosFloat = 1.0
    quarter_offset: bool = True
    dark_blur: bool = True
    flat_tol: PosFloat | None = None  # None: the decoder's default

    def codec_kwargs(self) -> dict:
        """Keyword arguments for ``create_codec`` (unset optional ones left to the codec)."""
        return self.model_dump(exclude_none=True)


# --- train ----------------------------------------------------------------------------------
#: ``train.mixed_precision`` values. ``none``/``fp32``: float32 everywhere; ``bf16``:
#: bfloat16 autocast (CUDA); ``fp16``: float16 autocast + GradScaler (CUDA). On CPU every
#: value trains in float32 (autocast is a CUDA feature here).
PRECISIONS = ("none", "fp32", "auto", "bf16", "fp16")
#: ``train.init.source`` values (``auto``: ``checkpoint`` when a path is given, else
#: ``imagenet`` when ``model.pretrained`` is true, else ``scratch``).
INIT_SOURCES = ("auto", "checkpoint", "imagenet", "scratch")


class _AugBlock(Section):
    @model_validator(mode="before")
    @classmethod
    def _false_is_off(cls, data: Any) -> Any:
        return {"p": 0.0} if data is False else data


class AugAffine(_AugBlock):
    p: Prob = 0.8
    rotate_deg: NumberOrPair = 10.0
    scale: NumberOrPair = [0.9, 1.1]
    translate_frac: NumberOrPair = 0.05
    shear_deg: NumberOrPair = 0.0


class AugElastic(_AugBlock):
    p: Prob = 0.0
    alpha: NonNegFloat = 30.0
    sigma: PosFloat = 10.0


class AugHflip(_AugBlock):
    p: Prob = 0.0


class AugClahe(_AugBlock):
    p: Prob = 0.0
    clip_limit: NumberOrPair = [1.0, 4.0]
    tile_grid: PosInt = 8


class AugBrightnessContrast(_AugBlock):
    p: Prob = 0.5
    brightness: NonNegFloat = 0.2
    contrast: NonNegFloat = 0.2


class AugGamma(_AugBlock):
    p: Prob = 0.3
    gamma: NumberOrPair = [0.8, 1.2]


class AugNoise(_AugBlock):
    p: Prob = 0.2
    std: NumberOrPair = [0.01, 0.04]


class AugmentConfig(Section):
    """``train.augment`` (``cephalo.augment.build_augmentation``); each block has its own probability p."""

    enabled: bool = True
    affine: AugAffine = Field(default_factory=AugAffine)
    elastic: AugElastic = Field(default_factory=AugElastic)
    hflip: AugHflip = Field(default_factory=AugHflip)
    clahe: AugClahe = Field(default_factory=AugClahe)
    brightness_contrast: AugBrightnessContrast = Field(default_factory=AugBrightnessContrast)
    gamma: AugGamma = Field(default_factory=AugGamma)
    noise: AugNoise = Field(default_factory=AugNoise)

    @model_validator(mode="before")
    @classmethod
    def _null_blocks(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            return {k: ({} if v is None else v) for k, v in data.items()}
        return data

    @classmethod
    def default_blocks(cls) -> dict[str, dict[str, Any]]:
        """``{block: {key: default}}`` of every augmentation block (``cephalo.augment.DEFAULT_AUGMENT``)."""
        return {k: v for k, v in cls().model_dump().items() if k != "enabled"}


class InitConfig(Section):
    """Where the starting weights come from (``train.init``).

    Attributes:
        source: ``auto`` (see :data:`INIT_SOURCES`), ``checkpoint`` (a cephalo checkpoint or the public HF
            ``best_model.pth``; the head is transferred by landmark name), ``imagenet`` (timm pretrained
            backbone, new head) or ``scratch`` (default init).
        path: checkpoint file for ``source == "checkpoint"``.
        min_backbone_fraction: passed to ``cephalo.models.init_from_checkpoint``; fewer
            loaded backbone tensors than this fraction is a ``CheckpointError``.
        new_channel_init: ``mean`` | ``default``: landmark channels the checkpoint lacks
            (``cephalo.models.transfer_head``).
    """

    source: Literal["auto", "checkpoint", "imagenet", "scratch"] = "auto"
    path: str | None = None
    min_backbone_fraction: Prob = 0.95
    new_channel_init: Literal["mean", "default"] = "mean"

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"source": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _path_given(self) -> InitConfig:
        if self.source == "checkpoint" and not self.path:
            raise PydanticCustomError("init", "source is 'checkpoint' but init.path is not set (set it or pass --init)")
        return self

    def resolved(self, model_pretrained: bool = False) -> InitConfig:
        """``auto`` replaced by the concrete source."""
        if self.source != "auto":
            return self
        src = "checkpoint" if self.path else ("imagenet" if model_pretrained else "scratch")
        return self.model_copy(update={"source": src})


class EMAConfig(Section):
    """Exponential moving average of the weights (Polyak averaging; warm-up of the
    decay ``min(decay, (1 + n) / (10 + n))`` as in timm's ``ModelEmaV2``/YOLOv5)."""

    enabled: bool = False
    decay: Fraction = 0.999

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"enabled": data} if isinstance(data, bool) else data


def _encode_on_device(v: Any) -> Any:
    if v == "auto" or isinstance(v, bool):
        return v
    raise PydanticCustomError("encode_on_device", "is not auto, true or false")


def _augment(v: Any) -> dict | None:
    """Validate ``train.augment`` and return it complete (defaults filled) as a plain dict."""
    if v is None:
        return None
    if isinstance(v, AugmentConfig):
        return v.model_dump()
    return AugmentConfig.model_validate(v).model_dump()


#: ``train`` settings that do not change the optimisation trajectory: left out of
#: :meth:`TrainConfig.fingerprint`, so a resumed run may change them (and the resume check never names them)
NON_TRAJECTORY_KEYS: tuple[str, ...] = (
    "num_workers",
    "tracking",
    "resume",
    "early_stopping_patience",
    "early_stopping_min_delta",
    "device",
    "val_batch_size",
    "checkpoint_every_steps",
)


class TrainConfig(Section):
    """All knobs of one training run (``train:`` params section, without ``stages``).

    Other keys: ``freeze_backbone_epochs`` (the first N epochs update only the new weights;
    BatchNorm running statistics still adapt), ``grad_clip`` (max global L2 norm),
    ``accumulate`` (micro-steps per optimizer step), ``ema`` (:class:`EMAConfig`; validated
    and ``best.pt`` weights are the EMA's), ``mixed_precision`` (:data:`PRECISIONS`; loss and
    decoding always float32), ``early_stopping_patience`` (epochs without a better validation
    MRE), ``resume`` (``auto``: continue from ``OUT/last.pt`` if present; ``never``; ``must``),
    ``encode_on_device`` (heatmap targets on the GPU), ``channels_last`` (weights and input
    batches in NHWC memory layout: oneDNN's fast convolution path on CPU, 1.84x per training step
    in ``benchmarks/results/cpu-layout-20261208.md``; values equal to float rounding), ``augment`` (the validated
    ``cephalo.augment`` params as a complete dict; ``None`` = no augmentation),
    ``max_steps_per_epoch`` (smoke runs), ``checkpoint_every_steps`` (also write ``last.pt``
    every N optimizer steps inside an epoch, so a kill loses at most N steps; the resumed run is
    still bitwise the uninterrupted one).

    Validation split: ``val_split: auto`` takes the split named ``valid`` or ``val`` when the
    variant has one, else holds out ``val_fraction`` of ``train_split`` (a fixed, seeded choice by
    image id, keyed by ``split_seed`` (default: ``seed``), so runs that differ only in ``seed`` can
    still hold out the same images; e.g. ISBI 2015 has only train/test1/test2 - its test sets are
    never used to pick checkpoints). A split name uses that split; ``null`` disables validation.

    Batch semantics: ``batch_size`` is the micro-batch **per process/device**; one
    optimizer step sees ``batch_size * world_size * accumulate`` images.
    Learning rates: ``lr`` for parameters initialised from pretrained weights
    ("backbone"), ``head_lr`` (default ``lr``) for newly initialised parameters (the
    heatmap head channels that no checkpoint provided). Schedule: linear warm-up over
    ``warmup_epochs`` from ``warmup_start_factor * lr`` then cosine decay to
    ``min_lr_ratio * lr``, stepped per optimizer step (Loshchilov & Hutter, SGDR, 2017;
    Goyal et al., 2017 warm-up).
    """

    seed: int = 0
    split_seed: int | None = None
    device: Device = "auto"
    epochs: PosInt = 10
    batch_size: PosInt = 4
    accumulate: PosInt = 1
    lr: PosFloat = 1e-4
    head_lr: PosFloat | None = None
    weight_decay: NonNegFloat = 1e-4
    betas: tuple[Fraction, Fraction] = (0.9, 0.999)
    warmup_epochs: NonNegFloat = 0.0
    warmup_start_factor: NonNegFloat = 0.01
    min_lr_ratio: NonNegFloat = 0.01
    freeze_backbone_epochs: NonNegInt = 0
    grad_clip: PosFloat | None = 1.0
    mixed_precision: Literal["none", "fp32", "auto", "bf16", "fp16"] = "none"
    loss: Literal["adaptive_wing", "mse"] = "adaptive_wing"
    loss_kwargs: dict[str, Any] = Field(default_factory=dict)
    init: InitConfig = Field(default_factory=InitConfig)
    ema: EMAConfig = Field(default_factory=EMAConfig)
    train_split: str = "train"
    val_split: str | None = "auto"
    val_fraction: Fraction = 0.1
    early_stopping_patience: PosInt | None = None
    early_stopping_min_delta: NonNegFloat = 0.0
    num_workers: NonNegInt = 2
    drop_last: bool = True
    deterministic: bool = True
    channels_last: bool = True
    resume: Literal["auto", "never", "must"] = "auto"
    sync_bn: bool = False
    val_batch_size: PosInt | None = None
    max_steps_per_epoch: PosInt | None = None
    checkpoint_every_steps: PosInt | None = None
    encode_on_device: Annotated[Any, AfterValidator(_encode_on_device), Expect("auto, true or false")] = "auto"
    tracking: bool = False
    augment: Annotated[Any, AfterValidator(_augment), Walk(AugmentConfig)] = None

    @field_validator("loss_kwargs", mode="before")
    @classmethod
    def _null_is_empty(cls, v: Any) -> Any:
        return {} if v is None else v

    # ------------------------------------------------------------------ build
    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None, source: Any = None) -> TrainConfig:
        """Build from a ``train:`` mapping (without ``stages``; nested ``init``/``ema`` mappings).

        Raises:
            ConfigError: unknown key, wrong type or out-of-range value (one line naming ``train.<key>``).
        """
        return validate_section(cls, dict(d or {}), "train", source)

    def with_overrides(self, **over: Any) -> TrainConfig:
        """A copy with the non-``None`` entries of ``over`` replaced, re-validated."""
        d = self.to_dict()
        for k, v in over.items():
            if v is None:
                continue
            if k in ("init", "ema") and isinstance(v, Mapping):
                d[k] = {**d[k], **v}
            else:
                d[k] = v
        return TrainConfig.from_dict(d)

    def validate(self) -> None:  # noqa: D401 - kept for callers of the former dataclass
        """Re-validate (construction already validates every field)."""
        TrainConfig.from_dict(self.to_dict())

    # ------------------------------------------------------------------ views
    @property
    def effective_head_lr(self) -> float:
        return float(self.head_lr if self.head_lr is not None else self.lr)

    def to_dict(self) -> dict:
        d = self.model_dump()
        d["betas"] = list(self.betas)
        return d

    def fingerprint(self) -> str:
        """SHA-256 of the settings that change the optimisation trajectory.

        Excludes :data:`NON_TRAJECTORY_KEYS` (settings that do not change the weights: workers,
        device string, tracking, early stopping, resume policy, ...), so a resumed run may change them.
        """
        d = self.to_dict()
        for k in NON_TRAJECTORY_KEYS:
            d.pop(k, None)
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()


def deep_merge(base: Mapping, over: Mapping) -> dict:
    """``over`` deep-merged on top of ``base`` (new dicts; the inputs are not modified)."""
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


_deep_merge = deep_merge


class TrainSection(TrainConfig):
    """``train:`` as written in params: the run's keys plus ``stages.<NAME>`` overrides.

    Each stage is validated as the deep merge of the base section and its overrides, with the
    same types (an error names ``train.stages.<NAME>.<key>``).
    """

    stages: Annotated[dict[str, dict[str, Any]], Walk(TrainConfig, keyed=True)] = Field(default_factory=dict)

    @field_validator("stages", mode="before")
    @classmethod
    def _null_stages(cls, v: Any) -> Any:
        if v is None:
            return {}
        if isinstance(v, Mapping):
            return {k: ({} if s is None else s) for k, s in v.items()}
        return v

    @model_validator(mode="wrap")
    @classmethod
    def _check_stages(cls, data: Any, handler: Any) -> Any:
        out = handler(data)
        if isinstance(data, Mapping):
            base = {k: v for k, v in data.items() if k != "stages"}
            for name, over in out.stages.items():
                try:
                    TrainConfig.model_validate(_deep_merge(base, over))
                except ValidationError as e:
                    err = e.errors()[0]
                    raise PydanticCustomError("stage", "{inner}", {"inner": err, "prefix": ["stages", name]}) from None
        return out

    def for_stage(self, stage: str | None) -> TrainConfig:
        """The run's config: the base section with ``stages[stage]`` deep-merged on top.

        Raises:
            ConfigError: an unknown stage (the message lists the defined ones).
        """
        base = {k: v for k, v in self.model_dump(exclude_unset=True).items() if k != "stages"}
        if stage is None:
            return TrainConfig.model_validate(base)
        if stage not in self.stages:
            s = suggest(stage, list(self.stages))
            raise ConfigError(
                f"train.stages: no stage {stage!r}"
                + (f" (did you mean {s!r}?)" if s else "")
                + f"; defined: {', '.join(sorted(self.stages)) or 'none'}"
            )
        return TrainConfig.model_validate(_deep_merge(base, self.stages[stage]))


# --- adapt / evaluate / tracking / predict --------------------------------------------------
class AdaptConfig(Section):
    """``adapt:`` (``cephalo adapt``: AdaBN)."""

    split: str | None = None  # None: all images
    batch_size: Annotated[int, Ge(2)] = 16
    device: Device = "auto"
    max_images: PosInt | None = None
    seed: int = 0


class DiagnosisConfig(Section):
    """``evaluate.diagnosis`` (``cephalo.evaluate.diagnosis.diagnose`` thresholds)."""

    collapse_ratio: PosFloat = 0.5  # constellation spread pred/gt below this -> collapse
    scale_low: PosFloat = 0.8  # spread ratio outside [scale_low, scale_high] -> scale mismatch
    scale_high: PosFloat = 1.25
    offset_min_mm: NonNegFloat = 1.0  # |mean offset| at least this ...
    offset_fraction: NonNegFloat = 0.5  # ... and at least this fraction of the MRE -> systematic offset
    centre_fraction: NonNegFloat = 0.15  # centroid within this fraction of the image size of its centre
    good_mre_mm: PosFloat = 2.5  # MRE at or below this and no pattern -> "works"
    flip_corr: float = -0.2  # correlation pred vs gt along an axis below this -> flipped
    landmark_bias_mm: NonNegFloat = 2.0  # a landmark's mean error vector >= this (mm of a real head) ...
    landmark_bias_fraction: NonNegFloat = 0.5  # ... and >= this fraction of its MRE -> named as biased
    mistake_max_fraction: PosFloat = 0.5  # find_mistakes: undoing leaves <= this fraction of the MRE ...
    mistake_min_gain_mm: NonNegFloat = 1.0  # ... and gains >= this many mm
    residual_min_fraction: NonNegFloat = 0.25  # residual offset/scale named when it removes this fraction ...
    residual_min_gain_mm: NonNegFloat = 0.5  # ... and this many mm


class EvaluateConfig(Section):
    """``evaluate:`` (``cephalo evaluate``)."""

    thresholds_mm: Annotated[list[PosFloat], Field(min_length=1)] = [2.0, 2.5, 3.0, 4.0]  # SDR radii, mm
    n_boot: NonNegInt = 1000
    seed: int = 0
    batch_size: PosInt = 4
    device: Device = "cpu"
    n_worst: NonNegInt = 4
    human_limit: bool = True
    diagnosis: DiagnosisConfig = Field(default_factory=DiagnosisConfig)

    @field_validator("diagnosis", mode="before")
    @classmethod
    def _null_is_default(cls, v: Any) -> Any:
        return {} if v is None else v


class TrackingSection(Section):
    """``tracking:`` (``cephalo.tracking.TrackingConfig``; relative paths are against the project folder)."""

    enabled: bool = True
    store: str = "mlflow/mlflow.db"
    artifacts: str = "mlflow/artifacts"
    experiment_prefix: str = "cephalo-"
    experiment: str | None = None  # an explicit experiment name (None: prefix + pipeline.target)
    lock_timeout_s: PosFloat = 120.0
    retries: PosInt = 6
    # an MLflow tracking server (``http://host:5000``, scripts/mlflow-server.sh) instead of the
    # SQLite file ``store``: several machines log into one store; env CEPHALO_TRACKING_URI overrides
    uri: Annotated[str, Field(pattern=r"^https?://")] | None = None


class PipelineConfig(Section):
    """``pipeline:`` (which data, variants and source model the Snakemake/DVC DAG runs)."""

    make_demo: Annotated[list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_./-]+$")]], Field(max_length=1)] = []
    download: list[Name] = []
    raw: Annotated[dict[Name, str], Field(min_length=1)]
    source: Annotated[dict[Name, str], Field(max_length=1)] = {}
    source_variant: Name
    train_source: Annotated[list[Name], Field(max_length=1)] = []
    fetch_source: Annotated[list[Name], Field(max_length=1)] = []
    target: Name
    variants: Annotated[list[Name], Field(min_length=1)]
    zero_shot_split: str = "test"
    eval_split: str = "test"
    refine_source: Annotated[dict[Name, str], Field(max_length=1)] = {}  # {DATASET: split}: source refiner
    refine_variants: list[Name] = []  # target variants whose fine-tuned model gets a fine-tuned refiner
    # CPU threads of each training job: Snakemake's ``threads:`` of the training rules (it sets
    # OMP_NUM_THREADS, which torch follows, and never gives a job more than --cores); other jobs run
    # with one thread beside them. Figures depend on it (float reductions): the demo keeps 1.
    train_threads: PosInt = 1

    @field_validator("variants", "refine_variants")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise PydanticCustomError("unique", "has repeated names")
        return v


class ReviewConfig(Section):
    """``predict.review``: thresholds of the review flags (used by :mod:`cephalo.flags`)."""

    radius_mm: PosFloat = 2.0  # flag a landmark whose calibrated prediction radius exceeds this
    coverage: Annotated[float, Gt(0), Lt(1)] = 0.9  # coverage level of the radii drawn and compared
    min_side_px: PosInt = 256  # image flag "tiny": shorter side below this
    max_aspect: Annotated[float, Ge(1)] = 2.0  # image flag "aspect": long/short side above this
    min_structure: NonNegFloat = 0.5  # image flag "no_structure": blur-surviving variance fraction below this
    # image flag "noisy": flags.noise_level (noise sd / white level) above this. Calibrated on real images:
    # ISBI 2015 training images 0.0014 median, 0.0016 max (every 10th of 001-150), Hamedan 0.0026 max;
    # 0.01 is ~6x the training maximum; added Gaussian noise of sd >= 3 grey levels (of 255) is flagged
    max_noise: NonNegFloat = 0.01
    max_flagged_landmarks: PosInt = 3  # flag the image when this many landmarks are not found (outside / no position)


class PredictConfig(Section):
    """``predict:`` (``cephalo predict``; command-line options override)."""

    batch_size: PosInt = 4
    device: Device = "auto"
    spacing_mm: PosFloat | Annotated[list[PosFloat], Field(min_length=2, max_length=2)] | None = (
        None  # mm/px, or [x, y]
    )
    variant: str | None = None
    overlays: bool = True
    skip_bad: bool = False
    report: bool = True
    review: ReviewConfig = Field(default_factory=ReviewConfig)


class CalibrateConfig(Section):
    """``calibrate:`` (``cephalo calibrate``: split-conformal radii, ``cephalo.uncertainty.calibrate_model``)."""

    split: str = "valid"
    coverages: Annotated[list[Annotated[float, Gt(0), Lt(1)]], Field(min_length=1)] = [0.9, 0.95]
    scale: Literal["inverse_confidence", "constant"] = "inverse_confidence"
    conf_floor: PosFloat = 0.01
    pooling: Literal["pooled", "landmark", "auto"] = "pooled"  # auto: per landmark (Mondrian) when n is large enough
    difficulty_split: str | None = "train"
    shape_split: str | None = "train"
    shape_quantile: Annotated[float, Gt(0), Le(1)] = 0.99
    shape_margin: PosFloat = 1.5
    batch_size: PosInt = 4
    device: Device = "auto"


def _as_list(v: Any) -> Any:
    return [v] if isinstance(v, (int, float)) and not isinstance(v, bool) else v


class TTAConfig(Section):
    """``refine.tta``: test-time augmentation of the refiner, valid for a lateral cephalogram
    (never a left-right flip).

    Every combination of ``scales`` (window mm/px multiplied by s), ``shifts_px`` (the window
    centre moved by +-d window px along x and y; 0 = no shift) and ``gammas`` (intensity
    ``v -> v ** g`` on [0, 1]) is predicted and the positions, mapped back to original pixels,
    are averaged. The identity ``{scales: [1], shifts_px: [0], gammas: [1]}`` is one pass.
    """

    scales: Annotated[list[PosFloat], Field(min_length=1)] = [1.0]
    shifts_px: Annotated[list[float], Field(min_length=1)] = [0.0]
    gammas: Annotated[list[PosFloat], Field(min_length=1)] = [1.0]

    @field_validator("scales", "shifts_px", "gammas", mode="before")
    @classmethod
    def _scalar(cls, v: Any) -> Any:
        return _as_list(v)

    def settings(self) -> list[tuple[float, float, float, float]]:
        """Every ``(scale, dx_px, dy_px, gamma)`` pass (a shift d gives the 4 moves (+-d, 0), (0, +-d))."""
        shifts: list[tuple[float, float]] = []
        for d in self.shifts_px:
            moves = [(0.0, 0.0)] if d == 0 else [(d, 0.0), (-d, 0.0), (0.0, d), (0.0, -d)]
            shifts += [m for m in moves if m not in shifts]
        return [(s, dx, dy, g) for s in self.scales for dx, dy in shifts for g in self.gammas]

    def to_dict(self) -> dict:
        return self.model_dump()


def _window(v: int) -> int:
    if v < 8 or v % 4:
        raise PydanticCustomError("window", "is not a multiple of 4 >= 8")
    return v


def _jitter(v: Any) -> Any:
    if v == "auto":
        return v
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
        raise PydanticCustomError("jitter", "is not auto or a number >= 0")
    return float(v)


class RefineConfig(Section):
    """``refine:`` (``cephalo train-refiner``, :mod:`cephalo.refine`).

    ``spacing_mm`` (window resolution, mm/px), ``window`` (window side, px), ``fallback_spacing_mm``
    (for images without a pixel spacing), ``arch``/``kwargs`` (the refiner's network), ``jitter_mm``
    (s.d. per axis of the training-window centre around the ground truth: a number, or ``auto`` =
    from the global model's validation MRE, see :func:`cephalo.refine.train.choose_jitter`),
    ``jitter_scale``, ``min_jitter_mm``, ``max_jitter_mm``, ``crops_per_landmark``, ``iterations``,
    ``batch_size`` (windows per forward pass at inference), ``tta`` (:class:`TTAConfig`).
    ``train`` (overrides of ``train:`` for every refiner run) and ``stages.<NAME>`` are validated
    merged onto ``train:`` with the :class:`TrainConfig` types.

    The :data:`INFERENCE_KEYS` (``iterations``, ``batch_size``, ``tta``) change how a trained
    refiner predicts, never its training: ``cephalo bundle`` writes them into a bundle, so a change
    of them re-writes the bundles and re-evaluates without training again.
    """

    #: settings that only the bundle (inference) reads; every other key is a training setting
    INFERENCE_KEYS: ClassVar[tuple[str, ...]] = ("iterations", "batch_size", "tta")

    spacing_mm: PosFloat = 0.3
    window: Annotated[int, AfterValidator(_window), Expect("a multiple of 4 >= 8 (the model stride)")] = 64
    fallback_spacing_mm: PosFloat | None = None
    arch: Annotated[str, Field(min_length=1)] = "timm:hrnet_w18_small"
    kwargs: dict[str, Any] = Field(default_factory=dict)
    jitter_mm: Annotated[Any, AfterValidator(_jitter), Expect("auto or a number >= 0")] = "auto"
    jitter_scale: NonNegFloat = 1.5
    min_jitter_mm: NonNegFloat = 0.5
    max_jitter_mm: NonNegFloat = 5.0
    crops_per_landmark: PosInt = 4
    iterations: PosInt = 1
    batch_size: PosInt = 64
    tta: TTAConfig = Field(default_factory=TTAConfig)
    train: Annotated[dict[str, Any], Walk(TrainConfig)] = Field(default_factory=dict)
    stages: Annotated[dict[str, dict[str, Any]], Walk(TrainConfig, keyed=True)] = Field(default_factory=dict)

    @field_validator("kwargs", "tta", "train", mode="before")
    @classmethod
    def _null_is_default(cls, v: Any) -> Any:
        return {} if v is None else v

    @field_validator("stages", mode="before")
    @classmethod
    def _null_stages(cls, v: Any) -> Any:
        if v is None:
            return {}
        if isinstance(v, Mapping):
            return {k: ({} if s is None else s) for k, s in v.items()}
        return v

    def inference_settings(self) -> dict:
        """The ``refine`` settings a bundle carries: ``{"iterations", "batch_size", "tta"}``."""
        return {"iterations": self.iterations, "batch_size": self.batch_size, "tta": self.tta.to_dict()}

    def training_settings(self) -> dict:
        """Every ``refine`` setting but :data:`INFERENCE_KEYS` (what a trained refiner depends on)."""
        return self.model_dump(exclude=set(self.INFERENCE_KEYS))

    def train_config(self, train: TrainSection, stage: str | None = None) -> TrainConfig:
        """The refiner's run: ``train:`` (no stages) + ``refine.train`` + ``refine.stages[stage]``.

        Raises:
            ConfigError: a stage that ``refine.stages`` does not define.
        """
        merged = deep_merge(
            {k: v for k, v in train.model_dump(exclude_unset=True).items() if k != "stages"}, self.train
        )
        if stage is not None:
            if stage not in self.stages:
                s = suggest(stage, list(self.stages))
                raise ConfigError(
                    f"refine.stages: no stage {stage!r}"
                    + (f" (did you mean {s!r}?)" if s else "")
                    + f"; defined: {', '.join(sorted(self.stages)) or 'none'}"
                )
            merged = deep_merge(merged, self.stages[stage])
        return TrainConfig.model_validate(merged)

    def crop_spec(self) -> dict:
        """What inference needs to cut windows as in training (stored as the checkpoint's ``meta.variant``)."""
        return {
            "refine": {
                "spacing_mm": float(self.spacing_mm),
                "window": [int(self.window)] * 2,
                "fallback_spacing_mm": self.fallback_spacing_mm,
            }
        }

    def to_dict(self) -> dict:
        return self.model_dump()


# --- the whole file -------------------------------------------------------------------------
class Params(Section):
    """A complete params file. Every section is optional here (a missing one = its defaults),
    except what the workflow needs (checked by :func:`cephalo.config.load.check_pipeline`)."""

    demo: DemoConfigSchema = Field(default_factory=DemoConfigSchema)
    data: DataConfig = Field(default_factory=DataConfig)
    variants: dict[Name, VariantSpec] = Field(default_factory=dict)
    model: ModelConfig = Field(default_factory=ModelConfig)
    codec: CodecConfig = Field(default_factory=CodecConfig)
    train: TrainSection = Field(default_factory=TrainSection)
    adapt: AdaptConfig = Field(default_factory=AdaptConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    tracking: TrackingSection = Field(default_factory=TrackingSection)
    pipeline: PipelineConfig | None = None
    predict: PredictConfig = Field(default_factory=PredictConfig)
    calibrate: CalibrateConfig = Field(default_factory=CalibrateConfig)
    refine: RefineConfig = Field(default_factory=RefineConfig)

    @model_validator(mode="before")
    @classmethod
    def _null_sections(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            return {k: ({} if v is None and k != "pipeline" else v) for k, v in data.items()}
        return data

    @model_validator(mode="after")
    def _refiner_runs(self) -> Params:
        """``refine.train`` and each ``refine.stages.<NAME>`` merged onto ``train:`` must be a valid run."""
        for stage in [None, *self.refine.stages]:
            try:
                self.refine.train_config(self.train, stage)
            except ValidationError as e:
                err = e.errors()[0]
                top = err["loc"][0] if err["loc"] else None
                if err["type"] == "unknown_key":
                    top = (err.get("ctx") or {}).get("key")
                where = ["stages", stage] if stage is not None and top in self.refine.stages[stage] else ["train"]
                raise PydanticCustomError("stage", "{inner}", {"inner": err, "prefix": ["refine", *where]}) from None
        return self
