"""cephalo.config: one typed schema for params.yaml, one-line errors naming file + dotted key."""

from __future__ import annotations

import copy
import dataclasses
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cephalo.config import Params, load_params, validate_params
from cephalo.config.schema import AugmentConfig, DiagnosisConfig, EvaluateConfig, TrainConfig
from cephalo.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
BASE = yaml.safe_load((REPO / "params.yaml").read_text())

#: one wrong value (or unknown key) per section: (dotted key, value, pattern the message must contain)
WRONG = {
    "demo": ("demo.aariz.devices[1].channels", 2, r"2 is not allowed \(expected 1 \| 3\)"),
    "data": ("data.datasets.aariz.adapter", "ariz", r"'ariz' is not an adapter \(did you mean 'aariz'\?\)"),
    "variants": ("variants.letterbox256.steps[0].letterbox.sise", 256, r"unknown argument \(did you mean 'size'\?\)"),
    "model": ("model.onnx.opset", "seventeen", r"'seventeen' is not an integer \(expected an integer >= 1\)"),
    "codec": ("codec.decoder", "darkk", r"'darkk' is not allowed \(expected dark \| argmax \| soft_argmax\)"),
    "train": ("train.batch_size", 0, r"0 is too small \(expected an integer >= 1\)"),
    "adapt": ("adapt.batch_size", 1, r"1 is too small \(expected an integer >= 2\)"),
    "evaluate": ("evaluate.thresholds_mm[1]", "x", r"'x' is not a number \(expected a number > 0\)"),
    "tracking": ("tracking.enabledd", True, r"unknown key; did you mean 'enabled'\?"),
    "pipeline": ("pipeline.variants", "letterbox256", r"'letterbox256' is not a list"),
    "predict": ("predict.batch_size", "four", r"'four' is not an integer \(expected an integer >= 1\)"),
    "calibrate": ("calibrate.scale", "linear", r"'linear' is not allowed \(expected inverse_confidence \| constant\)"),
    "refine": ("refine.stages.source.lr", "fast", r"'fast' is not a number \(expected a number > 0\)"),
}


def _set(params: dict, dotted: str, value) -> dict:
    """A copy of ``params`` with ``dotted`` (``a.b[1].c``) set to ``value``."""
    out = copy.deepcopy(params)
    parts = [int(p) if p.isdigit() else p for p in re.findall(r"[^.\[\]]+", dotted)]
    node = out
    for p in parts[:-1]:
        node = node[p] if isinstance(node, list) or p in node else node.setdefault(p, {})
    last = parts[-1]
    node[last] = value
    if last == "sise":  # the misspelt argument replaces the real one
        node.pop("size")
    return out


def test_every_section_has_a_wrong_value_case():
    assert set(WRONG) == set(Params.model_fields)


@pytest.mark.parametrize("section", sorted(WRONG))
def test_one_wrong_value_per_section_names_file_and_dotted_key(tmp_path, section):
    dotted, value, pattern = WRONG[section]
    f = tmp_path / f"bad-{section}.yaml"
    f.write_text(yaml.safe_dump(_set(BASE, dotted, value), sort_keys=False))
    with pytest.raises(ConfigError) as ei:
        load_params(f)
    msg = str(ei.value)
    assert "\n" not in msg
    assert msg.startswith(f"{f}: {dotted}: "), msg
    assert re.search(pattern, msg), msg


def test_the_issue_examples(tmp_path):
    f = tmp_path / "params.effective.yaml"
    f.write_text(yaml.safe_dump(_set(BASE, "predict.batch_size", "four")))
    with pytest.raises(
        ConfigError, match=re.escape(f"{f}: predict.batch_size: 'four' is not an integer (expected an integer >= 1)")
    ):
        load_params(f)
    # a bad base value is reported even though every stage overrides it
    assert BASE["train"]["stages"]["source"]["epochs"] and BASE["train"]["stages"]["finetune"]["epochs"]
    with pytest.raises(ConfigError, match=r"train\.epochs: 'three' is not an integer"):
        validate_params(_set(BASE, "train.epochs", "three"))
    with pytest.raises(ConfigError, match=r"train\.epoch: unknown key; did you mean 'epochs'\?"):
        validate_params(_set(BASE, "train.epoch", 3))


def test_unknown_key_without_a_close_match_lists_the_valid_ones():
    with pytest.raises(ConfigError, match=r"predict\.zzz: unknown key \(valid: batch_size, device, "):
        validate_params(_set(BASE, "predict.zzz", 1))
    with pytest.raises(ConfigError, match=r"^predictt: unknown key; did you mean 'predict'\?"):
        validate_params({**BASE, "predictt": {}})


def test_variant_steps_are_checked_against_the_step_registry():
    from cephalo.preprocess import STEPS

    with pytest.raises(
        ConfigError, match=r"variants\.v\.steps\[0\]: unknown step 'letterbx' \(did you mean 'letterbox'\?\)"
    ):
        validate_params({"variants": {"v": {"steps": [{"letterbx": {"size": 8}}]}}})
    with pytest.raises(ConfigError, match=r"variants\.v\.steps\[1\]\.clahe\.clip_limit: 'high' is not valid"):
        validate_params({"variants": {"v": {"steps": [{"letterbox": {"size": 8}}, {"clahe": {"clip_limit": "high"}}]}}})
    with pytest.raises(ConfigError, match=r"variants\.v\.steps\[0\]\.spacing: spacing: spacing_mm must be > 0"):
        validate_params({"variants": {"v": {"steps": [{"spacing": {"spacing_mm": 0, "fov_mm": 240}}]}}})
    # every argument of every registered step is accepted by name (and nothing else)
    for name, cls in STEPS.items():
        args = [f.name for f in dataclasses.fields(cls) if f.init]
        kw = {a: getattr(cls(), a) for a in args}
        validate_params({"variants": {"v": {"steps": [{name: kw}]}}})
        with pytest.raises(ConfigError, match=rf"steps\[0\]\.{name}\.bogus: unknown argument"):
            validate_params({"variants": {"v": {"steps": [{name: {"bogus": 1}}]}}})


def test_shipped_params_files_validate():
    from cephalo.config.load import check_pipeline

    files = [REPO / "params.yaml", *sorted((REPO / "profiles").glob("*.yaml"))]
    assert len(files) >= 3
    for f in files:
        check_pipeline(load_params(f), source=f)
    # overlays are partial: each one on top of params.yaml, as profiles/build.py merges them
    sys.path.insert(0, str(REPO / "profiles"))
    try:
        import build
    finally:
        sys.path.pop(0)
    overlays = sorted((REPO / "profiles" / "overlays").glob("*.yaml"))
    assert overlays
    for f in overlays:
        over = yaml.safe_load(f.read_text()) or {}
        merged = {k: (v if k in build.REPLACED else build.deep_merge(BASE.get(k), v)) for k, v in over.items()}
        check_pipeline(validate_params({**BASE, **merged}, source=f), source=f)


def test_defaults_live_in_the_schema_only():
    from cephalo.augment import DEFAULT_AUGMENT
    from cephalo.evaluate.diagnosis import DEFAULT_DIAGNOSIS_THRESHOLDS
    from cephalo.evaluate.metrics import DEFAULT_THRESHOLDS_MM

    assert list(DEFAULT_THRESHOLDS_MM) == EvaluateConfig().thresholds_mm == [2.0, 2.5, 3.0, 4.0]
    assert DiagnosisConfig().model_dump() == DEFAULT_DIAGNOSIS_THRESHOLDS
    assert AugmentConfig.default_blocks() == DEFAULT_AUGMENT
    # no other source file spells the SDR thresholds or the diagnosis defaults out
    src = REPO / "src" / "cephalo"
    pattern = re.compile(r"2\.0,\s*2\.5,\s*3\.0,\s*4\.0|\"collapse_ratio\":\s*0\.5|\"rotate_deg\":\s*10\.0")
    hits = [
        str(p.relative_to(src))
        for p in src.rglob("*.py")
        if p.parent.name != "config" and pattern.search(p.read_text())
    ]
    assert hits == []


def test_library_code_never_reads_params_files():
    src = REPO / "src" / "cephalo"
    pattern = re.compile(r"\bload_params\(|\bread_params\(|\bread_params_file\(|params\.yaml\"\)")
    hits = [
        str(p.relative_to(src))
        for p in src.rglob("*.py")
        if p.parent.name not in ("config", "commands") and pattern.search(p.read_text())
    ]
    assert hits == []


def test_train_config_from_dict_names_the_key():
    with pytest.raises(ConfigError, match=r"^train\.lr: -1 is too small \(expected a number > 0\)"):
        TrainConfig.from_dict({"lr": -1})
    with pytest.raises(ConfigError, match=r"^train\.init: source is 'checkpoint' but init\.path is not set"):
        TrainConfig.from_dict({"init": {"source": "checkpoint"}})
    cfg = TrainConfig.from_dict({"ema": True, "init": "scratch", "augment": {"affine": {"p": 0.5}}})
    assert cfg.ema.enabled and cfg.init.source == "scratch"
    assert cfg.augment["affine"] == {**AugmentConfig.default_blocks()["affine"], "p": 0.5}


def test_literal_choices_match_the_library_registries():
    from cephalo.codecs import CODECS, CONVENTIONS, DECODERS
    from cephalo.config.schema import CodecConfig
    from cephalo.losses import LOSSES

    def choices(model, field):
        import typing

        return set(typing.get_args(model.model_fields[field].annotation))

    assert choices(CodecConfig, "name") == set(CODECS)
    assert choices(CodecConfig, "decoder") == set(DECODERS)
    assert choices(CodecConfig, "convention") == set(CONVENTIONS)
    assert choices(TrainConfig, "loss") == set(LOSSES)
    from cephalo.config.schema import CalibrateConfig
    from cephalo.uncertainty import SCALES

    assert choices(CalibrateConfig, "scale") == set(SCALES)


def test_cli_prints_one_line_and_exits_1(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump(_set(BASE, "predict.batch_size", "four")))
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "cephalo",
            "predict",
            "--model",
            str(tmp_path / "m.pt"),
            str(tmp_path),
            "--out",
            str(tmp_path / "o"),
            "--params",
            str(f),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 1
    assert p.stderr.strip() == (
        f"cephalo: error: {f}: predict.batch_size: 'four' is not an integer (expected an integer >= 1)"
    )
    ok = subprocess.run(
        [sys.executable, "-m", "cephalo", "check-params", str(REPO / "params.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0 and ok.stdout.strip().endswith("params.yaml: ok")
    bad = subprocess.run(
        [sys.executable, "-m", "cephalo", "check-params", str(f)], capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 1 and "predict.batch_size: 'four'" in bad.stderr


def test_snakemake_dry_run_rejects_a_typo_with_the_same_message(tmp_path):
    pytest.importorskip("snakemake")
    d = tmp_path / "wf"
    d.mkdir()
    for name in ("Snakefile", "workflow", "params.yaml", "profiles"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, d / name)
    p = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--config", "set=train.epoch=3"],
        cwd=d,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode != 0
    out = p.stdout + p.stderr
    assert "train.epoch: unknown key; did you mean 'epochs'?" in out, out[-2000:]
    assert "params.yaml" in out
    assert not (d / "results" / "params").exists()  # no effective params written for a rejected config


def test_library_dataclass_defaults_agree_with_the_schema():
    """Library objects that keep their own defaults (for direct library callers) must not drift from the schema."""
    import dataclasses as dc

    from cephalo.config import schema as S
    from cephalo.public_hrnet.hub import ModelSource
    from cephalo.tracking import TrackingConfig

    # cephalo.demo.DemoConfig keeps no defaults: it is built from S.DemoConfigSchema only
    pairs = [(ModelSource, S.ModelSourceConfig), (TrackingConfig, S.TrackingSection)]
    for lib, model in pairs:
        ours = model().model_dump()
        checked = 0
        for f in dc.fields(lib):
            if f.name not in ours or f.default is dc.MISSING:
                continue
            theirs = f.default
            theirs = str(theirs) if isinstance(ours[f.name], str) else theirs
            assert theirs == ours[f.name], (lib.__name__, f.name, theirs, ours[f.name])
            checked += 1
        assert checked >= 3, lib
