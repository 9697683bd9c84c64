"""Inference backends behind one interface (:class:`resin.runtime.backends._base.Backend`).

Each backend lives in its own module and is imported only when chosen, so the runtime
never needs torch, onnx or tensorrt unless the user picks a backend that uses them.
"""

from resin.runtime.backends._select import BACKENDS, choose_backend, load_backend, model_kind

__all__ = ["BACKENDS", "choose_backend", "load_backend", "model_kind"]
