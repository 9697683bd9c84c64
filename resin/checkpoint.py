"""The training checkpoint: one ``torch.save`` dict, loadable with ``weights_only=True``.

Keys (all plain Python / tensors, so ``weights_only=True`` loading works):

- ``format``: ``"resin-checkpoint"``; ``format_version``: int
- ``resin_version``: str
- ``config``: the full training config as a JSON-able dict (``TrainConfig.model_dump()``),
  including ``config["generator"]`` (a :class:`resin.config.GeneratorConfig` dict)
- ``generator``: state_dict of F; ``degrader``: D's (export writes it beside F for
  ``resin-run --report``); ``discriminators``, ``optimizers``: state dicts (training only)
- ``step``: int, steps done; ``rng``: RNG states for exact resume
- ``normalization``: ``{"low_percentile", "high_percentile", "train_low", "train_high"}``
- ``scale``: [sz, sy, sx]; ``axial_angle_deg``: float; ``voxel_size``: [z, y, x] or None
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from resin._atomic import atomic_write
from resin.errors import ModelError

FORMAT = "resin-checkpoint"
FORMAT_VERSION = 1


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Write atomically (temp file + rename) so an interrupted save never leaves a torn file."""
    import torch

    path = Path(path)
    data = {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}
    atomic_write(path, lambda fh: torch.save(data, fh))


def load_checkpoint(path: str | os.PathLike, map_location: str = "cpu") -> dict[str, Any]:
    """Load with ``weights_only=True``; a missing, corrupt or foreign file is a ModelError."""
    from resin._optional import require

    torch = require("torch", "loading a training checkpoint", extra="train")
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such checkpoint file")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise ModelError(f"{path}: not a readable resin checkpoint ({type(exc).__name__})") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ModelError(f"{path}: not a resin checkpoint (made by `resin train`?)")
    if int(data.get("format_version", 0)) > FORMAT_VERSION:
        raise ModelError(f"{path}: checkpoint format is newer than this resin; upgrade resin")
    for key in ("config", "generator"):
        if key not in data:
            raise ModelError(f"{path}: checkpoint has no {key!r} entry; it is incomplete")
    return data


def build_generator(checkpoint: dict[str, Any]):
    """Rebuild F from a loaded checkpoint, weights loaded, in eval mode.

    A model trained with ``--z-step K`` records scale (K, 1, 1) but F keeps its input's
    shape (it was trained on z interpolated by K): it comes back behind that interpolation
    (:class:`resin.models.ZInterpolated`), so that it gives the K planes per input plane
    its scale promises.
    """
    from resin.config import GeneratorConfig
    from resin.models import Generator, ZInterpolated

    gcfg = GeneratorConfig.model_validate(checkpoint["config"].get("generator", {}))
    net = Generator(gcfg)
    try:
        net.load_state_dict(checkpoint["generator"])
    except RuntimeError as exc:
        raise ModelError(f"checkpoint weights do not match its generator config ({exc})") from exc
    k = z_step_of(checkpoint)
    return (ZInterpolated(net, k) if k > 1 else net).eval()


def build_degrader(checkpoint: dict[str, Any]):
    """Rebuild D from a loaded checkpoint, weights loaded, in eval mode (a slim copy from
    :func:`save_generator_only` has none: ModelError)."""
    from resin.config import DegraderConfig
    from resin.models import Degrader

    if not checkpoint.get("degrader"):
        raise ModelError("the checkpoint has no degrader (D) weights")
    net = Degrader(DegraderConfig.model_validate(checkpoint["config"].get("degrader") or {}))
    try:
        net.load_state_dict(checkpoint["degrader"])
    except RuntimeError as exc:
        raise ModelError(f"checkpoint D weights do not match its degrader config ({exc})") from exc
    return net.eval()


def z_step_of(checkpoint: dict[str, Any]) -> int:
    """K of a checkpoint trained with ``--z-step K`` (1 otherwise)."""
    scale = checkpoint.get("scale") or [1.0, 1.0, 1.0]
    k = float(scale[0])
    if k < 1 or abs(k - round(k)) > 1e-6 or any(abs(float(s) - 1.0) > 1e-6 for s in scale[1:]):
        raise ModelError(f"checkpoint scale {list(scale)}: only a whole z-step (K, 1, 1) is "
                         "supported")
    return int(round(k))


#: what inference needs from a checkpoint, and D (small) for resin-run --report's
#: consistency residual; the rest (discriminators, optimizers, RNG states) only serves
#: resuming training
_INFERENCE_KEYS = ("resin_version", "config", "generator", "degrader", "step", "normalization",
                   "scale", "axial_angle_deg", "voxel_size", "best")


def save_generator_only(src: str | os.PathLike, dst: str | os.PathLike,
                        overwrite: bool = False) -> Path:
    """Copy ``src`` without its training-only state (about 5x smaller; cannot be resumed)."""
    from resin.errors import OutputExistsError, UsageError

    src, dst = Path(src), Path(dst)
    if dst.exists() and src.resolve() == dst.resolve():
        raise UsageError(f"{dst}: the slim copy must not replace its source checkpoint")
    if dst.exists() and not overwrite:
        raise OutputExistsError(f"{dst} already exists; pass overwrite=True to replace it")
    data = load_checkpoint(src)
    save_checkpoint(dst, {k: data[k] for k in _INFERENCE_KEYS if k in data})
    return dst
