"""Provenance: which code, environment and params produced a figure.

:func:`collect` - the record stored in every ``metrics.json``, checkpoint and MLflow run:
cephalo version, git commit and dirty flag, Python and key package versions, device (CPU
model, GPU name), torch thread count, seed, and the SHA-256 of the effective params.
:func:`differences` says which of those fields differ between runs (``cephalo compare`` warns).

The per-command code fingerprints (the workflow's rerun triggers) are :mod:`cephalo.fingerprint`:
they read the table of subcommands, so they stand with the commands, above the library that
records provenance.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from collections.abc import Mapping
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from . import __version__

__all__ = [
    "PACKAGES",
    "CODE_FIELDS",
    "ENV_FIELDS",
    "collect",
    "git_state",
    "GENERATED_PATHS",
    "params_hash",
    "cpu_model",
    "differences",
    "derive",
    "weights_chain",
]

#: distributions whose versions are recorded (import name differs for opencv)
PACKAGES: tuple[str, ...] = (
    "torch",
    "torchvision",
    "timm",
    "albumentations",
    "numpy",
    "opencv-python-headless",
    "opencv-python",
    "mlflow",
)
#: provenance fields that identify the code
CODE_FIELDS: tuple[str, ...] = ("cephalo_version", "git_commit", "git_dirty")
#: provenance fields that identify the environment (float results may differ when they do)
ENV_FIELDS: tuple[str, ...] = ("python", "packages", "cpu_model", "gpu_name", "threads")


#: tracked files the pipeline itself writes: a change there is a run's output, not a code change, so
#: it does not make the tree "dirty" (paths relative to the repository root; folders end in ``/``)
GENERATED_PATHS: tuple[str, ...] = (
    "dvc.lock",
    "results/",
    "mlflow/",
    "mlruns/",
    ".snakemake/",
    "data/",
    "logs/",
    "resources/",
    "benchmarks/results/",
    "rehearsal/",
)


def _package_root() -> Path:
    return Path(__file__).resolve().parent


@lru_cache(maxsize=8)
def git_state(cwd: str | None = None) -> tuple[str | None, bool | None]:
    """``(HEAD commit, dirty)`` of the git work tree holding the cephalo package (or ``cwd``).

    ``dirty`` is True when a tracked *source* file (code, params, workflow, docs) differs from HEAD
    (``git status --porcelain --untracked-files=no``); the files the pipeline rewrites itself
    (:data:`GENERATED_PATHS`: ``dvc.lock``, ``results/``, ...) do not count, else every run after
    the first would read as "different code". ``(None, None)`` outside a git work tree or without git.
    """
    where = cwd or str(_package_root())
    excludes = [f":(top,exclude){p.rstrip('/')}" for p in GENERATED_PATHS]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        st = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ":(top)", *excludes],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None, None
    return (sha or None), bool(st)


@lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU model: ``/proc/cpuinfo`` "model name" with its family/model/stepping numbers (virtual
    machines often report only a generic name such as "AMD EPYC", which spans generations whose float
    results differ), else :func:`platform.processor`."""
    try:
        fields: dict[str, str] = {}
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if not line.strip():
                break  # the first processor is enough
            key, _, value = line.partition(":")
            fields.setdefault(key.strip().lower(), value.strip())
        if "model name" in fields:
            ids = [f"{k} {fields[k]}" for k in ("cpu family", "model", "stepping") if fields.get(k)]
            return fields["model name"] + (f" ({', '.join(ids)})" if ids else "")
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def params_hash(params: Any) -> str | None:
    """SHA-256 of the params (a mapping or the typed :class:`cephalo.config.Params`) as canonical JSON
    (sorted keys); None for None."""
    if params is None:
        return None
    if hasattr(params, "model_dump"):  # the typed params (cephalo.config.Params)
        params = params.model_dump(mode="json")
    text = json.dumps(params, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def collect(params: Any = None, *, seed: int | None = None, device: str | None = None) -> dict[str, Any]:
    """The provenance record of this process.

    Args:
        params: the effective params the stage ran with (hashed, not stored).
        seed: the stage's seed.
        device: the torch device the stage ran on (``"cpu"``, ``"cuda:0"``); the GPU name is
            recorded when it is a CUDA device.

    Returns:
        ``{"cephalo_version", "cephalo_path" (the imported package's own folder: its git state is
        the one recorded), "git_commit", "git_dirty", "python", "packages": {dist: version},
        "cpu_model", "gpu_name", "threads", "device", "seed", "params_sha256"}`` (JSON-ready).
    """
    commit, dirty = git_state()
    gpu = None
    threads = None
    try:
        import torch

        threads = int(torch.get_num_threads())
        if device and str(device).startswith("cuda") and torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(torch.device(device))
    except Exception:  # noqa: BLE001 - provenance never fails a stage
        pass
    return {
        "cephalo_version": __version__,
        "cephalo_path": str(_package_root()),
        "git_commit": commit,
        "git_dirty": dirty,
        "python": platform.python_version(),
        "packages": _versions(),
        "cpu_model": cpu_model(),
        "gpu_name": gpu,
        "threads": threads if threads is not None else os.cpu_count(),
        "device": device,
        "seed": seed,
        "params_sha256": params_hash(params),
    }


def differences(records: Mapping[str, Mapping | None]) -> dict[str, list[str]]:
    """Which code/environment fields differ between runs.

    Args:
        records: run name -> its provenance record (None = none recorded).

    Returns:
        ``{"code": [field, ...], "environment": [field, ...], "missing": [run, ...]}``; package
        versions are compared one by one (``packages.torch``).
    """
    have = {k: v for k, v in records.items() if v}
    out = {"code": [], "environment": [], "missing": sorted(k for k, v in records.items() if not v)}
    if len(have) < 2:
        return out
    recs = list(have.values())
    for f in CODE_FIELDS:
        if len({json.dumps(r.get(f)) for r in recs}) > 1:
            out["code"].append(f)
    for f in ENV_FIELDS:
        if f == "packages":
            names = sorted({n for r in recs for n in (r.get("packages") or {})})
            out["environment"] += [
                f"packages.{n}" for n in names if len({(r.get("packages") or {}).get(n) for r in recs}) > 1
            ]
        elif len({json.dumps(r.get(f)) for r in recs}) > 1:
            out["environment"].append(f)
    return out


def derive(prov: Mapping | None, source_sha256: str, step: str) -> dict:
    """The provenance of a checkpoint made from another one's weights (``calibrate``, ``adapt``).

    ``derived_from`` lists ``{"step", "sha256"}`` of the source checkpoint first, then the source's
    own chain, so that an evaluation of ``calibrated.pt`` can be traced back to the training run
    whose ``best.pt`` it came from (:func:`weights_chain`).
    """
    out = dict(prov or {})
    out["derived_from"] = [{"step": step, "sha256": source_sha256}, *list(out.get("derived_from") or [])]
    return out


def weights_chain(prov: Mapping | None) -> list[str]:
    """SHA-256s of the checkpoints a checkpoint's weights come from (newest first): its
    ``derived_from`` chain (:func:`derive`) and, for older AdaBN checkpoints, ``adabn.model_sha256``."""
    prov = prov or {}
    out = [str(d["sha256"]) for d in prov.get("derived_from") or [] if isinstance(d, Mapping) and d.get("sha256")]
    adabn = prov.get("adabn") or {}
    if isinstance(adabn, Mapping) and adabn.get("model_sha256") and adabn["model_sha256"] not in out:
        out.append(str(adabn["model_sha256"]))
    return out
