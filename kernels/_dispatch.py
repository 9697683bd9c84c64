"""Where an array lives (host or CUDA device) and thread safety of the parallel CPU kernels.

Numba's ``workqueue`` threading layer aborts the process when two threads launch parallel
kernels at once; TBB is thread safe, and fork safe as long as kernels were launched from
the main thread only (after launches from other threads, as the runtime's pipeline makes,
numba warns that a forked child's TBB may be in an invalid state; resin never forks);
GNU OpenMP is thread safe but not fork safe, and its spin-waiting threads collapse on a
shared, oversubscribed machine (measured here: a 2 MB MIP took 34 ms under OpenMP against
0.26 ms under workqueue at load 6 on 2 cores).
So, unless the user chose a layer (``NUMBA_THREADING_LAYER``): TBB when it can load (a
dependency on Linux x86-64), otherwise workqueue, with parallel kernel calls serialised
by one lock. Each kernel already uses every core, so the lock costs little throughput.
If a thread-safe layer ends up active (TBB, or OpenMP chosen by the user) the lock is
dropped after the first launch.

TBB is also the faster layer: it launches a parallel kernel in about 2 us where workqueue
takes 0.1-0.2 ms on this host (a 2 MB MIP: 0.17 ms against 0.5-0.6 ms; 245 blended tiles of
32x128x128: 2x faster), and it stays fast when the machine is oversubscribed (the 2 MB MIP
at load 6 on 2 cores: 0.25 ms median and 0.45 ms p90, against 0.6 ms and 8.5 ms).
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.metadata
import os
import site
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numba
import numpy as np

_lock = threading.RLock()
_layer_is_safe: bool | None = None


def _configure_layer() -> None:
    env = os.environ.get("NUMBA_THREADING_LAYER", "")
    layer = env or str(getattr(numba.config, "THREADING_LAYER", "default"))
    if layer in ("workqueue", "omp"):
        return  # the user's choice needs no TBB
    tbb = _tbb_loadable()  # also when the user chose "tbb": numba needs the library
    if not env and layer in ("default", ""):  # unset, or set empty (numba would refuse '')
        setattr(numba.config, "THREADING_LAYER", "tbb" if tbb else "workqueue")  # noqa: B010


def _tbb_candidates() -> list[str]:
    """Where ``libtbb.so.12`` of the ``tbb`` wheel may be: the wheel's own record of its
    files first, then the environment's and the user base's ``lib`` folders."""
    found = []
    try:
        found += [str(f.locate()) for f in importlib.metadata.files("tbb") or ()
                  if f.name == "libtbb.so.12"]
    except importlib.metadata.PackageNotFoundError:
        pass
    found += [os.path.join(p, "lib", "libtbb.so.12") for p in (sys.prefix, site.getuserbase())]
    return [os.path.realpath(f) for f in found if os.path.isfile(f)]


def _tbb_loadable() -> bool:
    """Numba's TBB layer can load. The ``tbb`` wheel puts ``libtbb.so.12`` in the
    environment's ``lib`` folder, which the loader does not search outside conda (numba's
    ``tbbpool`` then fails to import, or finds an older system copy): load the wheel's
    library by its full path first, then import ``tbbpool``, which then links to it."""
    for lib in _tbb_candidates():
        try:
            ctypes.CDLL(lib, mode=ctypes.RTLD_GLOBAL)
            break
        except OSError:
            continue
    try:
        importlib.import_module("numba.np.ufunc.tbbpool")
    except ImportError:
        return False
    return _tbb_new_enough()


#: numba refuses TBB older than 2021 update 6 only at the first launch, with an error
_TBB_MIN_INTERFACE = 12060


def _tbb_new_enough() -> bool:
    """The loaded TBB is one numba accepts (an older one, say from a conda environment,
    would make the first parallel launch fail instead of falling back)."""
    name = {"win32": "tbb12.dll", "darwin": "libtbb.12.dylib"}.get(sys.platform,
                                                                    "libtbb.so.12")
    try:
        version = ctypes.CDLL(name).TBB_runtime_interface_version
    except (OSError, AttributeError):
        return False
    version.restype = ctypes.c_int
    return int(version()) >= _TBB_MIN_INTERFACE


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
