"""``cephalo make-demo --out DIR``: the embedded synthetic demo data (params ``demo:``).

The renderer (:mod:`cephalo.demo`) is pure: it draws images from a :class:`~cephalo.demo.DemoConfig`.
Each data set's writer lives beside its adapter (:mod:`cephalo.datasets.isbi2015.demo`,
:mod:`cephalo.datasets.aariz.demo`); :func:`make_demo` runs both. The ``demo:`` section is checked and
defaulted by its schema only (:class:`cephalo.config.schema.DemoConfigSchema`); :func:`demo_config`
turns the validated section into the renderer's config.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ._common import params_option, read_params

if TYPE_CHECKING:
    from ..config.schema import DemoConfigSchema, DemoDevice
    from ..demo import DemoConfig, DeviceSpec

__all__ = ["command", "demo_config", "device_spec", "make_demo"]

#: ``demo.isbi2015`` keys that replace an attribute of the source device
_ISBI_DEVICE_KEYS = (
    "name",
    "spacing_mm",
    "size",
    "gamma",
    "contrast",
    "brightness",
    "noise_sd",
    "blur_px",
    "image_format",
    "channels",
    "weight",
)


def device_spec(device: DemoDevice, default_name: str) -> DeviceSpec:
    """The renderer's device from a validated ``DemoDevice`` (``default_name`` when it has none)."""
    # deferred: `cephalo make-demo --help` and the CLI's start-up import no library (cephalo.commands);
    # the renderer imports OpenCV (measured: --help 0.07 s this way, 0.7 s with these at the top)
    from ..demo import DeviceSpec

    d = device.model_dump()
    d["name"] = d["name"] if d["name"] is not None else default_name
    d["size"] = (int(d["size"][0]), int(d["size"][1]))
    d["head_offset_mm"] = (float(d["head_offset_mm"][0]), float(d["head_offset_mm"][1]))
    return DeviceSpec(**d)


def demo_config(section: DemoConfigSchema | Mapping[str, Any] | None = None) -> DemoConfig:
    """The renderer's config from the ``demo:`` section (a mapping or None is validated first).

    Raises:
        ConfigError: a mapping with a bad value or an unknown key (one line naming ``demo.<key>``).
    """
    # deferred: as in device_spec
    from ..config.schema import DemoConfigSchema
    from ..demo import DEFAULT_AARIZ_DEVICES, DEFAULT_ISBI_DEVICE, DemoConfig

    s = section if isinstance(section, DemoConfigSchema) else DemoConfigSchema.from_dict(section, "demo")
    isbi, aariz = s.isbi2015, s.aariz
    over: dict[str, Any] = {k: getattr(isbi, k) for k in _ISBI_DEVICE_KEYS if getattr(isbi, k) is not None}
    if "size" in over:
        over["size"] = (int(over["size"][0]), int(over["size"][1]))
    devices = (
        DEFAULT_AARIZ_DEVICES
        if aariz.devices is None
        else tuple(device_spec(d, f"demo.aariz.devices[{i}]") for i, d in enumerate(aariz.devices))
    )
    return DemoConfig(
        seed=s.seed,
        head_scale=s.head_scale,
        rotation_deg=s.rotation_deg,
        scale_sd=s.scale_sd,
        shift_mm=s.shift_mm,
        elastic_mm=s.elastic_mm,
        junior_jitter_mm=s.junior_jitter_mm,
        isbi_counts={"TrainingData": isbi.n_train, "Test1Data": isbi.n_test1, "Test2Data": isbi.n_test2},
        isbi_device=dataclasses.replace(DEFAULT_ISBI_DEVICE, **over),
        aariz_counts={"train": aariz.n_train, "valid": aariz.n_valid, "test": aariz.n_test},
        aariz_devices=devices,
        shuffle_json_landmarks=s.shuffle_json_landmarks,
    )


def make_demo(
    out_dir: str | Path, cfg: DemoConfig | DemoConfigSchema | Mapping[str, Any] | None = None, progress: bool = False
) -> dict[str, list[dict]]:
    """Generate both demo data sets: ``out_dir/isbi2015/`` and ``out_dir/aariz/Aariz/``.

    ``out_dir/isbi2015`` holds the ISBI 2015 layout (``RawImage``, ``AnnotationsByMD``);
    ``out_dir/aariz`` is the unpacked Aariz archive (its root folder ``Aariz/``, as in
    ``Aariz.zip``). Each data set directory is replaced whole and atomically.

    Args:
        out_dir: output folder (created).
        cfg: a :class:`DemoConfig`, the validated ``demo:`` section, or its mapping.
        progress: show tqdm progress bars.

    Returns:
        ``{"isbi2015": records, "aariz": records}`` (see
        :func:`cephalo.datasets.isbi2015.demo.write_isbi2015`,
        :func:`cephalo.datasets.aariz.demo.write_aariz`), paths pointing at the final locations.

    Raises:
        ConfigError: an invalid ``demo:`` section.
    """
    # deferred: as in device_spec
    import numpy as np

    from ..datasets.aariz.demo import write_aariz
    from ..datasets.isbi2015.demo import write_isbi2015
    from ..demo import DemoConfig
    from ..io import atomic_dir

    if not isinstance(cfg, DemoConfig):
        cfg = demo_config(cfg)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # two independent streams from one seed: changing the Aariz part never changes the ISBI files
    isbi_rng, aariz_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(cfg.seed).spawn(2))
    result: dict[str, list[dict]] = {}
    with atomic_dir(out_dir / "isbi2015") as tmp:
        recs = write_isbi2015(tmp, cfg, isbi_rng, progress)
    for r in recs:
        r["path"] = out_dir / "isbi2015" / Path(r["path"]).relative_to(tmp)
    result["isbi2015"] = recs
    with atomic_dir(out_dir / "aariz") as tmp:
        recs = write_aariz(tmp / "Aariz", cfg, aariz_rng, progress)
    for r in recs:
        r["path"] = out_dir / "aariz" / Path(r["path"]).relative_to(tmp)
    result["aariz"] = recs
    return result


@click.command(name="make-demo")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="output folder; writes OUT/isbi2015/ (ISBI 2015 layout) and OUT/aariz/Aariz/ (Aariz layout).",
)
@click.option("--seed", type=int, default=None, help="override params demo.seed.")
@click.option("--quiet", is_flag=True, help="no progress bars.")
@params_option
def command(out_dir: Path, seed: int | None, quiet: bool, params_path: Path) -> None:
    """Generate the synthetic demo data sets (ISBI 2015 source layout + Aariz target layout).

    Deterministic: the same params (demo.seed) give byte-identical files.
    """
    demo = read_params(params_path).demo
    if seed is not None:
        demo = demo.model_copy(update={"seed": seed})
    result = make_demo(out_dir, demo_config(demo), progress=not quiet)
    for name, recs in result.items():
        click.echo(f"{name}: {len(recs)} images -> {out_dir / name}")
