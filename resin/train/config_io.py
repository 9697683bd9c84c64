"""Building a TrainConfig from a preset, a JSON file and command-line flags (no torch)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from resin import _log
from resin.config import (
    MIN_PATCH_SIDE,
    PRESETS,
    TrainConfig,
    fit_patch,
    patch_grid,
    preset_config,
)
from resin.errors import UsageError


def build_config(preset: str, overrides: dict[str, Any] | None = None,
                 flags: dict[str, Any] | None = None) -> TrainConfig:
    """preset < JSON overrides < flags (None flags are ignored); errors are UsageErrors."""
    if preset not in PRESETS:
        raise UsageError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if overrides is not None and not isinstance(overrides, dict):
        raise UsageError("the config file must hold a JSON object of TrainConfig fields")
    top: dict[str, Any] = dict(overrides or {})
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    data_flags = {k: flags.pop(k) for k in ("z_step", "patch_size", "channel", "time") if k in flags}
    if data_flags:
        top["data"] = {**top.get("data", {}), **data_flags}
    top.update(flags)
    try:
        return preset_config(preset, top)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        raise UsageError(f"invalid training config: {where}: {first['msg']}") from exc


def fit_patch_to_volume(raw: str, config: TrainConfig,
                        overrides: dict[str, Any] | None = None) -> TrainConfig:
    """The preset's patch fitted to a volume not larger than it along some axis (confocal
    stacks of 20-30 planes are common; :func:`resin.config.fit_patch`), with a log line; the
    config unchanged when the patch is smaller than the volume or ``overrides`` (the
    ``--config`` file's fields) give one."""
    from resin.io import open_volume

    if "patch_size" in (overrides or {}).get("data", {}):
        return config
    reader = open_volume(raw, config.data.channel, config.data.time)
    try:
        shape = tuple(reader.shape)
    finally:
        reader.close()
    if len(shape) != 3:
        return config  # training refuses it with its own message
    fitted = fit_patch(config, patch_grid(shape, config.data.z_step))
    sides = fitted.data.patch_size
    if sides != config.data.patch_size and min(sides) >= MIN_PATCH_SIDE:
        _log.log(f"the training patch {tuple(config.data.patch_size)} does not fit inside the "
                 f"volume {shape} with room to move: training on patches of {tuple(sides)}")
        return fitted
    return config
