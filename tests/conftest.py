"""Shared fixtures and marker handling.

``gpu`` tests skip themselves without a CUDA GPU; ``trt`` tests without TensorRT.
Tiny synthetic volumes (16x32x32) come from fixtures, never from downloads.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def _has_cuda() -> bool:
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return False
    try:
        from numba import cuda

        return bool(cuda.is_available())
    except Exception:
        return False


def pytest_collection_modifyitems(config, items):
    has_trt = importlib.util.find_spec("tensorrt") is not None
    has_gpu = None
    for item in items:
        if "trt" in item.keywords and not has_trt:
            item.add_marker(pytest.mark.skip(reason="TensorRT is not installed"))
        if "gpu" in item.keywords:
            if has_gpu is None:
                has_gpu = _has_cuda()
            if not has_gpu:
                item.add_marker(pytest.mark.skip(reason="no CUDA GPU"))


@pytest.fixture(autouse=True)
def _user_cache(tmp_path_factory, monkeypatch) -> Path:
    """Each test (and each CLI it starts) gets its own empty resin user cache."""
    folder = tmp_path_factory.mktemp("user-cache")
    monkeypatch.setenv("RESIN_CACHE_DIR", str(folder))
    return folder


@pytest.fixture(autouse=True)
def _library_logging(monkeypatch) -> None:
    """A test that runs a CLI in-process configures the 'resin' logger for a console; undo
    that afterwards so later tests see the library's own logging (caplog included)."""
    from resin import _log

    monkeypatch.setattr(_log, "_state", dict(_log._state))
    monkeypatch.setattr(_log.logger, "handlers", list(_log.logger.handlers))
    monkeypatch.setattr(_log.logger, "propagate", _log.logger.propagate)
    monkeypatch.setattr(_log.logger, "level", _log.logger.level)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def tiny_volume(rng) -> np.ndarray:
    """A 16x32x32 uint16 volume with a few bright blobs on a noisy background."""
    vol = rng.poisson(100, size=(16, 32, 32)).astype(np.float32)
    zz, yy, xx = np.mgrid[0:16, 0:32, 0:32]
    for cz, cy, cx in ((8, 10, 12), (5, 20, 25), (11, 25, 6)):
        vol += 2000 * np.exp(-((zz - cz) ** 2 / 8 + (yy - cy) ** 2 / 2 + (xx - cx) ** 2 / 2))
    return vol.astype(np.uint16)


def run_cli(*args: str, cwd: str | os.PathLike | None = None, env: dict | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python -m resin ...`` / ``resin-run`` style entry points in a subprocess."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd,
                          env=full_env, timeout=timeout)


@pytest.fixture
def cli():
    """``cli("resin", "simulate", ...)`` or ``cli("resin-run", ...)`` -> CompletedProcess."""

    def _cli(prog: str, *args: str, **kw) -> subprocess.CompletedProcess:
        module = {"resin": "resin.cli", "resin-run": "resin.runtime.cli"}[prog]
        return run_cli("-c", f"import sys; from {module} import main; sys.exit(main())",
                       *args, **kw)

    return _cli


def assert_one_line_error(proc: subprocess.CompletedProcess, code: int = 2) -> str:
    """The agreed failure shape: exit code, one line on stderr, no traceback."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]
