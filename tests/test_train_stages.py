"""`cephalo train --stage NAME`: per-stage overrides of the train section (source vs fine-tune)."""

import pytest

from cephalo.commands.train import stage_section
from cephalo.errors import ConfigError

TRAIN = {
    "epochs": 3,
    "lr": 1e-4,
    "augment": {"enabled": True, "affine": {"p": 0.8, "rotate_deg": 10.0}},
    "stages": {"source": {"epochs": 40, "augment": {"affine": {"rotate_deg": 5.0}}}, "finetune": {"lr": 1e-5}},
}


def test_no_stage_drops_the_stages_entry():
    assert stage_section(TRAIN, None) == {k: v for k, v in TRAIN.items() if k != "stages"}


def test_stage_is_deep_merged_on_top():
    s = stage_section(TRAIN, "source")
    assert s["epochs"] == 40 and s["lr"] == 1e-4
    assert s["augment"] == {"enabled": True, "affine": {"p": 0.8, "rotate_deg": 5.0}}
    assert "stages" not in s
    assert stage_section(TRAIN, "finetune")["lr"] == 1e-5 and stage_section(TRAIN, "finetune")["epochs"] == 3
    assert TRAIN["augment"]["affine"]["rotate_deg"] == 10.0  # the input is not modified


def test_unknown_stage_lists_the_defined_ones():
    with pytest.raises(ConfigError, match=r"defined: \['finetune', 'source'\]"):
        stage_section(TRAIN, "nope")
