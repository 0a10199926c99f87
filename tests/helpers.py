"""Helpers shared by test modules (import with ``from helpers import ...``; pytest puts tests/ on
the path). conftest.py holds fixtures only. Heavy imports (torch, cephalo.train) happen inside the
helpers that need them, so that importing this module (conftest does) stays cheap."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
#: the shared folder beside the repository (real data, specs); absent on a user's clone
SHARED = Path(os.environ.get("CEPHALO_SHARED", REPO.parent / "shared"))
SHARED_DATA = SHARED / "data"
#: the public HRNet-W32 checkpoint spec the fidelity tests need (small; in the repository)
HRNET_SPEC = REPO / "tests" / "data" / "hf_hrnet_w32"


def load_script(path: Path, name: str):
    """Import a script that is not in a package (scripts/, benchmarks/) as module ``name``."""
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses (and pickling) look the module up by name
    spec.loader.exec_module(mod)
    return mod


# ---------------------------------------------------------------------- images (geometry, preprocessing)
def render_dots(shape_hw, points, sigma, dtype=np.uint8, peak=None):
    """Gaussian dots at sub-pixel xy ``points`` (pixel-centre convention), computed locally."""
    h, w = shape_hw
    img = np.zeros((h, w), np.float64)
    r = int(np.ceil(4 * sigma))
    for x, y in points:
        x0, x1 = max(0, int(x) - r), min(w, int(x) + r + 2)
        y0, y1 = max(0, int(y) - r), min(h, int(y) + r + 2)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        img[y0:y1, x0:x1] += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))
    top = peak if peak is not None else (255 if dtype == np.uint8 else 65535)
    return np.round(img / img.max() * top).astype(dtype)


def centroid(img, p, r):
    """Intensity centroid (xy) of the window of radius ``r`` around ``p``, background removed."""
    x0, y0 = int(round(p[0])), int(round(p[1]))
    sub = img[y0 - r : y0 + r + 1, x0 - r : x0 + r + 1].astype(np.float64)
    assert sub.shape == (2 * r + 1, 2 * r + 1), "window leaves the image"
    border = np.concatenate([sub[0], sub[-1], sub[:, 0], sub[:, -1]])
    sub = np.clip(sub - np.median(border), 0, None)
    yy, xx = np.mgrid[y0 - r : y0 + r + 1, x0 - r : x0 + r + 1]
    return np.array([(sub * xx).sum() / sub.sum(), (sub * yy).sum() / sub.sum()])


# ---------------------------------------------------------------------- training engine
NAMES = ("sella", "nasion", "orbitale", "porion", "menton")


def _tiny_heatmap_net():
    from torch import nn

    class TinyHeatmapNet(nn.Module):
        """A small real heatmap CNN (stride 4, BatchNorm, dropout) for fast CPU tests."""

        stride = 4

        def __init__(self, k: int = len(NAMES), norm: str = "bn", p: float = 0.1):
            super().__init__()

            def nl(c):
                return nn.BatchNorm2d(c) if norm == "bn" else nn.GroupNorm(4, c)

            self.backbone = nn.Sequential(
                nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False),
                nl(16),
                nn.ReLU(),
                nn.Conv2d(16, 16, 3, stride=2, padding=1, bias=False),
                nl(16),
                nn.ReLU(),
                nn.Conv2d(16, 16, 3, padding=2, dilation=2, bias=False),
                nl(16),
                nn.ReLU(),
            )
            self.drop = nn.Dropout2d(p)
            self.final = nn.Conv2d(16, k, 1)

        def forward(self, x):
            return self.final(self.drop(self.backbone(x)))

    TinyHeatmapNet.__qualname__ = "TinyHeatmapNet"
    return TinyHeatmapNet


def __getattr__(name: str):
    """``TinyHeatmapNet`` is built on first use (it subclasses ``torch.nn.Module``)."""
    if name == "TinyHeatmapNet":
        globals()[name] = cls = _tiny_heatmap_net()
        return cls
    raise AttributeError(f"module 'helpers' has no attribute {name!r}")


def tiny_setup(tmp_path: Path, n=24, size=32, seed=0, **cfg_over):
    from cephalo.codecs import create_codec
    from cephalo.losses import create_loss
    from cephalo.preprocess import load_variant
    from cephalo.train import TrainConfig, make_synthetic_variant

    vdir = make_synthetic_variant(tmp_path / "variant", n_images=n, size=size, landmark_names=NAMES, seed=seed)
    variant = load_variant(vdir)
    codec = create_codec(input_size=(size, size), heatmap_size=(size // 4, size // 4), sigma=1.0, decoder="dark")
    cfg = TrainConfig.from_dict(
        {
            "epochs": 3,
            "batch_size": 4,
            "lr": 3e-3,
            "num_workers": 0,
            "loss": "mse",
            "warmup_epochs": 0.0,
            "grad_clip": 5.0,
            **cfg_over,
        }
    )
    loss = create_loss(cfg.loss)
    return variant, codec, loss, cfg


def make_trainer(tmp_path, variant, codec, loss, cfg, out="run", model=None, **kw):
    import torch

    from cephalo.train import Trainer
    from cephalo.train.loop import TrainerOptions

    torch.manual_seed(cfg.seed)
    model = model or __getattr__("TinyHeatmapNet")()
    meta = {
        "arch": "test:tiny",
        "landmark_names": list(NAMES),
        "input_size": list(variant.input_size),
        "heatmap_size": [s // 4 for s in variant.input_size],
        "codec": codec.to_dict(),
        "normalisation": variant.normalisation,
        "provenance": {},
    }
    new = kw.pop("new_param_names", ("final.weight", "final.bias"))
    options = TrainerOptions(progress=False, save_fn=save_test_checkpoint, dist_info=kw.pop("dist_info", None))
    return Trainer(
        model, variant, codec, loss, cfg, tmp_path / out, meta=meta, new_param_names=new, options=options, **kw
    )


def save_test_checkpoint(path, model, meta, extra):
    """Checkpoint writer for tests' non-registry model: same layout as cephalo.models.save_checkpoint."""
    import torch

    from cephalo.io import atomic_path

    obj = {
        "format": "cephalo",
        "format_version": 1,
        "model_state_dict": model.state_dict(),
        "meta": meta,
        **(extra or {}),
    }
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def normalised_image(variant, j):
    from cephalo.preprocess import normalise

    return normalise(np.asarray(variant.images[j : j + 1]), variant.normalisation)[0, 0]


def train_params(tmp_path: Path, **train) -> Path:
    import yaml

    p = {
        "model": {"arch": "hrnet_w18", "pretrained": False, "kwargs": {"num_modules": [1, 1, 1], "num_blocks": 1}},
        "codec": {"name": "gaussian", "sigma": 1.5, "decoder": "argmax", "convention": "pixel_centre"},
        "train": {
            "epochs": 1,
            "batch_size": 4,
            "lr": 1e-3,
            "num_workers": 0,
            "loss": "adaptive_wing",
            "max_steps_per_epoch": 2,
            **train,
        },
    }
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(p))
    return path


# ---------------------------------------------------------------------- Aariz release layout
AARIZ_CSV = "cephalogram_machine_mappings.csv"


def write_image(path: Path, w: int, h: int, fmt: str) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w), 90, np.uint8)).save(path, format=fmt)


def aariz_landmarks(ceph_id: str, base: float, order: list[int], by: str = "both") -> dict:
    from cephalo.landmarks import AARIZ29

    items = []
    for k in order:
        lm = AARIZ29[k]
        it = {"title": lm.title, "value": {"x": int(base + 3 * k), "y": int(base + 2 * k)}}
        if by in ("both", "id"):
            it["landmark_id"] = lm.source_id
        if by in ("both", "symbol"):
            it["symbol"] = lm.symbol
        items.append(it)
    return {"ceph_id": ceph_id, "landmarks": items, "labeled_at": "2021", "dataset_name": "Aariz"}


def make_aariz(root: Path, *, split_case=("train", "valid", "test"), bom: bool = True) -> Path:
    """Three images (png, jpg saved as .png mismatch, bmp) in the official layout."""
    a = root / "Aariz"
    specs = [
        ("ida", split_case[0], "png", "PNG", "png", 200, 220, 0.1, "ART Plus"),
        ("idb", split_case[1], "jpg", "JPEG", "png", 240, 180, 0.139, "ProMax 2D"),  # CSV says png
        ("idc", split_case[2], "bmp", "BMP", "bmp", 160, 150, 0.144, "Veraviewepocs 2D"),
    ]
    rows = ["cephalogram_id,machine,pixel_size,image_format,mode"]
    for n, (cid, split, ext, fmt, declared, w, h, px, dev) in enumerate(specs):
        write_image(a / split / "Cephalograms" / f"{cid}.{ext}", w, h, fmt)
        lm_dir = a / split / "Annotations" / "Cephalometric Landmarks"
        order = list(range(29))
        random.Random(n).shuffle(order)
        (lm_dir / "Senior Orthodontists").mkdir(parents=True, exist_ok=True)
        (lm_dir / "Junior Orthodontists").mkdir(parents=True, exist_ok=True)
        (lm_dir / "Senior Orthodontists" / f"{cid}.json").write_text(json.dumps(aariz_landmarks(cid, 5, order)))
        (lm_dir / "Junior Orthodontists" / f"{cid}.json").write_text(json.dumps(aariz_landmarks(cid, 6, order[::-1])))
        cvm = a / split / "Annotations" / "CVM Stages"
        cvm.mkdir(parents=True, exist_ok=True)
        (cvm / f"{cid}.json").write_text(
            json.dumps({"ceph_id": cid, "cvm_stage": {"id": "x", "title": f"CVM-S{n + 2}", "value": n + 2}})
        )
        rows.append(f"{cid},{dev},{px},{declared},{split.lower()}")
    (a / AARIZ_CSV).write_bytes(("\ufeff" if bom else "").encode() + "\n".join(rows).encode() + b"\n")
    (a / "Readme.txt").write_text("Aariz")
    return root


# ---------------------------------------------------------------------- the pipeline in a copy of the workflow
WORKFLOW_FILES = [
    "Snakefile",
    "workflow",
    "dvc.yaml",
    "params.yaml",
    "profiles",
    ".dvcignore",
    "src",
]  # src/cephalo: the DVC code_fingerprint stage depends on it

#: tiny demo: a few images, 128 px, one epoch each (the dotted keys work in both engines)
TINY_DEMO = {
    "demo.isbi2015.n_train": 8,
    "demo.isbi2015.n_test1": 4,
    "demo.aariz.n_train": 6,
    "demo.aariz.n_valid": 3,
    "demo.aariz.n_test": 3,
    "pipeline.variants": ["letterbox128"],
    "pipeline.source_variant": "letterbox128",
    "train.stages.source.epochs": 1,
    "train.stages.finetune.epochs": 1,
    "train.num_workers": 0,
    "evaluate.n_boot": 50,
    "evaluate.n_worst": 1,
}


def pipeline_env() -> dict:
    """The environment a pipeline subprocess runs in: offline switches, this Python's scripts first."""
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        NO_ALBUMENTATIONS_UPDATE="1",
        DVC_NO_ANALYTICS="1",
        MLFLOW_DISABLE_TELEMETRY="true",
        MPLBACKEND="Agg",
    )
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # the `cephalo` script
    return env


def config_set(sets: dict) -> str:
    """``--config set="a.b=v ..."``: strings bare (YAML reads them back as strings), the rest as JSON.

    Snakemake's own ``--config`` parser strips a quote that ends the whole value, so no item may
    end with a quote.
    """
    return "set=" + " ".join(
        f"{k}={v if isinstance(v, str) else json.dumps(v).replace(' ', '')}" for k, v in sets.items()
    )


def copy_workflow(dst: Path) -> Path:
    """A copy of the workflow files (:data:`WORKFLOW_FILES`) in ``dst``."""
    dst.mkdir(parents=True)
    for name in WORKFLOW_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        elif src.exists():
            shutil.copy2(src, dst / name)
    return dst


def set_dotted(params: dict, dotted: str, value) -> None:
    """``params["a"]["b"] = value`` for ``dotted = "a.b"`` (creating the parents)."""
    *parents, last = dotted.split(".")
    node = params
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


# ---------------------------------------------------------------------- the engines' contract (dry runs)
# which params sections each subcommand reads (docs/DESIGN.md CLI contract); {ds}/{v} = its data set/variant
SECTIONS = {
    "make-demo": ["demo"],
    "download": ["data.datasets.{ds}"],
    "index": ["data.datasets.{ds}"],
    "preprocess": ["variants.{v}"],
    "fetch-model": ["model.source"],
    "train": ["train", "model", "codec"],
    "evaluate": ["evaluate"],
    "adapt": ["adapt"],
    "compare": [],
    "code-fingerprint": [],
    "train-refiner": [
        "train",
        "refine.spacing_mm",
        "refine.window",
        "refine.fallback_spacing_mm",
        "refine.arch",
        "refine.kwargs",
        "refine.jitter_mm",
        "refine.jitter_scale",
        "refine.min_jitter_mm",
        "refine.max_jitter_mm",
        "refine.crops_per_landmark",
        "refine.train",
        "refine.stages",
        "codec",
        "model.transfer",
    ],
    "bundle": ["refine.iterations", "refine.batch_size", "refine.tta"],
    "calibrate": ["calibrate"],
}
#: DVC-only stage: Snakemake writes the same results/code/<command>.sha256 files at parse time
CODE_STAGE = "code_fingerprint"


def snakemake_dry_run_cmd(extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--dry-run", "--forceall", "--printshellcmds", "--cores", "1", *extra]


def parse_dry_run(text: str) -> list[dict]:
    """Job blocks of a Snakemake dry run: rule, input, output, log, resources, threads, shell."""
    jobs, cur = [], None
    for line in text.splitlines():
        s = line.strip()
        if line.startswith(("rule ", "localrule ")) and s.endswith(":"):
            cur = {
                "rule": s.split()[1].rstrip(":"),
                "input": [],
                "output": [],
                "log": [],
                "resources": [],
                "threads": 1,
                "shell": None,
            }
            jobs.append(cur)
        elif cur is not None and line.startswith("    ") and ":" in s:
            key, _, val = s.partition(": ")
            if key in ("input", "output", "log", "resources"):
                cur[key] = [v.strip() for v in val.split(",") if v.strip()]
            elif key == "threads":
                cur["threads"] = int(val)
        elif cur is not None and s.startswith("Shell command:"):
            cur["shell"] = s[len("Shell command:") :].strip()
    return [j for j in jobs if j["rule"] != "all"]


def effective_params_path(jobs: list[dict]) -> str:
    """The one params file every job of a run reads: results/params/<content hash>.yaml."""
    import re

    paths = {shlex.split(j["shell"])[shlex.split(j["shell"]).index("--params") + 1] for j in jobs}
    assert len(paths) == 1, paths
    path = paths.pop()
    assert re.fullmatch(r"results/params/[0-9a-f]{16}\.yaml", path), path
    return path


def normalise_command(cmd: str) -> tuple[str, ...]:
    """Drop the log redirection and unify the params file (both engines pass the effective params)."""
    toks = shlex.split(cmd)
    if ">" in toks:
        toks = toks[: toks.index(">")]
    if "--params" in toks:
        i = toks.index("--params")
        toks[i + 1] = "PARAMS"
    return tuple(toks)


def dvc_stages(repo_dir: Path) -> list[dict]:
    from dvc.repo import Repo

    out = []
    with Repo(str(repo_dir)) as repo:
        for st in repo.index.stages:
            params = [p for d in st.deps if hasattr(d, "params") for p in (d.params or [])]
            out.append(
                {
                    "name": st.addressing,
                    "shell": st.cmd if isinstance(st.cmd, str) else " && ".join(st.cmd),
                    "deps": sorted(d.def_path for d in st.deps if not hasattr(d, "params")),
                    "params": sorted(params),
                    "outs": sorted(o.def_path for o in st.outs),
                    "metrics": sorted(o.def_path for o in st.outs if o.metric),
                    "uncached": sorted(o.def_path for o in st.outs if not o.use_cache),
                }
            )
    return out


def init_dvc(repo_dir: Path) -> None:
    from dvc.repo import Repo

    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    Repo.init(str(repo_dir), no_scm=True).close()


def dvc_stages_for(run: dict, overrides: list[str] | None = None) -> list[dict]:
    """DVC's resolved stages for a dry-run ``run`` (``runs`` fixture entry), in a throwaway DVC repo."""
    import pytest
    import yaml

    d = Path(tempfile.mkdtemp(prefix="dvcside-", dir=run["dir"]))
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy2(run["dir"] / name, d / name)
    # a profile with DVC = the params file override; a single value = `dvc exp run -S`
    shutil.copy2(run["dir"] / (run["profile"] or "params.yaml"), d / "params.yaml")
    if overrides:
        from dvc.utils.hydra import apply_overrides

        apply_overrides(d / "params.yaml", overrides)  # what `dvc exp run -S` does to params.yaml
        try:
            yaml.safe_load((d / "params.yaml").read_text())
        except yaml.YAMLError as e:
            pytest.fail(f"`dvc exp run -S` (ruamel round trip) corrupts params.yaml: {e}".replace("\n", " "))
    init_dvc(d)
    return dvc_stages(d)


def assert_engines_agree(smk_jobs: list[dict], dvc_stages: list[dict]) -> None:
    is_code = [s["name"].split(":")[-1] == CODE_STAGE for s in dvc_stages]
    code = [s for s, c in zip(dvc_stages, is_code, strict=True) if c]
    assert len(code) == 1 and code[0]["outs"] == ["results/code"], code
    dvc_stages = [s for s, c in zip(dvc_stages, is_code, strict=True) if not c]
    for job in smk_jobs:  # every job depends on its command's code fingerprint, in both engines
        sub = normalise_command(job["shell"])[1]
        assert f"results/code/{sub}.sha256" in job["input"], (job["rule"], job["input"])
    smk = {normalise_command(j["shell"]): j for j in smk_jobs}
    dvc = {normalise_command(s["shell"]): s for s in dvc_stages}
    assert len(smk) == len(smk_jobs) and len(dvc) == len(dvc_stages), "duplicate commands"
    assert set(smk) == set(dvc), (sorted(set(smk) - set(dvc)), sorted(set(dvc) - set(smk)))
    for cmd, job in smk.items():
        st = dvc[cmd]
        assert sorted(job["output"]) == st["outs"], (cmd, job["output"], st["outs"])
        # inputs: equal, except that a DVC directory dep may stand for files inside it (compare)
        for path in job["input"]:
            assert any(path == dep or path.startswith(dep.rstrip("/") + "/") for dep in st["deps"]), (cmd, path)
        for dep in st["deps"]:
            assert any(p == dep or p.startswith(dep.rstrip("/") + "/") for p in job["input"]), (cmd, dep)
        assert job["log"], f"rule {job['rule']} has no log"


def check_cli(cmd: tuple[str, ...]) -> str:
    """The command is `cephalo <real subcommand>` and its click command accepts the arguments."""
    import click

    from cephalo.cli import SUBCOMMANDS, main

    assert cmd[0] == "cephalo", cmd
    assert cmd[1] in SUBCOMMANDS, f"{cmd[1]!r} is not a cephalo subcommand"
    sub = main.get_command(click.Context(main), cmd[1])
    args = [a for a in cmd[2:] if a != "results/eval/*"] + (["results/eval/x"] if "results/eval/*" in cmd else [])
    ctx = click.Context(sub, resilient_parsing=True)
    parser = sub.make_parser(ctx)
    opts, largs, _ = parser.parse_args(args=list(args))  # raises NoSuchOption / BadOptionUsage
    assert not largs, f"cephalo {cmd[1]}: unexpected arguments {largs}"
    for param in sub.params:
        if param.required:
            assert opts.get(param.name) not in (None, ()), f"cephalo {cmd[1]}: required {param.name} missing"
    return cmd[1]


def cmd_option(cmd: tuple[str, ...], name: str) -> str:
    return cmd[cmd.index(name) + 1]
