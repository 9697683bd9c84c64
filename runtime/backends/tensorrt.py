"""TensorRT backend: a serialized ``.plan`` engine plus its ``<plan>.json`` sidecar.

A plan only runs on the TensorRT version and GPU it was built for; the sidecar says which,
and :func:`resin.tensorrt_plan.check_plan_compatible` turns a mismatch, or plan bytes that are not
the ones the sidecar describes, into one clear ModelError (exit 2) before deserializing.
A plan with host code (built ``--version-compatible --allow-plan-host-code``: TensorRT's
lean runtime, which runs in this process) loads only with the user's permission
(``RESIN_ALLOW_PLAN_HOST_CODE=1`` or ``allow_plan_host_code``).

The engine itself says what it takes and gives: the input and output dtypes
(``get_tensor_dtype``) and, once the tile's shape is set, the output shape
(``get_tensor_shape``); both are checked against the metadata record. Buffers are Numba
CUDA device arrays, so the blend kernels can read a tile's output where TensorRT wrote it
(:meth:`TensorRTBackend.infer_device`); they and the stream reach TensorRT as plain
integers (``__cuda_array_interface__``, ``int(stream)``), which every Numba CUDA version
and binding gives. The runtime's GPU-resident path (:mod:`resin.runtime.device`) queues its
kernels on :attr:`TensorRTBackend.device_stream` behind TensorRT's work. TensorRT's messages go to the ``resin`` logger. TensorRT 10/11 API:
``deserialize_cuda_engine``, ``create_execution_context``, ``set_input_shape``,
``get_tensor_shape``, ``set_tensor_address``, ``execute_async_v3``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from resin.runtime.backends._base import cuda_memory_info

from resin._optional import require
from resin._tensorrt_log import tensorrt_logger
from resin.errors import BackendError, ModelError
from resin.metadata import ModelMetadata

#: set to 1 to load plans that carry host code (trusting them like a program)
HOST_CODE_ENV = "RESIN_ALLOW_PLAN_HOST_CODE"
_REBUILD = "rebuild it with `resin export MODEL.pt --trt`"


def _address(device_array: Any) -> int:
    """The device pointer of a CUDA array as an int (``device_ctypes_pointer`` differs
    between Numba's ctypes and NVIDIA bindings; the array interface does not)."""
    return int(device_array.__cuda_array_interface__["data"][0])


def _dims(shape: Any) -> tuple[int, ...]:
    return tuple(int(n) for n in shape)


class TensorRTBackend:
    name = "tensorrt"

    def __init__(self, allow_plan_host_code: bool | None = None) -> None:
        self.device = "cuda"
        self.metadata: ModelMetadata
        #: load plans with host code; default: the RESIN_ALLOW_PLAN_HOST_CODE variable
        self.allow_plan_host_code = (os.environ.get(HOST_CODE_ENV) == "1"
                                     if allow_plan_host_code is None else allow_plan_host_code)
        self._logger: Any = None
        self._runtime: Any = None
        self._engine: Any = None
        self._context: Any = None
        self._stream: Any = None
        self._cuda: Any = None
        self._in_dtype: np.dtype = np.dtype(np.float32)
        self._out_dtype: np.dtype = np.dtype(np.float32)

    def load(self, path: Path, device: str) -> ModelMetadata:
        if device == "cpu":
            raise BackendError("TensorRT needs a CUDA GPU; use an .onnx model with --device cpu")
        trt = require("tensorrt", "the TensorRT backend", extra="gpu")
        numba_cuda = require("numba.cuda", "the TensorRT backend", extra="gpu")
        if not numba_cuda.is_available():
            raise BackendError("no CUDA GPU is available for TensorRT")
        if ":" in device:
            numba_cuda.select_device(int(device.split(":")[1]))
        from resin import tensorrt_plan

        data = path.read_bytes()
        # sidecar present and valid, these very bytes, TensorRT version and GPU: else ModelError
        self.metadata = tensorrt_plan.check_plan_compatible(path, plan_bytes=data)
        host_code = tensorrt_plan.plan_has_host_code(
            (self.metadata.model_extra or {})["tensorrt"])
        if host_code and not self.allow_plan_host_code:
            raise ModelError(f"{path}: the plan carries TensorRT host code (built "
                             "--version-compatible), which runs inside this program; if you "
                             f"trust the plan like a program, set {HOST_CODE_ENV}=1, else "
                             f"{_REBUILD} without --version-compatible")
        self._logger = tensorrt_logger(trt)
        self._runtime = trt.Runtime(self._logger)
        # only a plan the user allowed may load code; TensorRT refuses it otherwise
        self._runtime.engine_host_code_allowed = bool(host_code)
        engine = self._runtime.deserialize_cuda_engine(data)
        if engine is None:
            raise ModelError(f"{path}: TensorRT could not deserialize this plan "
                             f"({self._why()}); {_REBUILD} on this machine")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        if sorted(names) != ["input", "output"]:
            raise ModelError(f"{path}: expected tensors 'input' and 'output', got {names}")
        self._in_dtype = self._engine_dtype(trt, engine, "input", self.metadata.input_dtype, path)
        self._out_dtype = self._engine_dtype(trt, engine, "output", self.metadata.output_dtype,
                                             path)
        context = engine.create_execution_context()
        if context is None:
            raise BackendError(f"TensorRT could not create an execution context for {path.name} "
                               f"({self._why('usually too little free GPU memory')}); close other "
                               "programs on the GPU or use a plan built with a smaller --max-tile")
        self._engine, self._context, self._cuda = engine, context, numba_cuda
        self._stream = numba_cuda.stream()
        self.device = device if device.startswith("cuda") else "cuda"
        return self.metadata

    def _why(self, default: str = "no details") -> str:
        errors = getattr(self._logger, "errors", None)
        return errors[-1] if errors else default

    @staticmethod
    def _engine_dtype(trt: Any, engine: Any, name: str, recorded: str, path: Path) -> np.dtype:
        """The engine's dtype of tensor ``name``; ModelError unless the record says the same."""
        dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
        if dtype != np.dtype(recorded):
            raise ModelError(f"{path}: the plan's {name} is {dtype}, but its sidecar records "
                             f"{recorded}; the two do not belong together, {_REBUILD}")
        return dtype

    def _output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The output shape the metadata's scale promises for an input of ``shape``."""
        s = self.metadata.scale
        return (shape[0], shape[1], int(shape[2] * s[0]), int(shape[3] * s[1]),
                int(shape[4] * s[2]))

    @property
    def device_resident(self) -> bool:
        """A loaded plan's outputs are device arrays the blend kernels can read."""
        return self._context is not None

    @property
    def device_stream(self) -> Any:
        """The stream TensorRT runs on: work queued on it sees a finished output."""
        return self._stream

    def infer_device(self, x_dev: Any) -> Any:
        """Run on a tile ``(1, 1, Z, Y, X)``: a host array (copied to the device in the
        plan's input dtype) or a device array of that dtype. The output stays on the
        device, complete in :attr:`device_stream` order."""
        if self._context is None:
            raise BackendError("the TensorRT engine is closed")
        if isinstance(x_dev, np.ndarray):
            x_dev = self._cuda.to_device(np.ascontiguousarray(x_dev, dtype=self._in_dtype),
                                         stream=self._stream)
        ctx = self._context
        shape = _dims(x_dev.shape)
        if np.dtype(x_dev.dtype) != self._in_dtype:
            raise BackendError(f"the plan takes {self._in_dtype} tiles, got {x_dev.dtype}")
        if not ctx.set_input_shape("input", shape):
            raise BackendError(f"tile shape {shape} is outside the plan's optimization profile; "
                               "pass a --tile within it")
        out_shape = _dims(ctx.get_tensor_shape("output"))
        if out_shape != self._output_shape(shape):
            raise ModelError(f"the plan gives an output of shape {out_shape} for a tile of "
                             f"{shape}, but its sidecar's scale {tuple(self.metadata.scale)} "
                             f"says {self._output_shape(shape)}; {_REBUILD}")
        out = self._cuda.device_array(out_shape, dtype=self._out_dtype, stream=self._stream)
        ctx.set_tensor_address("input", _address(x_dev))
        ctx.set_tensor_address("output", _address(out))
        if not ctx.execute_async_v3(int(self._stream)):
            raise BackendError(f"TensorRT failed to run a tile of {shape} ({self._why()})")
        return out

    def device_memory(self) -> tuple[int, int] | None:
        """(free, total) bytes of the CUDA device this engine runs on (through Numba), or
        None on the CPU or without Numba's CUDA."""
        if not self.device.startswith("cuda"):
            return None
        return cuda_memory_info(self.device)

    def infer(self, tile: np.ndarray) -> np.ndarray:
        if self._context is None:
            raise BackendError("the TensorRT engine is closed")
        out = self.infer_device(tile).copy_to_host(stream=self._stream)
        self._stream.synchronize()
        return np.asarray(out, dtype=np.float32)

    def close(self) -> None:
        # the context before the engine before the runtime, as TensorRT wants them released
        self._context = None
        self._engine = None
        self._runtime = None
        self._stream = None
