"""The one small interface every backend implements: load / infer / close."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from resin.metadata import ModelMetadata


@runtime_checkable
class Backend(Protocol):
    """An engine that maps a normalized ``(1, 1, Z, Y, X)`` tile to the network's output.

    ``load`` reads the model and its metadata record (raising :class:`resin.errors.ModelError`
    for a bad model and :class:`resin.errors.BackendError` /
    :class:`resin.errors.MissingDependencyError` when this backend cannot run it here);
    ``infer`` takes and returns float32 NumPy arrays (the backend converts to the model's
    I/O dtype and device); ``close`` releases the engine and device memory. A GPU backend
    may also have ``device_memory() -> (free, total)`` bytes of its device, which the tile
    budget reads (:func:`resin.runtime.budget.free_device_memory`).
    """

    name: str
    device: str
    metadata: ModelMetadata

    def load(self, path: Path, device: str) -> ModelMetadata: ...

    def infer(self, tile: np.ndarray) -> np.ndarray: ...

    def close(self) -> None: ...


@runtime_checkable
class DeviceBackend(Backend, Protocol):
    """A backend that can also leave a tile's output in GPU memory (optional capability).

    ``infer_device`` takes the same host tile as ``infer`` and returns the network's output
    ``(1, 1, Z', Y', X')`` as a CUDA array (``__cuda_array_interface__``, or a Numba
    simulator array under ``NUMBA_ENABLE_CUDASIM=1``) in the model's output dtype (float32
    or float16). The array is complete for work queued afterwards on ``device_stream``
    (None: it is complete when ``infer_device`` returns). ``device_resident`` says whether
    this loaded engine can do so now (a CUDA session, Numba's CUDA available); backends
    without the capability keep the host path.
    """

    device_resident: bool
    device_stream: Any

    def infer_device(self, tile: np.ndarray) -> Any: ...


def device_resident(engine: Backend) -> bool:
    """Whether ``engine`` can leave tile outputs on the GPU (see :class:`DeviceBackend`)."""
    return bool(getattr(engine, "device_resident", False)) and callable(
        getattr(engine, "infer_device", None))


def cuda_memory_info(device: str) -> tuple[int, int] | None:
    """(free, total) bytes of CUDA device ``cuda[:N]`` through Numba, or None when Numba's
    CUDA is not available (the simulator reports infinite memory, which the caller drops)."""
    try:
        from numba import cuda

        if not cuda.is_available():
            return None
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        with cuda.gpus[index]:
            info = cuda.current_context().get_memory_info()
    except Exception:  # noqa: BLE001 - no figure is not a failure
        return None
    return info[0], info[1]
