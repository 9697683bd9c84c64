"""Tiny training configs shared by the tests (16x32x32 patches, a few thousand weights)."""

from __future__ import annotations

from resin.config import TrainConfig


def tiny_config(**top) -> TrainConfig:
    base = {
        "generator": {"features": [4, 8]},
        "degrader": {"kernel_size": 7},
        "discriminator": {"features": 4, "layers": 2},
        "loss": {"ssim_window": 7},
        "data": {"patch_size": (16, 32, 32), "foreground_tries": 3, "validation_patches": 1},
        "steps": 4,
        "checkpoint_every": 2,
        "validate_every": 2,
        "preview_every": 2,
        "log_every": 1,
        "threads": 1,
    }
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return TrainConfig.model_validate(base)
