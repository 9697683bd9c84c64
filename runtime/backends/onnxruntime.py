"""ONNX Runtime backend: CPU EP, or the TensorRT / CUDA EPs when onnxruntime-gpu has them.

The model's metadata is read with onnxruntime itself (``custom_metadata_map["resin"]``),
never with the onnx package. On CUDA, tiles go through IO binding so input and output
buffers are bound once per shape instead of being copied by ``run``; ``infer_device`` binds
the output to a Numba device array, so the runtime can blend it on the GPU.

The TensorRT EP keeps its engines in resin's user cache (one folder per model content
hash), so only the first session builds one; a model with a bounded tile range gives the
EP that range as its profile. ONNX Runtime retries a session whose EP failed to start
with other providers and without their options (so on device 0), printing the reason on
stdout: the backend captures that text and refuses to run anywhere but where it was asked.
"""

from __future__ import annotations

import contextlib
import io
from importlib import metadata as dist_metadata
from pathlib import Path
from typing import Any

import numpy as np
from resin.runtime.backends._base import cuda_memory_info

from resin import _log
from resin._cache import cache_dir, file_sha256
from resin._optional import require
from resin.errors import BackendError, ModelError
from resin.metadata import METADATA_KEY, ModelMetadata

_TRT, _CUDA, _CPU = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"
_GPU_PROVIDERS = (_TRT, _CUDA)
_GPU_FIX = ("check that the CUDA 12 and cuDNN 9 libraries onnxruntime-gpu needs are installed "
            "(and TensorRT 10 for its TensorRT provider), or use --device cpu")


def _installed(dist: str) -> bool:
    try:
        dist_metadata.version(dist)
    except dist_metadata.PackageNotFoundError:
        return False
    return True


def no_cuda_provider_reason() -> str:
    """Why this onnxruntime offers no CUDA provider, and what to do, as one sentence's end."""
    if _installed("onnxruntime") and _installed("onnxruntime-gpu"):
        return ("both onnxruntime and onnxruntime-gpu are installed and overwrite each other's "
                "files; run pip uninstall -y onnxruntime onnxruntime-gpu, then pip install "
                "'resin[gpu]'")
    if _installed("onnxruntime-gpu"):
        return f"the installed onnxruntime-gpu lists no CUDA provider; {_GPU_FIX}"
    return ("the installed onnxruntime is the CPU build; run pip uninstall -y onnxruntime, then "
            "pip install 'resin[gpu]' (onnxruntime-gpu), or use --device cpu")


def _device_index(device: str) -> int:
    return int(device.split(":")[1]) if ":" in device else 0


def _shape_list(shape: tuple[int, ...]) -> str:
    return "input:" + "x".join(str(int(n)) for n in shape)


def tensorrt_provider_options(path: Path, meta: ModelMetadata, device_id: int) -> dict[str, Any]:
    """The TensorRT EP's options: device, engine and timing caches, the tile profile if bounded.

    Without a profile (a dynamic model) the EP builds an engine for the first tile shape it
    sees and caches that one.
    """
    folder = cache_dir("onnxruntime-tensorrt", file_sha256(path)[:32])
    folder.mkdir(parents=True, exist_ok=True)
    options: dict[str, Any] = {
        "device_id": device_id,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(folder),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(folder),
    }
    bounds = meta.tile_range()
    if bounds is not None:
        for key, tile in zip(("min", "opt", "max"), bounds, strict=True):
            options[f"trt_profile_{key}_shapes"] = _shape_list((1, 1, *tile))
    return options


def _record(session: Any, path: Path) -> ModelMetadata:
    text = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    if text is None:
        raise ModelError(f"{path}: not a resin model (no '{METADATA_KEY}' metadata); "
                         "export it with `resin export`")
    return ModelMetadata.from_json(text, source=str(path))


def _fallback_note(printed: str) -> str:
    """ONNX Runtime's own words on a failed provider (it prints them), as one short clause."""
    lines = [" ".join(line.split()) for line in printed.splitlines()]
    said = next((line for line in lines if line.startswith("EP Error")), "")
    return said[:240] or "no reason given"


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self) -> None:
        self.device = "cpu"
        self.metadata: ModelMetadata
        self._session = None
        self._provider = _CPU
        self._in_dtype: np.dtype = np.dtype(np.float32)
        self._out_dtype: np.dtype = np.dtype(np.float32)
        self._cuda: Any = None
        #: outputs stay on the GPU once the session's own run has finished
        self.device_stream: Any = None

    def _gpu_providers(self, ort: Any, device: str) -> list[str]:
        """The GPU providers to ask for on ``device`` ([] on the CPU)."""
        available = set(ort.get_available_providers())
        gpu = [p for p in _GPU_PROVIDERS if p in available]
        if device == "cpu":
            return []
        if device.startswith("cuda") and not gpu:
            raise BackendError(f"device {device} needs ONNX Runtime's CUDA provider, but "
                               f"{no_cuda_provider_reason()}")
        if device == "auto" and not gpu:
            _log.debug("onnxruntime: no CUDA/TensorRT execution provider, using the CPU")
        return gpu

    def _session_for(self, ort: Any, path: Path, providers: list, options: Any) -> tuple[Any, str]:
        """A session, and whatever ONNX Runtime printed while making it (its fallback notice)."""
        printed = io.StringIO()
        try:
            with contextlib.redirect_stdout(printed):
                session = ort.InferenceSession(str(path), sess_options=options,
                                               providers=providers)
        except BackendError:
            raise
        except Exception as exc:
            raise ModelError(f"{path}: not a loadable ONNX model "
                             f"({' '.join(str(exc).split())[:200]})") from exc
        return session, printed.getvalue()

    def load(self, path: Path, device: str) -> ModelMetadata:
        ort = require("onnxruntime", "the ONNX Runtime backend; on an NVIDIA GPU install "
                      "'resin[gpu]' instead", extra="cpu")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # memory patterns pre-plan one buffer per shape: for a 108x156x156 tile of the bundled
        # model that raised peak memory from 451 to 781 MB, for no speed (bench/runtime.py)
        options.enable_mem_pattern = False
        # the CPU memory arena stays on: off, the default 188x216x300 tile's peak fell from
        # 1941 to 1704 MB but each call took 1.3x as long (6.7-7.0 s against 5.0-5.6 s)
        gpu = self._gpu_providers(ort, device)
        index = _device_index(device)
        requested: list = []
        if _TRT in gpu:
            # the EP's profile comes from the record, so read it first (a CPU session, cheap)
            probe, _ = self._session_for(ort, path, [_CPU], None)
            trt_options = tensorrt_provider_options(path, _record(probe, path), index)
            del probe
            requested.append((_TRT, trt_options))
        if _CUDA in gpu:
            requested.append((_CUDA, {"device_id": index}))
        session, printed = self._session_for(ort, path, [*requested, _CPU], options)
        # a provider failing later, in run(), must not silently move the work either
        session.disable_fallback()
        self.metadata = _record(session, path)
        inputs = [i.name for i in session.get_inputs()]
        outputs = [o.name for o in session.get_outputs()]
        if inputs != ["input"] or outputs != ["output"]:
            raise ModelError(f"{path}: expected one input 'input' and one output 'output', "
                             f"got {inputs} -> {outputs}")
        self._in_dtype = np.dtype(np.float16 if "float16" in session.get_inputs()[0].type
                                  else np.float32)
        self._out_dtype = np.dtype(np.float16 if "float16" in session.get_outputs()[0].type
                                   else np.float32)
        self._provider = session.get_providers()[0]
        self.device = self._check_in_use(session, gpu, device, printed)
        self._session = session
        _log.debug(f"onnxruntime providers: {session.get_providers()}")
        return self.metadata

    def _check_in_use(self, session: Any, gpu: list[str], device: str, printed: str) -> str:
        """The device the session really runs on; BackendError if not the one asked for."""
        used = session.get_providers()[0]
        if not gpu:
            return "cpu"
        why = _fallback_note(printed)
        if used == _CPU:
            if device == "auto":
                _log.warn(f"onnxruntime: the GPU providers failed, running on the CPU ({why})")
                return "cpu"
            raise BackendError(f"ONNX Runtime could not start {gpu[0]} on {device} and fell "
                               f"back to the CPU ({why}); {_GPU_FIX}")
        index = _device_index(device)
        in_use = int(session.get_provider_options().get(used, {}).get("device_id", 0))
        if in_use != index:
            raise BackendError(f"ONNX Runtime runs {used} on cuda:{in_use}, not on cuda:{index} "
                               f"as asked ({why}); "
                               f"{_GPU_FIX}")
        if used != gpu[0]:
            _log.warn(f"onnxruntime: {gpu[0]} failed, running on {used} ({why})")
        return device if device.startswith("cuda") else "cuda"

    def infer(self, tile: np.ndarray) -> np.ndarray:
        if self._session is None:
            raise BackendError("the ONNX Runtime engine is closed")
        x = np.ascontiguousarray(tile, dtype=self._in_dtype)
        if self.device == "cpu":
            out = self._session.run(["output"], {"input": x})[0]
        else:
            binding = self._session.io_binding()
            binding.bind_cpu_input("input", x)
            binding.bind_output("output", "cuda", _device_index(self.device))
            self._session.run_with_iobinding(binding)
            out = binding.copy_outputs_to_cpu()[0]
        return np.asarray(out, dtype=np.float32)

    @property
    def device_resident(self) -> bool:
        """On a CUDA provider with Numba's CUDA available, outputs can stay on the GPU."""
        if self._session is None or self.device == "cpu":
            return False
        if self._cuda is None:
            try:
                from numba import cuda
            except ImportError:
                return False
            if not cuda.is_available():
                return False
            if ":" in self.device:
                cuda.select_device(_device_index(self.device))
            self._cuda = cuda
        return True

    def infer_device(self, tile: np.ndarray) -> Any:
        """Run one host tile with its output bound to a Numba device array (IO binding's
        ``bind_output`` to that buffer); the output stays on the GPU."""
        if self._session is None:
            raise BackendError("the ONNX Runtime engine is closed")
        if not self.device_resident:
            raise BackendError("ONNX Runtime runs on the CPU here; its outputs are host arrays")
        x = np.ascontiguousarray(tile, dtype=self._in_dtype)
        s = self.metadata.scale
        shape = (x.shape[0], x.shape[1], int(x.shape[2] * s[0]), int(x.shape[3] * s[1]),
                 int(x.shape[4] * s[2]))
        out = self._cuda.device_array(shape, dtype=self._out_dtype)
        binding = self._session.io_binding()
        binding.bind_cpu_input("input", x)
        binding.bind_output("output", "cuda", _device_index(self.device), self._out_dtype.type,
                            list(shape), int(out.__cuda_array_interface__["data"][0]))
        self._session.run_with_iobinding(binding)
        return out

    def device_memory(self) -> tuple[int, int] | None:
        """(free, total) bytes of the CUDA device this engine runs on (through Numba), or
        None on the CPU or without Numba's CUDA."""
        if not self.device.startswith("cuda"):
            return None
        return cuda_memory_info(self.device)

    def close(self) -> None:
        self._session = None
