"""TensorRT backend: a serialized ``.plan`` engine plus its ``<plan>.json`` sidecar.

A plan only runs on the TensorRT version and GPU it was built for; the sidecar says which,
and :func:`resin.export.check_plan_compatible` turns a mismatch into one clear ModelError
(exit 2) before deserializing. Buffers are Numba CUDA device arrays, so the blend kernels
can read a tile's output where TensorRT wrote it (:meth:`TensorRTBackend.infer_device`).
TensorRT 10/11 API: ``deserialize_cuda_engine``, ``create_execution_context``,
``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from resin._optional import require
from resin.errors import BackendError, ModelError
from resin.metadata import ModelMetadata


class TensorRTBackend:
    name = "tensorrt"

    def __init__(self) -> None:
        self.device = "cuda"
        self.metadata: ModelMetadata
        self._engine: Any = None
        self._context: Any = None
        self._stream: Any = None
        self._cuda: Any = None
        self._dtype: np.dtype = np.dtype(np.float32)

    def load(self, path: Path, device: str) -> ModelMetadata:
        if device == "cpu":
            raise BackendError("TensorRT needs a CUDA GPU; use an .onnx model with --device cpu")
        trt = require("tensorrt", "the TensorRT backend", extra="gpu")
        numba_cuda = require("numba.cuda", "the TensorRT backend", extra="gpu")
        if not numba_cuda.is_available():
            raise BackendError("no CUDA GPU is available for TensorRT")
        if ":" in device:
            numba_cuda.select_device(int(device.split(":")[1]))
        export = require("resin.export", "checking a TensorRT plan", extra="export")
        # sidecar present, record valid, TensorRT version and GPU match: else one ModelError
        self.metadata = export.check_plan_compatible(path)
        built = (self.metadata.model_extra or {}).get("tensorrt", {})
        logger = trt.Logger(trt.Logger.ERROR)
        runtime = trt.Runtime(logger)
        if built.get("version_compatible"):
            # a version-compatible plan carries its own lean runtime (host code) to load
            runtime.engine_host_code_allowed = True
        engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise ModelError(f"{path}: TensorRT could not deserialize this plan; rebuild it "
                             "on this machine with `resin export --trt`")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        if sorted(names) != ["input", "output"]:
            raise ModelError(f"{path}: expected tensors 'input' and 'output', got {names}")
        self._dtype = np.dtype(trt.nptype(engine.get_tensor_dtype("input")))
        self._engine = engine
        self._context = engine.create_execution_context()
        self._cuda = numba_cuda
        self._stream = numba_cuda.stream()
        self.device = device if device.startswith("cuda") else "cuda"
        return self.metadata

    def _output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        s = self.metadata.scale
        return (shape[0], shape[1], int(shape[2] * s[0]), int(shape[3] * s[1]),
                int(shape[4] * s[2]))

    def infer_device(self, x_dev: Any) -> Any:
        """Run on a device array ``(1, 1, Z, Y, X)`` of the plan's input dtype; device out."""
        if self._context is None:
            raise BackendError("the TensorRT engine is closed")
        ctx = self._context
        if not ctx.set_input_shape("input", tuple(x_dev.shape)):
            raise BackendError(f"tile shape {tuple(x_dev.shape)} is outside the plan's "
                               "optimization profile; pass a --tile within it")
        out = self._cuda.device_array(self._output_shape(tuple(x_dev.shape)), dtype=self._dtype,
                                      stream=self._stream)
        ctx.set_tensor_address("input", x_dev.device_ctypes_pointer.value)
        ctx.set_tensor_address("output", out.device_ctypes_pointer.value)
        if not ctx.execute_async_v3(self._stream.handle.value):
            raise BackendError("TensorRT failed to run the tile")
        return out

    def infer(self, tile: np.ndarray) -> np.ndarray:
        x = self._cuda.to_device(np.ascontiguousarray(tile, dtype=self._dtype),
                                 stream=self._stream) if self._cuda else None
        if x is None:
            raise BackendError("the TensorRT engine is closed")
        out = self.infer_device(x).copy_to_host(stream=self._stream)
        self._stream.synchronize()
        return np.asarray(out, dtype=np.float32)

    def close(self) -> None:
        self._context = None
        self._engine = None
        self._stream = None
