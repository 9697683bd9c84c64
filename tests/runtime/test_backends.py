"""Backend selection and the ONNX Runtime backend."""

from __future__ import annotations

import numpy as np
import pytest
from resin.runtime.backends import load_backend, model_kind
from resin.runtime.backends._base import Backend

from resin.errors import BackendError, MissingDependencyError, ModelError, UsageError


def test_onnxruntime_loads_metadata_and_runs(onnx_model):
    engine = load_backend(onnx_model, "auto", "cpu")
    assert isinstance(engine, Backend)
    assert engine.name == "onnxruntime" and engine.device == "cpu"
    assert engine.metadata.halo == (12, 12, 12) and engine.metadata.size_multiple == 2
    x = np.random.default_rng(0).random((1, 1, 8, 12, 16), dtype=np.float32)
    y = engine.infer(x)
    assert y.shape == x.shape and y.dtype == np.float32
    engine.close()
    with pytest.raises(BackendError):
        engine.infer(x)


def test_model_errors(tmp_path, onnx_model):
    with pytest.raises(ModelError, match="no such model"):
        load_backend(tmp_path / "missing.onnx")
    with pytest.raises(ModelError, match="unknown model type"):
        model_kind(tmp_path / "model.h5")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not an onnx file at all")
    with pytest.raises(ModelError, match="not a loadable ONNX"):
        load_backend(junk, device="cpu")


def test_onnx_without_resin_metadata_is_refused(tmp_path, model_factory):
    plain = model_factory(tmp_path / "plain.onnx", with_metadata=False)
    with pytest.raises(ModelError, match="not a resin model"):
        load_backend(plain, device="cpu")


def test_wrong_backend_or_device_is_usage_error(onnx_model):
    with pytest.raises(UsageError, match="cannot run a .onnx"):
        load_backend(onnx_model, "tensorrt")
    with pytest.raises(UsageError, match="unknown backend"):
        load_backend(onnx_model, "tflite")
    with pytest.raises(UsageError, match="unknown device"):
        load_backend(onnx_model, device="tpu")


def test_cuda_request_without_gpu_lists_the_failure(onnx_model):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(BackendError, match="onnxruntime: .*CUDA"):
        load_backend(onnx_model, device="cuda")


def test_plan_without_tensorrt_names_the_extra(tmp_path):
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed")
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"\0")
    with pytest.raises((MissingDependencyError, BackendError), match="resin\\[gpu\\]|CUDA"):
        load_backend(plan, device="cuda")
