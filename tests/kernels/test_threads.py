"""The runtime calls kernels from worker threads: two threads at once must not abort
(Numba's workqueue layer does) and must each get the right answer."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest
import resin.kernels as K


def _worker(seed: int, errors: list[BaseException]) -> None:
    try:
        rng = np.random.default_rng(seed)
        for _ in range(30):
            vol = rng.integers(0, 60000, (6, 17, 13)).astype(np.uint16)
            mz, my, mx = K.mip(vol)
            assert (mz == vol.max(0)).all() and (mx == vol.max(2)).all()
            acc = np.zeros((6, 17, 13), np.float32)
            wsum = np.zeros_like(acc)
            tile = rng.random((4, 9, 9)).astype(np.float32)
            K.accumulate(acc, wsum, tile, K.tile_window(tile.shape), (1, 3, -2))
            K.finalize(acc, wsum, np.uint16, 0, 1000)
            K.affine_transform(vol, np.eye(3) * 0.9, 0.3)
    except BaseException as exc:  # noqa: BLE001 - reported by the main thread
        errors.append(exc)


def test_two_threads_call_kernels_concurrently():
    errors: list[BaseException] = []
    threads = [threading.Thread(target=_worker, args=(s, errors)) for s in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


_CHILD = """
import threading, numpy as np, resin.kernels as K
def run():
    v = np.ones((8, 64, 64), np.float32)
    for _ in range(50):
        K.mip(v); K.affine_transform(v, np.eye(3), 0.5)
ts = [threading.Thread(target=run) for _ in range(3)]
[t.start() for t in ts]; [t.join() for t in ts]
import numba; print('layer', numba.threading_layer())
"""


@pytest.mark.parametrize("layer", ["workqueue", "omp", "tbb", None])
def test_concurrent_calls_in_a_fresh_process_do_not_abort(layer):
    # a fresh process: the first parallel launches race each other. Under the workqueue
    # layer (resin's choice without TBB) a missing lock aborts the interpreter; OpenMP
    # (a user's choice, where libgomp is installed) and TBB run without the lock. With no
    # choice made resin takes TBB where it can load (the tbb wheel, a Linux x86-64
    # dependency, whose library resin loads from the environment's lib folder).
    from resin.kernels import _dispatch

    env = dict(os.environ)
    env.pop("NUMBA_THREADING_LAYER", None)
    if layer:
        env["NUMBA_THREADING_LAYER"] = layer
    proc = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True,
                          timeout=300, env=env)
    if layer in ("omp", "tbb") and "No threading layer could be loaded" in proc.stderr:
        assert not (layer == "tbb" and _tbb_is_a_dependency()), proc.stderr[-2000:]
        pytest.skip(f"the {layer} threading layer is not available here")
    assert proc.returncode == 0, proc.stderr[-2000:]
    if layer is None and _tbb_is_a_dependency():
        expected = "tbb"  # where resin depends on the tbb wheel, it must find it
    else:
        expected = layer or ("tbb" if _dispatch._tbb_loadable() else "workqueue")
    assert f"layer {expected}" in proc.stdout


def _tbb_is_a_dependency() -> bool:
    """Linux x86-64 with the tbb wheel installed (pyproject's marker)."""
    import importlib.metadata
    import platform

    try:
        importlib.metadata.distribution("tbb")
    except importlib.metadata.PackageNotFoundError:
        return False
    return sys.platform.startswith("linux") and platform.machine() == "x86_64"


_NO_TBB = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "numba.np.ufunc.tbbpool":
            raise ImportError("no TBB in this test")
sys.meta_path.insert(0, Block())
""" + _CHILD


def test_without_tbb_the_default_is_workqueue_behind_the_lock():
    """Where TBB cannot load, resin falls back to workqueue, and the lock keeps three
    threads' first launches from aborting the process."""
    env = dict(os.environ)
    env.pop("NUMBA_THREADING_LAYER", None)
    proc = subprocess.run([sys.executable, "-c", _NO_TBB], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "layer workqueue" in proc.stdout


def test_a_tbb_older_than_numba_accepts_is_not_chosen(monkeypatch):
    """numba refuses TBB before 2021 update 6 only at the first launch (an error, not a
    fallback), so resin checks the version itself before choosing the layer."""
    from resin.kernels import _dispatch

    if not _dispatch._tbb_loadable():
        pytest.skip("TBB does not load here")
    assert _dispatch._tbb_new_enough()
    monkeypatch.setattr(_dispatch, "_TBB_MIN_INTERFACE", 10**9)
    assert not _dispatch._tbb_new_enough()
    assert not _dispatch._tbb_loadable()
