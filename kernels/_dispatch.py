"""Where an array lives (host or CUDA device) and thread safety of the parallel CPU kernels.

Numba's ``workqueue`` threading layer aborts the process when two threads launch parallel
kernels at once; TBB is thread and fork safe; GNU OpenMP is thread safe but not fork safe,
and its spin-waiting threads collapse on a shared, oversubscribed machine (measured here:
a 2 MB MIP took 34 ms under OpenMP against 0.26 ms under workqueue at load 6 on 2 cores).
So, unless the user chose a layer (``NUMBA_THREADING_LAYER``): TBB when it is installed,
otherwise workqueue, with parallel kernel calls serialised by one lock. Each kernel
already uses every core, so the lock costs little throughput. If a thread-safe layer ends
up active (TBB, or OpenMP chosen by the user) the lock is dropped after the first launch.
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
        layer = "tbb"
    except ImportError:
        layer = "workqueue"
    setattr(numba.config, "THREADING_LAYER", layer)  # noqa: B010


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
