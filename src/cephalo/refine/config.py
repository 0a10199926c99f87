"""The ``refine:`` params section as a typed, validated dataclass (the library never reads params).

Keys (see params.yaml): ``spacing_mm`` (window resolution, mm/px), ``window`` (window side, px),
``fallback_spacing_mm`` (for images without a pixel spacing), ``arch``/``kwargs`` (the refiner's
network), ``jitter_mm`` (s.d. per axis of the training-window centre around the ground truth:
a number, or ``auto`` = from the global model's validation MRE), ``jitter_scale``,
``min_jitter_mm``, ``max_jitter_mm``, ``crops_per_landmark``, ``iterations``, ``tta`` (inference
test-time augmentation: ``scales``, ``shifts_px``, ``gammas``), ``batch_size`` (windows per
forward pass at inference), ``train`` (overrides of the ``train:`` section for the refiner) and
``stages`` (per-stage overrides, like ``train.stages``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError

__all__ = ["RefineConfig", "TTAConfig"]


@dataclass(frozen=True)
class TTAConfig:
    """Test-time augmentation valid for a lateral cephalogram (never a left-right flip).

    Every combination of ``scales`` (window mm/px multiplied by s), ``shifts_px`` (the window
    centre moved by +-d window px along x and y; 0 = no shift) and ``gammas`` (intensity
    ``v -> v ** g`` on [0, 1]) is predicted and the positions, mapped back to original pixels,
    are averaged. The identity ``{scales: [1], shifts_px: [0], gammas: [1]}`` is one pass.
    """

    scales: tuple[float, ...] = (1.0,)
    shifts_px: tuple[float, ...] = (0.0,)
    gammas: tuple[float, ...] = (1.0,)

    @classmethod
    def from_dict(cls, d: Mapping | None) -> TTAConfig:
        d = dict(d or {})
        unknown = set(d) - {"scales", "shifts_px", "gammas"}
        if unknown:
            raise ConfigError(f"params refine.tta: unknown keys {sorted(unknown)}; valid: scales, shifts_px, gammas")
        out = {}
        for k in ("scales", "shifts_px", "gammas"):
            v = d.get(k, getattr(cls, k))
            v = [v] if isinstance(v, (int, float)) else list(v)
            try:
                vals = tuple(float(x) for x in v)
            except (TypeError, ValueError):
                raise ConfigError(f"params refine.tta.{k}: expected numbers, got {v!r}") from None
            if not vals or (k != "shifts_px" and any(not x > 0 for x in vals)):
                raise ConfigError(f"params refine.tta.{k}: expected a non-empty list of positive numbers, got {v!r}")
            out[k] = vals
        return cls(**out)

    def settings(self) -> list[tuple[float, float, float, float]]:
        """Every ``(scale, dx_px, dy_px, gamma)`` pass (a shift d gives the 4 moves (+-d, 0), (0, +-d))."""
        shifts = []
        for d in self.shifts_px:
            moves = [(0.0, 0.0)] if d == 0 else [(d, 0.0), (-d, 0.0), (0.0, d), (0.0, -d)]
            shifts += [m for m in moves if m not in shifts]
        return [(s, dx, dy, g) for s in self.scales for dx, dy in shifts for g in self.gammas]

    def to_dict(self) -> dict:
        return {k: list(v) for k, v in dataclasses.asdict(self).items()}


@dataclass(frozen=True)
class RefineConfig:
    """The ``refine:`` params section (module doc)."""

    spacing_mm: float = 0.3
    window: int = 64
    fallback_spacing_mm: float | None = None
    arch: str = "timm:hrnet_w18_small"
    kwargs: dict = field(default_factory=dict)
    jitter_mm: float | str = "auto"
    jitter_scale: float = 1.5
    min_jitter_mm: float = 0.5
    max_jitter_mm: float = 5.0
    crops_per_landmark: int = 4
    iterations: int = 1
    batch_size: int = 64
    tta: TTAConfig = field(default_factory=TTAConfig)
    train: dict = field(default_factory=dict)
    stages: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> RefineConfig:
        """Build from the ``refine:`` section.

        Raises:
            ConfigError: unknown key or bad value (the message names the key).
        """
        d = dict(d or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"params refine: unknown key(s) {unknown}; valid keys: {sorted(names)}")
        kw = dict(d)
        kw["tta"] = TTAConfig.from_dict(d.get("tta"))
        for k in ("kwargs", "train", "stages"):
            if kw.get(k) is None:
                kw[k] = {}
            if not isinstance(kw[k], Mapping):
                raise ConfigError(f"params refine.{k}: expected a mapping, got {kw[k]!r}")
        cfg = cls(**kw)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        def pos(k: str, v: Any) -> None:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0):
                raise ConfigError(f"params refine.{k}: expected a positive number, got {v!r}")

        pos("spacing_mm", self.spacing_mm)
        if self.fallback_spacing_mm is not None:
            pos("fallback_spacing_mm", self.fallback_spacing_mm)
        if not isinstance(self.window, int) or self.window < 8 or self.window % 4:
            raise ConfigError(f"params refine.window: expected a multiple of 4 >= 8 (the model stride), got {self.window!r}")
        if self.jitter_mm != "auto" and (isinstance(self.jitter_mm, bool) or not isinstance(self.jitter_mm, (int, float))
                                         or self.jitter_mm < 0):
            raise ConfigError(f"params refine.jitter_mm: expected 'auto' or a number >= 0, got {self.jitter_mm!r}")
        for k in ("jitter_scale", "min_jitter_mm", "max_jitter_mm"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise ConfigError(f"params refine.{k}: expected a number >= 0, got {v!r}")
        for k in ("crops_per_landmark", "iterations", "batch_size"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"params refine.{k}: expected an integer >= 1, got {v!r}")
        if not isinstance(self.arch, str) or not self.arch:
            raise ConfigError(f"params refine.arch: expected a model name, got {self.arch!r}")

    def crop_spec(self) -> dict:
        """What inference needs to cut windows as in training (stored as the checkpoint's ``meta.variant``)."""
        return {"refine": {"spacing_mm": float(self.spacing_mm), "window": [int(self.window)] * 2,
                           "fallback_spacing_mm": self.fallback_spacing_mm}}

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["tta"] = self.tta.to_dict()
        return d
