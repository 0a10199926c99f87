"""`cephalo train --stage NAME`: per-stage overrides of the train section (source vs fine-tune)."""

import pytest

from cephalo.config import validate_params
from cephalo.errors import ConfigError

TRAIN = {
    "epochs": 3,
    "lr": 1e-4,
    "augment": {"enabled": True, "affine": {"p": 0.8, "rotate_deg": 10.0}},
    "stages": {"source": {"epochs": 40, "augment": {"affine": {"rotate_deg": 5.0}}}, "finetune": {"lr": 1e-5}},
}


def _train(train=TRAIN):
    return validate_params({"train": train}, source="params.yaml").train


def test_no_stage_is_the_base_section():
    cfg = _train().for_stage(None)
    assert cfg.epochs == 3 and cfg.lr == 1e-4 and not hasattr(cfg, "stages")


def test_stage_is_deep_merged_on_top():
    s = _train().for_stage("source")
    assert s.epochs == 40 and s.lr == 1e-4
    assert s.augment["affine"]["rotate_deg"] == 5.0 and s.augment["affine"]["p"] == 0.8
    assert s.augment["enabled"] is True
    f = _train().for_stage("finetune")
    assert f.lr == 1e-5 and f.epochs == 3
    assert TRAIN["augment"]["affine"]["rotate_deg"] == 10.0  # the input is not modified


def test_unknown_stage_lists_the_defined_ones():
    with pytest.raises(ConfigError, match=r"no stage 'nope'; defined: finetune, source"):
        _train().for_stage("nope")
    with pytest.raises(ConfigError, match=r"did you mean 'source'"):
        _train().for_stage("sourse")


def test_a_bad_base_value_is_an_error_even_when_every_stage_overrides_it():
    bad = {**TRAIN, "epochs": "three", "stages": {"source": {"epochs": 40}}}
    with pytest.raises(ConfigError, match=r"^params.yaml: train.epochs: 'three' is not an integer"):
        _train(bad)


def test_stage_overrides_are_validated_with_the_same_types():
    bad = {**TRAIN, "stages": {"source": {"lr": "fast"}}}
    with pytest.raises(ConfigError, match=r"train.stages.source.lr: 'fast' is not a number \(expected a number > 0\)"):
        _train(bad)
    bad = {**TRAIN, "stages": {"source": {"epoch": 4}}}
    with pytest.raises(ConfigError, match=r"train.stages.source.epoch: unknown key; did you mean 'epochs'\?"):
        _train(bad)
