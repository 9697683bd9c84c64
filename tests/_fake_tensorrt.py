"""Stand-ins for ``tensorrt`` and ``numba.cuda``, written from their documented Python APIs.

TensorRT cannot be installed where these tests run, so the builder side (``Builder``,
``OnnxParser``, builder config, optimization profile) records what it is asked to do, and
the runtime side (``Runtime``, engine, execution context) behaves as TensorRT 10/11
documents: ``deserialize_cuda_engine`` returns None for bytes it cannot read (and for a
plan with host code unless ``engine_host_code_allowed``), ``set_input_shape`` refuses shapes
outside the profile, ``get_tensor_shape`` gives the output shape once the input's is set,
``set_tensor_address`` takes integer device pointers and ``execute_async_v3`` an integer
stream handle. The numba.cuda stand-in hands out "device" arrays backed by host memory and
streams whose ``handle`` has no ``.value`` (as with NVIDIA's CUDA bindings, the default of
current numba-cuda). With ``FakeCuda(simulator=True)`` (under ``NUMBA_ENABLE_CUDASIM=1``)
its arrays are Numba simulator device arrays that also expose ``__cuda_array_interface__``,
so the runtime's CUDA kernels can blend what the stand-in engine wrote. A stand-in plan is
``MAGIC`` plus a JSON description of the engine.
"""

from __future__ import annotations

import enum
import hashlib
import itertools
import json
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np

MAGIC = b"FAKE-TRT-PLAN"
#: the GPU the stand-in machine has (name, compute capability)
GPU = ("NVIDIA RTX A6000", (8, 6))


def write_plan(plan: Path, data: bytes, record: dict, **trt_info) -> Path:
    """``plan`` with ``data`` and the sidecar ``build_engine`` would write beside it for a
    model whose metadata record is ``record`` (built with TensorRT 10.3.0.26 on :data:`GPU`)."""
    plan.write_bytes(data)
    info = {"version": "10.3.0.26", "gpu_name": GPU[0], "compute_capability": list(GPU[1]),
            "profile": {"min": [1, 1, 2, 2, 2], "opt": [1, 1, 16, 32, 32],
                        "max": [1, 1, 16, 32, 32]},
            "fp16": False, "version_compatible": False, "hardware_compatible": False,
            "host_code": False, "built_at": "2025-01-01T00:00:00+00:00",
            "onnx_sha256": "0" * 64, "plan_sha256": hashlib.sha256(data).hexdigest()}
    info.update(trt_info)
    Path(str(plan) + ".json").write_text(json.dumps({**record, "tensorrt": info}))
    return plan


def fake_plan_bytes(*, input_dtype: str = "float32", output_dtype: str | None = None,
                    scale=(1, 1, 1), min_tile=(2, 2, 2), max_tile=(64, 64, 64),
                    host_code: bool = False, context_fails: bool = False,
                    output_scale=None) -> bytes:
    """A plan the stand-in runtime deserializes: an engine computing ``2 * upsample(x)``.

    ``output_scale`` makes the engine's output shape disagree with ``scale`` (a broken plan).
    """
    spec = {"input_dtype": input_dtype, "output_dtype": output_dtype or input_dtype,
            "scale": list(scale), "output_scale": list(output_scale or scale),
            "min": list(min_tile), "max": list(max_tile), "host_code": host_code,
            "context_fails": context_fails}
    return MAGIC + json.dumps(spec).encode()


def install(monkeypatch, cuda: FakeCuda):
    """Put the stand-in TensorRT 10.3.0.26 and ``cuda`` under the TensorRT backend (its
    ``require``, ``sys.modules``) on a machine with :data:`GPU`; returns the trt module."""
    import importlib
    import sys

    from resin.runtime.backends import tensorrt as backend_mod

    from resin import tensorrt_plan

    monkeypatch.delenv(backend_mod.HOST_CODE_ENV, raising=False)
    trt = make_fake_tensorrt(version="10.3.0.26", cuda=cuda)
    stand_ins = {"tensorrt": trt, "numba.cuda": cuda}
    monkeypatch.setattr(backend_mod, "require",
                        lambda name, *a, **k: stand_ins.get(name) or importlib.import_module(name))
    monkeypatch.setattr(tensorrt_plan, "current_gpu", lambda: GPU)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    return trt


def make_fake_tensorrt(version: str = "10.8.0.43", *, fp16_flag: bool = True,
                       strongly_typed: bool = True, cuda: FakeCuda | None = None) -> ModuleType:
    """The TensorRT 10 Python API pieces resin uses; records every builder call.

    ``cuda`` is the numba.cuda stand-in whose arrays and streams the engine runs on.
    """
    trt = ModuleType("tensorrt")
    trt.__version__ = version
    trt.calls = SimpleNamespace(parse_errors=[], build_fails=False, runtimes=[], executed=[])

    class ILogger:
        Severity = enum.Enum("Severity", "INTERNAL_ERROR ERROR WARNING INFO VERBOSE")

        def __init__(self):
            pass

    # -- builder -------------------------------------------------------------------------

    creation = {"EXPLICIT_BATCH": 0}
    if strongly_typed:
        creation["STRONGLY_TYPED"] = 5
    flags = {"VERSION_COMPATIBLE": 13, **({"FP16": 0} if fp16_flag else {})}

    class Network:
        def __init__(self, flags):
            self.flags, self.num_inputs = flags, 1

        def get_input(self, i):
            return SimpleNamespace(name="input")

    class TimingCache:
        def __init__(self, data):
            self.data = bytes(data)

        def serialize(self):
            return self.data + b"+timings"

    class Config:
        def __init__(self):
            self.pools, self.flags, self.profiles = {}, set(), []
            self.builder_optimization_level = 3
            self.hardware_compatibility_level = None
            self.cache = None

        def set_memory_pool_limit(self, pool, size):
            self.pools[pool] = size

        def set_flag(self, flag):
            self.flags.add(flag)

        def add_optimization_profile(self, profile):
            self.profiles.append(profile)
            return len(self.profiles) - 1

        def create_timing_cache(self, data):
            return TimingCache(data)

        def set_timing_cache(self, cache, ignore_mismatch):
            self.cache = cache
            return True

        def get_timing_cache(self):
            return self.cache

    class Profile:
        def set_shape(self, name, lo, opt, hi):
            self.shapes = {name: (tuple(lo), tuple(opt), tuple(hi))}

    class Builder:
        def __init__(self, logger):
            assert isinstance(logger, ILogger), "TensorRT takes an ILogger"
            self.logger = logger

        def create_network(self, flags):
            trt.calls.network = Network(flags)
            return trt.calls.network

        def create_builder_config(self):
            trt.calls.config = Config()
            return trt.calls.config

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            if trt.calls.build_fails:
                self.logger.log(ILogger.Severity.ERROR, "out of device memory")
                return None
            return b"serialized engine"

    class OnnxParser:
        def __init__(self, network, logger):
            self.errors = trt.calls.parse_errors

        def parse_from_file(self, path):
            trt.calls.parsed = path
            return not self.errors

        @property
        def num_errors(self):
            return len(self.errors)

        def get_error(self, i):
            return SimpleNamespace(desc=lambda: self.errors[i])

    # -- runtime -------------------------------------------------------------------------

    DataType = enum.Enum("DataType", "FLOAT HALF INT8 INT32 BOOL")
    numpy_of = {DataType.FLOAT: np.float32, DataType.HALF: np.float16}
    of_numpy = {np.dtype(v): k for k, v in numpy_of.items()}

    def nptype(dtype):
        return numpy_of[dtype]

    class Context:
        def __init__(self, engine):
            self.engine, self.shapes, self.addresses = engine, {}, {}

        def set_input_shape(self, name, shape):
            assert name == "input"
            shape = tuple(int(n) for n in shape)
            lo, hi = self.engine.spec["min"], self.engine.spec["max"]
            if len(shape) != 5 or shape[:2] != (1, 1) or any(
                    not a <= n <= b for a, n, b in zip(lo, shape[2:], hi, strict=True)):
                return False
            self.shapes["input"] = shape
            return True

        def get_tensor_shape(self, name):
            if "input" not in self.shapes:
                return (-1, -1, -1, -1, -1)
            shape = self.shapes["input"]
            if name == "input":
                return shape
            s = self.engine.spec["output_scale"]
            return (*shape[:2], *(n * f for n, f in zip(shape[2:], s, strict=True)))

        def set_tensor_address(self, name, address):
            assert type(address) is int, f"set_tensor_address takes an int, got {address!r}"
            self.addresses[name] = address
            return True

        def execute_async_v3(self, stream_handle):
            assert type(stream_handle) is int, f"a stream handle is an int, got {stream_handle!r}"
            assert cuda is not None and stream_handle in cuda.streams, "not a live stream"
            x = cuda.memory[self.addresses["input"]]
            y = cuda.memory[self.addresses["output"]]
            spec = self.engine.spec
            assert x.shape == self.shapes["input"] and x.dtype == np.dtype(spec["input_dtype"])
            assert y.shape == self.get_tensor_shape("output")
            assert y.dtype == np.dtype(spec["output_dtype"])
            up = x.astype(np.float32)
            for axis, f in zip((2, 3, 4), spec["scale"], strict=True):
                up = np.repeat(up, f, axis=axis)
            y[...] = (2 * up).astype(y.dtype)
            trt.calls.executed.append((stream_handle, x.shape))
            return True

    class Engine:
        num_io_tensors = 2

        def __init__(self, spec):
            self.spec = spec

        def get_tensor_name(self, i):
            return ("input", "output")[i]

        def get_tensor_dtype(self, name):
            return of_numpy[np.dtype(self.spec[f"{name}_dtype"])]

        def create_execution_context(self):
            return None if self.spec["context_fails"] else Context(self)

    class Runtime:
        def __init__(self, logger):
            assert isinstance(logger, ILogger), "TensorRT takes an ILogger"
            self.logger = logger
            self.engine_host_code_allowed = False
            trt.calls.runtimes.append(self)

        def deserialize_cuda_engine(self, data):
            data = bytes(data)
            if not data.startswith(MAGIC):
                self.logger.log(ILogger.Severity.ERROR, "IRuntime::deserializeCudaEngine: "
                                "Error Code 1: Serialization (magic tag does not match)")
                return None
            spec = json.loads(data[len(MAGIC):])
            if spec["host_code"] and not self.engine_host_code_allowed:
                self.logger.log(ILogger.Severity.ERROR, "the plan contains host code, which "
                                "is not allowed")
                return None
            return Engine(spec)

    trt.ILogger, trt.Builder, trt.OnnxParser = ILogger, Builder, OnnxParser
    trt.Runtime, trt.DataType, trt.nptype = Runtime, DataType, nptype
    trt.NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag", creation)
    trt.BuilderFlag = enum.IntEnum("BuilderFlag", flags)
    trt.MemoryPoolType = enum.IntEnum("MemoryPoolType", {"WORKSPACE": 0})
    trt.HardwareCompatibilityLevel = enum.IntEnum("HardwareCompatibilityLevel",
                                                  {"NONE": 0, "AMPERE_PLUS": 1})
    return trt


class _Handle:
    """A CUDA handle as NVIDIA's bindings give it: an int by ``int()``, no ``.value``."""

    def __init__(self, value: int):
        self._value = value

    def __int__(self):
        return self._value


class FakeDeviceArray:
    """A "device" array backed by host memory, reachable through its pointer."""

    def __init__(self, cuda: FakeCuda, host: np.ndarray):
        self._host = host
        self.shape, self.dtype = host.shape, host.dtype
        cuda.memory[host.ctypes.data] = host

    @property
    def device_ctypes_pointer(self):
        return _Handle(self._host.ctypes.data)

    @property
    def __cuda_array_interface__(self):
        return {"shape": self.shape, "typestr": self.dtype.str, "strides": None,
                "data": (self._host.ctypes.data, False), "version": 3}

    def copy_to_host(self, stream=0):
        return self._host.copy()


_SIM_ARRAY: list[type] = []


def _simulator_array(cuda: FakeCuda, host: np.ndarray):
    """A Numba CUDA-simulator device array over ``host``, reachable through its pointer."""
    if not _SIM_ARRAY:
        from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

        class SimDeviceArray(FakeCUDAArray):
            @property
            def __cuda_array_interface__(self):
                return {"shape": self._ary.shape, "typestr": self._ary.dtype.str,
                        "strides": None, "data": (self._ary.ctypes.data, False),
                        "version": 3}

        _SIM_ARRAY.append(SimDeviceArray)
    cuda.memory[host.ctypes.data] = host
    return _SIM_ARRAY[0](host)


class FakeStream:
    def __init__(self, cuda: FakeCuda, value: int):
        self.handle = _Handle(value)
        self._cuda = cuda
        cuda.streams.add(value)

    def __int__(self):
        return int(self.handle)

    def synchronize(self):
        self._cuda.synchronized += 1


class FakeCuda:
    """The numba.cuda functions the TensorRT backend calls."""

    def __init__(self, available: bool = True, simulator: bool = False):
        self.available = available
        #: hand out Numba CUDA-simulator arrays (NUMBA_ENABLE_CUDASIM=1 only)
        self.simulator = simulator
        self.memory: dict[int, np.ndarray] = {}
        self.streams: set[int] = set()
        self.selected: int | None = None
        self.synchronized = 0
        self._ids = itertools.count(0x7F00)

    def is_available(self):
        return self.available

    def select_device(self, index):
        self.selected = index

    def stream(self):
        return FakeStream(self, next(self._ids))

    def _array(self, host: np.ndarray):
        if self.simulator:
            return _simulator_array(self, host)
        return FakeDeviceArray(self, host)

    def to_device(self, array, stream=0):
        return self._array(np.array(array, copy=True))

    def device_array(self, shape, dtype, stream=0):
        host = np.empty(shape, dtype)
        if host.dtype.kind == "f":
            host.fill(np.nan)  # what TensorRT does not write shows
        return self._array(host)
