from __future__ import annotations

import argparse

from resin.cli import train_cmd
from resin.config import PRESETS, TrainConfig, preset_config

#: what may differ between ``quick`` and ``long``: how long, and how often it logs
_SCHEDULE = {"steps", "time_limit_minutes", "checkpoint_every", "validate_every",
             "preview_every", "log_every"}


def test_long_is_the_quick_recipe_trained_longer():
    quick, long = PRESETS["quick"], PRESETS["long"]
    differ = {k for k in quick.keys() | long.keys() if quick.get(k) != long.get(k)}
    assert differ <= _SCHEDULE, f"long differs from quick in {sorted(differ - _SCHEDULE)}"
    a, b = preset_config("quick"), preset_config("long")
    assert b.steps >= 4 * a.steps
    assert b.time_limit_minutes is not None and a.time_limit_minutes is not None
    assert b.time_limit_minutes > a.time_limit_minutes


def test_every_preset_is_a_choice_of_resin_train():
    ap = argparse.ArgumentParser()
    train_cmd.register(ap.add_subparsers())
    for name in PRESETS:
        args = ap.parse_args(["train", "raw.tif", "-o", "m.pt", "--preset", name])
        assert args.preset == name


def test_the_cpu_presets_start_their_discriminators_at_zero():
    """quick and long (measured on the noisy tubes, seeds 0-3) start the discriminators
    neutral; the untested GPU preset and the bare config keep the random start, so old
    training states resume as they were."""
    assert preset_config("quick").discriminator.zero_last
    assert preset_config("long").discriminator.zero_last
    assert not preset_config("default").discriminator.zero_last
    assert not TrainConfig().discriminator.zero_last
