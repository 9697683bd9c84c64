"""Export the generator to ONNX (and TensorRT), with parity checks and the metadata record.

Nothing heavy at import: torch, onnx and tensorrt are imported inside the functions that
need them, so the runtime (which checks TensorRT plans through this package) stays
torch-free. Public names resolve lazily from the private modules below.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> private module under resin.export
_PUBLIC = {
    # the whole `resin export` flow
    "export_model": "_model",
    "ExportResult": "_model",
    # ONNX export and its parity check
    "export_onnx": "_onnx",
    "parity": "_onnx",
    "check_tile": "_onnx",
    "load_generator": "_onnx",
    # the metadata record
    "metadata_from_checkpoint": "metadata",
    "read_onnx_metadata": "metadata",
    "check_external_data": "metadata",
    "weights_sha256": "metadata",
    # receptive field / halo
    "measure_halo": "_halo",
    "cached_halo": "_halo",
    # TensorRT engine build, plan sidecar and compatibility checks
    "build_engine": "_tensorrt",
    "check_plan_compatible": "_tensorrt",
    "read_plan_sidecar": "_tensorrt",
    "plan_has_host_code": "_tensorrt",
    "optimization_profile": "_tensorrt",
    "check_tensor_limit": "_tensorrt",
    # bioimage.io model package
    "write_bioimageio": "_bioimageio",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'resin.export' has no attribute {name!r}")
    return getattr(importlib.import_module(f"resin.export.{module}"), name)


def __dir__() -> list[str]:
    return __all__
