"""One place that imports optional dependencies, lazily, with an error naming the extra."""

from __future__ import annotations

import importlib
from types import ModuleType

from resin.errors import MissingDependencyError

#: which extra provides each optional top-level module
EXTRA_FOR = {
    "torch": "train",
    "onnx": "export",
    "onnxscript": "export",
    "onnxruntime": "cpu",
    "tensorrt": "gpu",
    "cupy": "gpu",
    "bioimageio": "export",
    "scipy": "dev",
    "skimage": "dev",
    "monai": "dev",
    "h5py": "hdf5",
}


def require(module: str, purpose: str | None = None, extra: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        raise MissingDependencyError(top, extra or EXTRA_FOR.get(top, "dev"), purpose) from exc


def available(module: str) -> bool:
    """True if ``module`` can be imported (imports it)."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True
