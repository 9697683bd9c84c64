"""The first run on an install compiles the CPU kernels once and says so first."""

from __future__ import annotations

import os
import subprocess
import sys


def _holds(cache: str, name: str = "_cpu") -> str:
    env = {**os.environ, "NUMBA_CACHE_DIR": cache}
    code = f"from resin.kernels import _numba_cache_holds; print(_numba_cache_holds({name!r}))"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, check=True).stdout.strip()


def test_an_empty_numba_cache_is_seen_as_cold(tmp_path):
    assert _holds(str(tmp_path)) == "False"
    assert _holds(str(tmp_path), "_cpu_resample") == "False"


def test_a_compiled_module_is_seen_as_cached(tmp_path):
    # an index file where Numba's locator looks is what Numba loads from
    from resin.kernels import _numba_cache_holds

    assert _numba_cache_holds("_cpu") in (True, False, None)  # never raises
    folder = subprocess.run(
        [sys.executable, "-c", "import numba.core.caching as c, resin.kernels as k, pathlib;"
         "src = str(pathlib.Path(k.__file__).with_name('_cpu.py'));"
         "f = lambda: None;"
         "print(c.UserProvidedCacheLocator.from_function(f, src).get_cache_path())"],
        env={**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}, capture_output=True, text=True,
        check=True).stdout.strip()
    os.makedirs(folder, exist_ok=True)
    open(os.path.join(folder, "_cpu.accumulate-19.py311.nbi"), "wb").close()
    assert _holds(str(tmp_path)) == "True"
