"""The config: paper defaults (§IV.B), presets, overrides by name, JSON round trip."""
import json

import pytest

from reproduce.config import Config, demo, paper, preset, smoke


def test_paper_preset_is_the_paper():
    c = paper()
    # §IV.B: 224×224, Adam, batch 32, lr 0.001, 50 epochs, random horizontal flip; §IV.D ImageNet.
    assert (c.image_size, c.batch_size, c.learning_rate, c.epochs) == (224, 32, 1e-3, 50)
    assert c.optimizer == "adam" and c.horizontal_flip and c.weights == "imagenet"
    assert c.model == "densenet121" and c.steps_per_epoch is None
    assert c.batchnorm_momentum == 0.99  # not stated: keras.applications' own, ImageNet statistics kept
    assert c == Config()  # the paper's values are the defaults, not a preset's overrides


def test_demo_and_smoke_differ_only_where_documented():
    # reproduce.config.demo's docstring and docs/paper_map.md give the reason of each
    changed = {name for name, value in demo().to_dict().items() if paper().to_dict()[name] != value}
    assert changed == {"weights", "image_size", "epochs", "learning_rate", "cache", "shuffle_buffer",
                       "deterministic", "batchnorm_momentum"}
    assert (demo().image_size, demo().epochs, demo().batchnorm_momentum) == (48, 6, 0.9)
    assert demo().weights == "none" and smoke().image_size == 32
    assert smoke().horizontal_flip and smoke().learning_rate == 1e-3 and demo().horizontal_flip


def test_override_by_name_and_unknown_names_fail():
    c = smoke().override(epochs=2, steps_per_epoch=None)  # None is a value: one full pass
    assert c.epochs == 2 and c.steps_per_epoch is None and c.seed == 0
    with pytest.raises(ValueError, match="unknown config field.*lr"):
        paper().override(lr=0.1)


@pytest.mark.parametrize("bad", [dict(model="vgg19"), dict(image_size=16), dict(batch_size=0),
                                 dict(distribute="tpu"), dict(wce_factors="class")])
def test_invalid_values_fail(bad):
    with pytest.raises(ValueError):
        paper().override(**bad)


def test_json_round_trip(tmp_path):
    c = smoke().override(model="vgg16", loss="ewl")
    c.save(tmp_path / "config.json", preset="smoke")
    assert json.loads((tmp_path / "config.json").read_text())["preset"] == "smoke"
    assert Config.load(tmp_path / "config.json") == c


def test_frozen_and_unknown_preset():
    with pytest.raises(Exception):
        paper().epochs = 3
    with pytest.raises(ValueError, match="unknown preset"):
        preset("fast")
