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
from resin.errors import UsageError, VolumeError
from resin.train.frame import kept_side


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
    stacks of 20-30 planes are common; :func:`resin.config.fit_patch`), with a debug line; the
    config unchanged when the patch is smaller than the volume or ``overrides`` (the
    ``--config`` file's fields) give one; a VolumeError (:func:`too_small`) when no patch
    that training accepts fits the volume."""
    from resin.io import open_volume

    if "patch_size" in (overrides or {}).get("data", {}):
        return config
    time = config.data.time
    reader = open_volume(raw, config.data.channel, 0 if time == "all" else time)
    try:
        shape = tuple(reader.shape)
    finally:
        reader.close()
    if len(shape) != 3:
        return config  # training refuses it with its own message
    fitted = fit_patch(config, patch_grid(shape, config.data.z_step))
    sides = fitted.data.patch_size
    if sides == config.data.patch_size:
        return config
    if patch_refusal(fitted) is not None:
        raise too_small(raw, shape, config)
    # a debug line: training's start line names the patch, after the volume is checked (an
    # info line here would come before a bad volume's one-line error)
    _log.debug(f"the training patch {tuple(config.data.patch_size)} does not fit inside the "
               f"volume {shape} with room to move: training on patches of {tuple(sides)}")
    return fitted


def patch_refusal(config: TrainConfig) -> str | None:
    """Why training cannot use ``config``'s patch, to follow "patches of (Z, Y, X) are"
    (None: it can): every side at least ``MIN_PATCH_SIDE``, and at least the discriminators'
    smallest input after R's crop. :func:`resin.train.train` checks it before any work."""
    patch = tuple(config.data.patch_size)
    if min(patch) < MIN_PATCH_SIDE:
        return f"too small (sides of at least {MIN_PATCH_SIDE} are needed)"
    need = config.discriminator.min_input
    if kept_side(patch, config.angle_deg) < need:
        return (f"too small for discriminators with {config.discriminator.layers} layers "
                f"(need sides of at least {need} after cropping)")
    return None


def smallest_volume(config: TrainConfig) -> tuple[int, int, int] | None:
    """The smallest raw (Z, Y, X) volume that :func:`resin.config.fit_patch` fits a patch
    of ``config`` into that training accepts (each axis on its own, the others roomy);
    None when not even ``config``'s own patch is accepted."""
    p = config.data.patch_size
    k = config.data.z_step
    smallest = []
    for axis in range(3):
        roomy = [q + 1 for q in p]
        for n in range(1, p[axis] + 2):
            roomy[axis] = n
            grid = (roomy[0], roomy[1], roomy[2])
            if patch_refusal(fit_patch(config, grid)) is None:
                break
        else:
            return None
        smallest.append(-(-(n - 1) // k) + 1 if axis == 0 else n)  # grid planes -> raw planes
    return (smallest[0], smallest[1], smallest[2])


def too_small(path: object, shape: tuple[int, ...], config: TrainConfig) -> VolumeError:
    """The error for a volume no patch training accepts fits into (:func:`patch_refusal`)."""
    grid = patch_grid(shape, config.data.z_step)
    on = f" (z-step {config.data.z_step}: {grid})" if config.data.z_step > 1 else ""
    fits = fit_patch(config, grid)
    why = patch_refusal(fits) or "refused"
    least = smallest_volume(config)
    need = f"; the smallest volume it trains on is {least} (z, y, x)" if least else ""
    return VolumeError(f"{path}: volume {tuple(shape)}{on} is too small to train on: the patches "
                       f"that fit it, {tuple(fits.data.patch_size)}, are {why}{need}")
