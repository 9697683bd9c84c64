"""Where an array lives (host or CUDA device) and thread safety of the parallel CPU kernels.

Numba's ``workqueue`` threading layer aborts the process when two threads launch parallel
kernels at once; TBB and OpenMP are thread safe (TBB is also fork safe). So: if TBB is
installed and the user chose no layer, use it; otherwise Numba picks its default (OpenMP
when libgomp is present, else workqueue). Until the first launch shows a thread-safe
layer, and for good under workqueue, parallel kernel calls are serialised by one lock.
Each kernel already uses every core, so the lock costs little throughput.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numba
import numpy as np

_lock = threading.RLock()
_layer_is_safe: bool | None = None


def _configure_layer() -> None:
    if os.environ.get("NUMBA_THREADING_LAYER") or getattr(
            numba.config, "THREADING_LAYER", "default") != "default":
        return
    try:
        importlib.import_module("numba.np.ufunc.tbbpool")
    except ImportError:
        return
    setattr(numba.config, "THREADING_LAYER", "tbb")  # noqa: B010


_configure_layer()


@contextmanager
def parallel_section() -> Iterator[None]:
    """Hold this around every parallel CPU kernel launch."""
    global _layer_is_safe
    if _layer_is_safe:
        yield
        return
    with _lock:
        yield
        if _layer_is_safe is None:
            try:
                _layer_is_safe = numba.threading_layer() in ("tbb", "omp")
            except ValueError:  # no parallel launch yet
                pass


def cudasim() -> bool:
    return bool(getattr(numba.config, "ENABLE_CUDASIM", 0))


def is_device(a: Any) -> bool:
    """True for CUDA arrays: Numba device arrays, CuPy arrays, torch CUDA tensors (anything
    with ``__cuda_array_interface__``), and the CUDA simulator's arrays."""
    if hasattr(a, "__cuda_array_interface__"):
        return True
    if cudasim() and not isinstance(a, np.ndarray):
        from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

        return isinstance(a, FakeCUDAArray)
    return False
