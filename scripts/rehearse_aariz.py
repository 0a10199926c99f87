"""Rehearse the Aariz profile (the user's job) end to end on CPU, against local stand-ins.

The Aariz profile (``profiles/aariz.yaml``) downloads the Aariz release from figshare and takes the
public ISBI HRNet-W32 from Hugging Face; neither can be reached here. This script builds a stand-in
of each and runs the profile's whole chain **unchanged** against them:

- ``Aariz.zip``: the official layout and packaging (root ``Aariz/``, ``train/valid/test`` with
  ``Cephalograms/`` and ``Annotations/Cephalometric Landmarks/{Senior,Junior} Orthodontists``,
  ``cephalogram_machine_mappings.csv`` with the per-image pixel spacing, ``Readme.txt``), rendered
  by the demo generator at Aariz's real image sizes and spacings: seven devices between 0.089 and
  0.144 mm/px, two landscape, mixed png/jpg/jpeg/bmp. It is served by a loopback HTTP server, so
  the real download path runs (pooch cache, the pinned checksum, resume with ``Range``, unpacking,
  the layout check); ``--interrupt-once`` cuts the first transfer so that a first run stops with one
  ``cephalo: error:`` line and the second one resumes.
- ``best_model.pth``: an HRNet-W32 in the public checkpoint's file format (the 1832 tensors of
  ``tests/data/hf_hrnet_w32/keys.json``, filled with the spec's deterministic recipe, inside the
  public training dict), placed in a Hugging Face cache folder (``HF_HUB_CACHE``, offline), so
  ``cephalo fetch-model`` reaches it exactly as it would reach the real one.

The only differences from the real run are the sizes and the device, all in one overlay
(``profiles/rehearsal/aariz.yaml``, a second ``--configfile`` on top of the profile); the device is
``auto`` in the profile, so the same command uses a GPU where there is one. The stand-ins' weights
are not trained: the rehearsal proves that every rule executes, not an accuracy.

    scripts/rehearse-aariz.sh                       # = python scripts/rehearse_aariz.py run
    python scripts/rehearse_aariz.py run --workdir rehearsal --cores 2 [--interrupt-once]
    python scripts/rehearse_aariz.py standins --out rehearsal/standins   # only build them

Outputs in ``<workdir>/project``: ``results/`` (index, variants, zero-shot/naive/AdaBN/fine-tuned
evaluations with diagnosis, calibrated radii, comparison.md/.html), ``mlflow/mlflow.db``, ``logs/``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cephalo.config.schema import Params
    from cephalo.demo import DemoConfig

REPO = Path(__file__).resolve().parent.parent
OVERLAY = "profiles/rehearsal/aariz.yaml"
PROFILE = "profiles/aariz.yaml"
#: what the copy of the project needs to run the workflow (src: the code fingerprints read it)
WORKFLOW_FILES = ("Snakefile", "workflow", "dvc.yaml", "params.yaml", "profiles", ".dvcignore", "src")
HF_REPO_ID = "cwlachap/hrnet-cephalometric-landmark-detection"
HF_FILENAME = "best_model.pth"
#: the stand-in's Hugging Face revision (a fixed 40-hex commit, as a real cache folder has)
HF_COMMIT = hashlib.sha1(b"cephalo rehearsal stand-in of the public ISBI HRNet-W32").hexdigest()
KEYS_JSON = REPO / "tests" / "data" / "hf_hrnet_w32" / "keys.json"
#: the recorded rehearsal the README quotes (``run --summary``)
SUMMARY_DOC = "docs/results/rehearsal-aariz.json"


@dataclass(frozen=True)
class StandIns:
    """Paths and checksums of the built stand-ins."""

    archive: Path  #: Aariz.zip
    md5: str  #: "md5:<hex>" of the archive (what the profile pins)
    checkpoint: Path  #: best_model.pth in the public format
    hf_cache: Path  #: a Hugging Face hub cache holding the checkpoint (HF_HUB_CACHE)


def rehearsal_params() -> Params:
    """The rehearsal's effective params: the Aariz profile with the overlay deep-merged on top
    (what Snakemake does with the two ``--configfile``s), validated by cephalo's schema."""
    import yaml

    from cephalo.config import validate_params

    sys.path.insert(0, str(REPO / "profiles"))
    from build import deep_merge  # profiles/build.py: the profiles' own merge

    merged = deep_merge(yaml.safe_load((REPO / PROFILE).read_text()), yaml.safe_load((REPO / OVERLAY).read_text()))
    return validate_params(merged, source=f"{PROFILE} + {OVERLAY}")


def build_aariz_release(root: Path, demo: DemoConfig) -> Path:
    """Render an Aariz release tree (``root/Aariz/...``): ``demo.aariz_counts`` images per split
    over ``demo.aariz_devices`` (the overlay's ``demo.aariz``). Returns ``root / "Aariz"``."""
    import numpy as np

    from cephalo.datasets.aariz.demo import write_aariz

    write_aariz(root / "Aariz", demo, np.random.default_rng(demo.seed))
    return root / "Aariz"


def zip_tree(folder: Path, archive: Path) -> str:
    """Zip ``folder`` (its name as the archive's root) deterministically; returns ``md5:<hex>``."""
    tmp = archive.with_name(f".{archive.name}.tmp")
    with zipfile.ZipFile(tmp, "w") as zf:
        for p in sorted(folder.rglob("*")):
            name = p.relative_to(folder.parent).as_posix() + ("/" if p.is_dir() else "")
            info = zipfile.ZipInfo(name, date_time=(2024, 12, 1, 0, 0, 0))
            info.external_attr = ((0o40755 << 16) | 0x10) if p.is_dir() else (0o100644 << 16)
            if p.is_dir():
                zf.writestr(info, b"")
            else:  # images are compressed already: store them; deflate the JSON/CSV/text
                info.compress_type = (
                    zipfile.ZIP_STORED if p.suffix.lower() in {".png", ".jpg", ".jpeg"} else zipfile.ZIP_DEFLATED
                )
                zf.writestr(info, p.read_bytes())
    os.replace(tmp, archive)
    return "md5:" + hashlib.md5(archive.read_bytes()).hexdigest()


def write_public_checkpoint(path: Path, input_size: int = 768, drop_keys: tuple[str, ...] = ()) -> Path:
    """``best_model.pth`` in the public HRNet-W32 format (spec-filled weights, not trained).

    ``input_size``: the square input its ``config`` declares (``INPUT.IMAGE_SIZE``; the public file
    says 768, the rehearsal's stand-in the overlay's reduced size, so that cephalo's input-size checks
    hold as they do for the real one). ``drop_keys`` removes tensors from ``model_state_dict`` (a
    damaged checkpoint, for fault tests).
    """
    import torch

    from cephalo.public_hrnet.reference import public_training_dict, read_keys_json, reference_state_dict

    state = reference_state_dict(read_keys_json(KEYS_JSON))
    for k in drop_keys:
        del state[k]
    doc = public_training_dict(state)
    doc["config"]["INPUT"].update(IMAGE_SIZE=[input_size, input_size], HEATMAP_SIZE=[input_size // 4] * 2)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(doc, tmp)
    os.replace(tmp, path)
    return path


def write_hf_cache(root: Path, checkpoint: Path, commit: str = HF_COMMIT) -> Path:
    """The Hugging Face hub cache layout that ``hf_hub_download`` resolves offline (``refs/main``)."""
    repo = root / ("models--" + HF_REPO_ID.replace("/", "--"))
    data = checkpoint.read_bytes()
    blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
    snap = repo / "snapshots" / commit / HF_FILENAME
    for d in (blob.parent, snap.parent, repo / "refs"):
        d.mkdir(parents=True, exist_ok=True)
    if not blob.exists():
        shutil.copyfile(checkpoint, blob)
    if snap.is_symlink() or snap.exists():
        snap.unlink()
    os.symlink(os.path.relpath(blob, snap.parent), snap)
    (repo / "refs" / "main").write_text(commit)
    return root


def source_input_size(params: Params) -> int:
    """The input size of the source model's variant (``pipeline.source_variant``, a letterbox)."""
    steps = params.variants[params.pipeline.source_variant].steps
    return int(next(step["letterbox"]["size"] for step in steps if "letterbox" in step))


def demo_config(params: Params) -> DemoConfig:
    """The stand-in release's generator settings: the overlay's ``demo:`` section."""
    from cephalo.commands.make_demo import demo_config as from_schema

    return from_schema(params.demo)


def standins_for(out: Path) -> StandIns:
    """Build (or reuse) the stand-ins that the rehearsal's params describe."""
    params = rehearsal_params()
    return build_standins(out, demo_config(params), source_input_size(params))


def build_standins(out: Path, demo: DemoConfig, input_size: int) -> StandIns:
    """Build both stand-ins in ``out`` (reused while ``out/standins.json`` records the same inputs)."""
    out.mkdir(parents=True, exist_ok=True)
    stamp = out / "standins.json"
    want = hashlib.sha256(f"{demo!r} {input_size}".encode() + KEYS_JSON.read_bytes()).hexdigest()
    archive, ckpt, cache = out / "Aariz.zip", out / HF_FILENAME, out / "hf-cache"
    if stamp.is_file() and archive.is_file() and ckpt.is_file():
        rec = json.loads(stamp.read_text())
        if rec.get("inputs") == want:
            return StandIns(archive, rec["md5"], ckpt, write_hf_cache(cache, ckpt))
    tree = out / "release"
    shutil.rmtree(tree, ignore_errors=True)
    build_aariz_release(tree, demo)
    md5 = zip_tree(tree / "Aariz", archive)
    shutil.rmtree(tree)
    write_public_checkpoint(ckpt, input_size)
    shutil.rmtree(cache, ignore_errors=True)
    write_hf_cache(cache, ckpt)
    stamp.write_text(json.dumps({"inputs": want, "md5": md5}, indent=1) + "\n")
    return StandIns(archive, md5, ckpt, cache)


@contextmanager
def serve(archive: Path, interrupt_once: bool = False) -> Iterator[str]:
    """Serve ``archive`` on a loopback port (``Range`` honoured); yields its URL.

    ``interrupt_once``: the first answer announces the full length and stops after a third of it.
    """
    sys.path.insert(0, str(REPO / "tests"))
    from httpserver import LoopbackServer, Route

    body = archive.read_bytes()
    whole = Route(body=body)
    route = Route(body=body, truncate_at=len(body) // 3, times=1, then=whole) if interrupt_once else whole
    with LoopbackServer(max_requests=64) as srv:
        yield srv.add("/files/Aariz.zip", route)


def copy_project(dst: Path) -> Path:
    """A fresh copy of the workflow files in ``dst`` (results of an earlier run there are kept)."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        src, to = REPO / name, dst / name
        if to.is_dir():
            shutil.rmtree(to)
        if src.is_dir():
            shutil.copytree(src, to, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        elif src.exists():
            shutil.copy2(src, to)
    return dst


def environment(standins: StandIns, workdir: Path) -> dict[str, str]:
    """The run's environment: offline switches, the stand-in hub cache, a private download cache."""
    env = dict(os.environ)
    venv_bin = Path(sys.executable).parent
    env.update(
        {
            "PATH": f"{venv_bin}{os.pathsep}{env.get('PATH', '')}",
            "HF_HUB_OFFLINE": "1",
            "HF_HUB_CACHE": str(standins.hf_cache),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "CEPHALO_CACHE": str(workdir / "download-cache"),
            "NO_ALBUMENTATIONS_UPDATE": "1",
            "DVC_NO_ANALYTICS": "1",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "1",
            "MPLBACKEND": "Agg",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
    )
    return env


def snakemake_cmd(url: str, md5: str, cores: int, extra: list[str] | None = None) -> list[str]:
    """The user's command (profile + the rehearsal overlay) with the stand-in release's URL and checksum."""
    sets = f"data.datasets.aariz.download.url={url} data.datasets.aariz.download.known_hash={md5}"
    return [
        sys.executable,
        "-m",
        "snakemake",
        "--cores",
        str(cores),
        "--resources",
        "gpu=1",
        "--configfile",
        PROFILE,
        OVERLAY,
        "--config",
        f"set={sets}",
        *(extra or []),
    ]


def run(
    workdir: Path,
    cores: int = 2,
    interrupt_once: bool = False,
    extra: list[str] | None = None,
    summary: Path | None = None,
) -> int:
    """Build the stand-ins, copy the project into ``workdir/project`` and run the profile there.

    With ``interrupt_once`` the first run is expected to stop at the download (one error line),
    and a second run resumes it and completes. ``summary``: a JSON file for the exit status, the wall
    time, the load average and each training run's device and precision. Returns the last run's exit status.
    """
    workdir = workdir.resolve()
    t0, load0 = time.monotonic(), os.getloadavg()[0]
    print(f"rehearsal: building stand-ins in {workdir / 'standins'}", flush=True)
    standins = standins_for(workdir / "standins")
    print(
        f"rehearsal: stand-ins ready ({time.monotonic() - t0:.0f} s): {standins.archive.name} "
        f"{standins.archive.stat().st_size / 1e6:.1f} MB {standins.md5}",
        flush=True,
    )
    project = copy_project(workdir / "project")
    env = environment(standins, workdir)
    with serve(standins.archive, interrupt_once) as url:
        cmd = snakemake_cmd(url, standins.md5, cores, extra)
        print("rehearsal: " + " ".join(cmd[2:]), flush=True)
        rc = subprocess.call(cmd, cwd=project, env=env)
        if interrupt_once and rc != 0:
            log = project / "logs" / "download" / "aariz.log"
            print(
                f"rehearsal: first run stopped (rc {rc}) as the transfer was cut: "
                f"{log.read_text().strip().splitlines()[-1] if log.is_file() else '(no log)'}",
                flush=True,
            )
            rc = subprocess.call(cmd, cwd=project, env=env)
    seconds = time.monotonic() - t0
    print(f"rehearsal: rc {rc}, {seconds:.0f} s in all; results in {project / 'results'}", flush=True)
    if summary is not None:
        runs = [json.loads(p.read_text()) for p in sorted((project / "results" / "models").glob("*/*/train.json"))]
        from cephalo.provenance import cpu_model

        commit = (
            subprocess.run(
                ["git", "rev-parse", "--short=10", "HEAD"], cwd=REPO, capture_output=True, text=True
            ).stdout.strip()
            or None
        )
        doc = {
            "rc": rc,
            "seconds": round(seconds, 1),
            "cores": cores,
            "load_average": [round(load0, 2), round(os.getloadavg()[0], 2)],
            "date": time.strftime("%Y-%m-%d", time.gmtime()),
            "commit": commit,
            "machine": cpu_model(),
            "devices": [r.get("device") for r in runs],
            "precisions": [r.get("precision") for r in runs],
            "comparison": str((project / "results" / "comparison.md").relative_to(workdir)),
        }
        summary.parent.mkdir(parents=True, exist_ok=True)
        summary.write_text(json.dumps(doc, indent=1) + "\n")
    return rc


README_BEGIN, README_END = "<!-- rehearsal:aariz:begin -->", "<!-- rehearsal:aariz:end -->"


def readme_block(summary: dict) -> str:
    """The README's lines about the recorded rehearsal (``--summary`` JSON of a run)."""
    devices = sorted({d for d in summary.get("devices", []) if d})
    precisions = sorted({p for p in summary.get("precisions", []) if p})
    load = ", ".join(f"{x:.2f}" for x in summary["load_average"])
    return (
        f"{README_BEGIN}\nRecorded by `scripts/rehearse-aariz.sh --summary {SUMMARY_DOC}` "
        f"({summary.get('date', '?')}, cephalo at {summary.get('commit', '?')}): exit {summary['rc']}, "
        f"**{summary['seconds'] / 60:.1f} min** wall time with `--cores {summary['cores']}` on "
        f"{summary.get('machine', '?')} (load average before/after {load}); training on "
        f"{', '.join(devices) or '?'} in {', '.join(precisions) or '?'}.\n{README_END}"
    )


def sync_readme(summary_path: Path, readme: Path, check: bool) -> int:
    """Write (or with ``check`` compare) the README block from the recorded summary."""
    text = readme.read_text()
    if README_BEGIN not in text or README_END not in text:
        print(f"{readme}: no {README_BEGIN} ... {README_END} block", file=sys.stderr)
        return 1
    head, rest = text.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    new = head + readme_block(json.loads(summary_path.read_text())) + tail
    if check:
        if new != text:
            print(
                f"{readme}: the rehearsal block differs from {summary_path}; run "
                f"python scripts/rehearse_aariz.py readme",
                file=sys.stderr,
            )
            return 1
        return 0
    readme.write_text(new)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="build the stand-ins and run the Aariz profile against them")
    r.add_argument("--workdir", type=Path, default=REPO / "rehearsal")
    r.add_argument("--cores", type=int, default=2)
    r.add_argument("--interrupt-once", action="store_true", help="cut the first download (then resume)")
    r.add_argument("--summary", type=Path, default=None, help="write rc, wall time, devices, precisions here")
    r.add_argument("snakemake_args", nargs="*", help="extra snakemake arguments (after --)")
    m = sub.add_parser("readme", help="write the README's rehearsal block from a recorded --summary")
    m.add_argument("--summary", type=Path, default=REPO / SUMMARY_DOC)
    m.add_argument("--readme", type=Path, default=REPO / "README.md")
    m.add_argument("--check", action="store_true", help="exit 1 when the README block is stale")
    s = sub.add_parser("standins", help="only build the stand-ins")
    s.add_argument("--out", type=Path, default=REPO / "rehearsal" / "standins")
    a = ap.parse_args(argv)
    if a.cmd == "readme":
        return sync_readme(a.summary, a.readme, a.check)
    if a.cmd == "standins":
        st = standins_for(a.out)
        print(json.dumps({k: str(v) for k, v in st.__dict__.items()}, indent=1))
        return 0
    return run(a.workdir, a.cores, a.interrupt_once, extra=a.snakemake_args, summary=a.summary)


if __name__ == "__main__":
    sys.exit(main())
