"""Export the generator to ONNX (and TensorRT), with parity checks and the metadata record.

Nothing heavy at import: torch, onnx and tensorrt are imported inside the functions that
need them. Public names resolve lazily from the private modules below; the plan sidecar
rules live in the torch-free :mod:`resin.tensorrt_plan`, which the runtime imports directly.
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
    # D beside F, for resin-run --report's consistency residual
    "export_degrader": "_degrader",
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
    "check_plan_compatible": "resin.tensorrt_plan",
    "read_plan_sidecar": "resin.tensorrt_plan",
    "plan_has_host_code": "resin.tensorrt_plan",
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
    full = module if module.startswith("resin.") else f"resin.export.{module}"
    return getattr(importlib.import_module(full), name)


def __dir__() -> list[str]:
    return __all__
