from __future__ import annotations

import argparse

import pytest

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


def test_fit_patch_shrinks_to_a_cube_shorter_than_the_volume():
    from resin.config import fit_patch, patch_grid

    quick = preset_config("quick")  # 32^3 patches, size multiple 4
    assert fit_patch(quick, (64, 128, 128)) is quick
    assert fit_patch(quick, (33, 33, 33)) is quick
    # patches as deep as the stack could not move along z: a side below it
    assert fit_patch(quick, (32, 128, 128)).data.patch_size == (28, 28, 28)
    # a 20-plane confocal stack: a 16^3 cube, not 16x32x32 (flat patches' MIPs are maxima
    # over fewer planes along z, which the MIP discriminators tell apart by that alone)
    assert fit_patch(quick, (20, 256, 256)).data.patch_size == (16, 16, 16)
    assert fit_patch(quick, (21, 256, 256)).data.patch_size == (20, 20, 20)
    assert fit_patch(quick, (64, 27, 300)).data.patch_size == (24, 24, 24)
    # z sampled 3x coarser: 9 raw planes are 25 planes of the training grid
    assert patch_grid((9, 256, 256), 3) == (25, 256, 256)
    assert fit_patch(quick, patch_grid((9, 256, 256), 3)).data.patch_size == (24, 24, 24)
    # a patch the user made flat stays flat, each side fitted on its own (z: 8 would be
    # too short for the discriminators, so the whole 12 planes)
    flat = preset_config("quick", {"data": {"patch_size": (16, 64, 64)}})
    assert fit_patch(flat, (12, 40, 100)).data.patch_size == (12, 36, 64)
    assert fit_patch(flat, (14, 40, 100)).data.patch_size == (12, 36, 64)
    # the generator's size multiple: [8, 16, 32, 64] pools 3 times (multiple 8)
    deep = preset_config("quick", {"generator": {"features": [8, 16, 32, 64]}})
    assert fit_patch(deep, (20, 256, 256)).data.patch_size == (16, 16, 16)
    assert fit_patch(deep, (15, 256, 256)).data.patch_size == (8, 8, 8)
    # the quick discriminators take 12^3 at least: a 12-plane stack trains on its whole
    # depth rather than on 8^3 patches they refuse; 11 planes are too thin either way
    assert quick.discriminator.min_input == 12
    assert fit_patch(quick, (13, 256, 256)).data.patch_size == (12, 12, 12)
    assert fit_patch(quick, (12, 256, 256)).data.patch_size == (12, 12, 12)
    assert fit_patch(quick, (11, 256, 256)).data.patch_size == (8, 8, 8)


def test_fit_patch_to_volume_reads_the_shape_and_says_what_it_changed(tmp_path, caplog):
    import logging

    import numpy as np
    import tifffile

    from resin.train.config_io import fit_patch_to_volume

    quick = preset_config("quick")
    thin, deep = tmp_path / "thin.tif", tmp_path / "deep.tif"
    tifffile.imwrite(thin, np.zeros((20, 64, 64), np.uint16))
    tifffile.imwrite(deep, np.zeros((40, 64, 64), np.uint16))
    caplog.set_level(logging.DEBUG, logger="resin")  # a debug line: the start line names the patch
    assert fit_patch_to_volume(str(deep), quick) is quick
    assert "training on patches" not in caplog.text
    assert fit_patch_to_volume(str(thin), quick).data.patch_size == (16, 16, 16)
    assert "training on patches of (16, 16, 16)" in caplog.text
    # with --z-step 2 the 20 raw planes are 39 planes of the training grid: 32^3 fits
    zstep = preset_config("quick", {"data": {"z_step": 2}})
    assert fit_patch_to_volume(str(thin), zstep) is zstep


@pytest.mark.parametrize("preset", ["quick", "default"])
@pytest.mark.parametrize("angle", [0.0, 30.0, 45.0])
@pytest.mark.parametrize("z_step", [1, 3])
def test_the_smallest_volume_said_to_train_is_the_smallest_that_does(preset, angle, z_step):
    """The volume a too-small error names gets a patch training accepts; a plane or pixel
    less along any axis does not (so no message advises a patch that is then refused)."""
    from resin.config import fit_patch, patch_grid
    from resin.train.config_io import patch_refusal, smallest_volume

    config = preset_config(preset, {"angle_deg": angle, "data": {"z_step": z_step}})
    least = smallest_volume(config)
    assert least is not None
    assert patch_refusal(fit_patch(config, patch_grid(least, z_step))) is None
    for axis in range(3):
        less = list(least)
        less[axis] -= 1
        refusal = patch_refusal(fit_patch(config, patch_grid(tuple(less), z_step)))
        assert refusal is not None and refusal.startswith("too small"), (axis, less)
