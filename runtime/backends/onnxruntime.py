"""ONNX Runtime backend: CPU EP, or the TensorRT / CUDA EPs when onnxruntime-gpu has them.

The model's metadata is read with onnxruntime itself (``custom_metadata_map["resin"]``),
never with the onnx package. On CUDA, tiles go through IO binding so input and output
buffers are bound once per shape instead of being copied by ``run``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from resin import _log
from resin._optional import require
from resin.errors import BackendError, ModelError
from resin.metadata import METADATA_KEY, ModelMetadata

_GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self) -> None:
        self.device = "cpu"
        self.metadata: ModelMetadata
        self._session = None
        self._provider = "CPUExecutionProvider"
        self._in_dtype: np.dtype = np.dtype(np.float32)

    def _providers(self, ort, device: str) -> list:
        available = set(ort.get_available_providers())
        gpu = [p for p in _GPU_PROVIDERS if p in available]
        if device == "cpu":
            return ["CPUExecutionProvider"]
        if device.startswith("cuda") and not gpu:
            raise BackendError(
                "onnxruntime has no CUDA execution provider here; install "
                "pip install 'resin[gpu]' (onnxruntime-gpu) or use --device cpu")
        index = int(device.split(":")[1]) if ":" in device else 0
        chosen: list = [(p, {"device_id": index}) for p in gpu]
        if device == "auto" and not gpu:
            _log.debug("onnxruntime: no CUDA/TensorRT execution provider, using the CPU")
        return [*chosen, "CPUExecutionProvider"]

    def load(self, path: Path, device: str) -> ModelMetadata:
        ort = require("onnxruntime", "the ONNX Runtime backend", extra="gpu")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # memory patterns pre-plan one buffer per shape: for a 108x156x156 tile of the bundled
        # model that raised peak memory from 451 to 781 MB, for no speed (bench/runtime.py)
        options.enable_mem_pattern = False
        try:
            session = ort.InferenceSession(str(path), sess_options=options,
                                           providers=self._providers(ort, device))
        except BackendError:
            raise
        except Exception as exc:
            raise ModelError(f"{path}: not a loadable ONNX model "
                             f"({' '.join(str(exc).split())[:200]})") from exc
        meta = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        if meta is None:
            raise ModelError(f"{path}: not a resin model (no '{METADATA_KEY}' metadata); "
                             "export it with `resin export`")
        self.metadata = ModelMetadata.from_json(meta, source=str(path))
        inputs = [i.name for i in session.get_inputs()]
        outputs = [o.name for o in session.get_outputs()]
        if inputs != ["input"] or outputs != ["output"]:
            raise ModelError(f"{path}: expected one input 'input' and one output 'output', "
                             f"got {inputs} -> {outputs}")
        self._in_dtype = np.dtype(np.float16 if "float16" in session.get_inputs()[0].type
                                  else np.float32)
        self._session = session
        self._provider = session.get_providers()[0]
        self.device = "cpu" if self._provider == "CPUExecutionProvider" else (
            device if device.startswith("cuda") else "cuda")
        _log.debug(f"onnxruntime providers: {session.get_providers()}")
        return self.metadata

    def infer(self, tile: np.ndarray) -> np.ndarray:
        if self._session is None:
            raise BackendError("the ONNX Runtime engine is closed")
        x = np.ascontiguousarray(tile, dtype=self._in_dtype)
        if self.device == "cpu":
            out = self._session.run(["output"], {"input": x})[0]
        else:
            binding = self._session.io_binding()
            index = int(self.device.split(":")[1]) if ":" in self.device else 0
            binding.bind_cpu_input("input", x)
            binding.bind_output("output", "cuda", index)
            self._session.run_with_iobinding(binding)
            out = binding.copy_outputs_to_cpu()[0]
        return np.asarray(out, dtype=np.float32)

    def close(self) -> None:
        self._session = None
