"""One test body, three places to run it: NumPy (CPU), the Numba CUDA simulator, a real GPU.

The ``cudasim`` flavour runs only in the separate ``NUMBA_ENABLE_CUDASIM=1 pytest -m cudasim``
invocation (the variable must be set before Numba is imported); the ``gpu`` flavour skips
itself without a CUDA GPU (tests/conftest.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

CUDASIM = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


@dataclass(frozen=True)
class Side:
    """How to put arrays where a test flavour runs its kernels, and bring results back."""

    name: str
    put: Callable[[np.ndarray], Any]

    def get(self, a: Any) -> np.ndarray:
        if isinstance(a, np.ndarray):
            assert self.name == "cpu", "a CUDA call returned a host array"
            return a
        assert self.name != "cpu", "a CPU call returned a device array"
        return a.copy_to_host()


def _device_put(a: np.ndarray) -> Any:
    from numba import cuda

    return cuda.to_device(np.ascontiguousarray(a))


@pytest.fixture(params=[
    "cpu",
    pytest.param("cudasim", marks=pytest.mark.cudasim),
    pytest.param("gpu", marks=pytest.mark.gpu),
])
def side(request) -> Side:
    if request.param == "cpu":
        return Side("cpu", lambda a: a)
    if request.param == "cudasim" and not CUDASIM:
        pytest.skip("runs in the NUMBA_ENABLE_CUDASIM=1 invocation (make test)")
    return Side(request.param, _device_put)
