"""Tiny resin checkpoints for the export tests (an untrained generator; never downloaded)."""

from __future__ import annotations

from pathlib import Path

import pytest


def make_checkpoint(path: Path, features=(4, 8), seed: int = 0, angle: float = 0.0,
                    scale=(1.0, 1.0, 1.0), voxel_size=(1.0, 0.5, 0.5),
                    output_floor: float | None = None, multiplicative: bool = False,
                    degrader: dict | None = None) -> Path:
    """A resin checkpoint of an untrained (randomly initialised) generator; with
    ``degrader`` (a DegraderConfig dict) also a D: for the 'kernel' kind an axial blur
    (sigma 1.5) with a little non-negative noise, otherwise random weights."""
    torch = pytest.importorskip("torch")
    from resin.checkpoint import save_checkpoint
    from resin.config import TrainConfig
    from resin.models import Generator

    config = TrainConfig.model_validate({"generator": {"features": list(features),
                                                       "output_floor": output_floor,
                                                       "multiplicative": multiplicative},
                                         "degrader": degrader or {},
                                         "data": {"patch_size": (16, 32, 32)}})
    torch.manual_seed(seed)
    net = Generator(config.generator)
    with torch.no_grad():  # a visible correction, so parity is not trivially the identity
        net.head.weight.normal_(0.0, 0.1)
    extra = {}
    if degrader is not None:
        from resin.models import Degrader

        d = Degrader(config.degrader)
        with torch.no_grad():
            if d.kernel is not None:
                d.reset_to_gaussian(1.5, (1.0, 0.0, 0.0))
                d.kernel[0, 0, -1] += 0.1  # not symmetric: a flipped kernel would show
            else:
                for p in d.parameters():
                    p.add_(0.05 * torch.randn_like(p))
        extra["degrader"] = d.state_dict()
    save_checkpoint(path, {
        **extra,
        "config": config.model_dump(mode="json"),
        "generator": net.state_dict(),
        "step": 0,
        "normalization": {"low_percentile": 0.5, "high_percentile": 99.9,
                          "train_low": 100.0, "train_high": 2100.0},
        "scale": list(scale),
        "axial_angle_deg": angle,
        "voxel_size": list(voxel_size) if voxel_size else None,
    })
    return path
