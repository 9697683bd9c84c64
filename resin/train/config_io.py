"""Building a TrainConfig from a preset, a JSON file and command-line flags (no torch)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from resin.config import PRESETS, TrainConfig, preset_config
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
    data_flags = {k: flags.pop(k) for k in ("z_step", "patch_size") if k in flags}
    if data_flags:
        top["data"] = {**top.get("data", {}), **data_flags}
    top.update(flags)
    try:
        return preset_config(preset, top)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        raise UsageError(f"invalid training config: {where}: {first['msg']}") from exc
