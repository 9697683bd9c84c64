"""Tiny checkpoints and their ONNX exports for the export tests (built here, never downloaded)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from _checkpoints import make_checkpoint


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
