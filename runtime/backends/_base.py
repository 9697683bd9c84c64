"""The one small interface every backend implements: load / infer / close."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from resin.metadata import ModelMetadata


@runtime_checkable
class Backend(Protocol):
    """An engine that maps a normalized ``(1, 1, Z, Y, X)`` tile to the network's output.

    ``load`` reads the model and its metadata record (raising :class:`resin.errors.ModelError`
    for a bad model and :class:`resin.errors.BackendError` /
    :class:`resin.errors.MissingDependencyError` when this backend cannot run it here);
    ``infer`` takes and returns float32 NumPy arrays (the backend converts to the model's
    I/O dtype and device); ``close`` releases the engine and device memory.
    """

    name: str
    device: str
    metadata: ModelMetadata

    def load(self, path: Path, device: str) -> ModelMetadata: ...

    def infer(self, tile: np.ndarray) -> np.ndarray: ...

    def close(self) -> None: ...
