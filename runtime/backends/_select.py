"""Choosing a backend: by the model file's kind, collecting each failure."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from resin.runtime.backends._base import Backend

from resin import _log
from resin.errors import BackendError, MissingDependencyError, ModelError, UsageError

#: backend name -> (module under resin.runtime.backends, class name)
BACKENDS = {
    "tensorrt": ("tensorrt", "TensorRTBackend"),
    "onnxruntime": ("onnxruntime", "OnnxRuntimeBackend"),
    "torch": ("torch", "TorchBackend"),
}

#: model kind -> backends able to run it, best first
_FOR_KIND = {"plan": ("tensorrt",), "onnx": ("onnxruntime",), "pt": ("torch",)}
_SUFFIX = {".plan": "plan", ".engine": "plan", ".trt": "plan", ".onnx": "onnx", ".pt": "pt",
           ".pth": "pt", ".ckpt": "pt"}


def model_kind(path: str | Path) -> str:
    """'onnx', 'plan' or 'pt' from the model file's suffix; a missing file is a ModelError."""
    path = Path(path)
    kind = _SUFFIX.get(path.suffix.lower())
    if kind is None:
        raise ModelError(f"{path}: unknown model type; use a .onnx, .plan or .pt file")
    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    return kind


def parse_device(device: str) -> str:
    """Check ``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""
    if device in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", device):
        return device
    raise UsageError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")


def _instantiate(name: str) -> Backend:
    module_name, cls_name = BACKENDS[name]
    module = importlib.import_module(f"resin.runtime.backends.{module_name}")
    return getattr(module, cls_name)()


def load_backend(path: str | Path, backend: str = "auto", device: str = "auto", *,
                 allow_plan_host_code: bool = False) -> Backend:
    """Load ``path`` with ``backend`` (or the best one that works) on ``device``.

    A bad model file raises :class:`ModelError` at once; otherwise each backend's failure
    is collected and, if none works, one :class:`BackendError` lists them all.
    ``allow_plan_host_code`` lets a TensorRT plan with host code load (as does
    ``RESIN_ALLOW_PLAN_HOST_CODE=1``): the user trusts that plan like a program.
    """
    engine, reason = choose_backend(path, backend, device,
                                    allow_plan_host_code=allow_plan_host_code)
    _log.debug(reason)
    return engine


def choose_backend(path: str | Path, backend: str = "auto", device: str = "auto", *,
                   allow_plan_host_code: bool = False) -> tuple[Backend, str]:
    """:func:`load_backend`, also returning the line that says which backend and why.

    The caller logs that line once the run's inputs are checked, so that a bad input
    still fails with exactly one line on stderr.
    """
    path = Path(path)
    device = parse_device(device)
    kind = model_kind(path)
    able = _FOR_KIND[kind]
    if backend == "auto":
        names = list(able)
    elif backend in BACKENDS:
        if backend not in able:
            raise UsageError(f"backend {backend} cannot run a .{kind} model ({path.name}); "
                             f"use --backend {' or '.join(able)} or auto")
        names = [backend]
    else:
        raise UsageError(f"unknown backend {backend!r}; use auto, {', '.join(BACKENDS)}")
    failures: list[tuple[str, Exception]] = []
    for name in names:
        try:
            engine = _instantiate(name)
            if allow_plan_host_code and hasattr(engine, "allow_plan_host_code"):
                engine.allow_plan_host_code = True
            engine.load(path, device)
        except ModelError:
            raise
        except Exception as exc:  # noqa: BLE001 - collected and reported together below
            _log.debug(f"backend {name} failed: {type(exc).__name__}: {exc}")
            failures.append((name, exc))
            continue
        if backend != "auto":
            why = "requested"
        else:
            tried = "; ".join(f"{n} failed: {e}" for n, e in failures)
            why = f"best available for a .{kind} model" + (f"; {tried}" if tried else "")
        return engine, f"backend: {engine.name} on {engine.device} ({why})"
    if len(failures) == 1 and isinstance(failures[0][1], MissingDependencyError | UsageError):
        raise failures[0][1]
    listed = "; ".join(f"{n}: {' '.join(str(e).split()) or type(e).__name__}"
                       for n, e in failures)
    raise BackendError(f"no backend could run {path.name}: {listed}")
