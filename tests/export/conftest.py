"""Tiny checkpoints and their ONNX exports for the export tests (built here, never downloaded)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest


def make_checkpoint(path: Path, features=(4, 8), seed: int = 0, angle: float = 0.0,
                    scale=(1.0, 1.0, 1.0), voxel_size=(1.0, 0.5, 0.5)) -> Path:
    """A resin checkpoint of an untrained (randomly initialised) generator."""
    torch = pytest.importorskip("torch")
    from resin.checkpoint import save_checkpoint
    from resin.config import TrainConfig
    from resin.models import Generator

    config = TrainConfig.model_validate({"generator": {"features": list(features)},
                                         "data": {"patch_size": (16, 32, 32)}})
    torch.manual_seed(seed)
    net = Generator(config.generator)
    with torch.no_grad():  # a visible correction, so parity is not trivially the identity
        net.head.weight.normal_(0.0, 0.1)
    save_checkpoint(path, {
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


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory, tiny_checkpoint) -> tuple[Path, object]:
    """(path of the exported ONNX, its ModelMetadata), exported once per session."""
    pytest.importorskip("onnx")
    from resin.export import export_onnx

    out = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        meta = export_onnx(tiny_checkpoint, out)
    return out, meta
