"""Backend selection and the ONNX Runtime backend."""

from __future__ import annotations

import logging

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


# --- ONNX Runtime's GPU providers, against a stand-in onnxruntime-gpu ---------------------

class _FakeGpuOrt:
    """onnxruntime-gpu as the backend sees it: TensorRT and CUDA providers listed, sessions
    that really run on the CPU, and ONNX Runtime's retry when a provider fails to start (other
    providers, their options dropped, the reason printed on stdout)."""

    def __init__(self, failing=()):
        import onnxruntime as ort

        self._ort = ort
        self.failing = set(failing)
        self.created: list[list] = []
        self.SessionOptions = ort.SessionOptions
        self.GraphOptimizationLevel = ort.GraphOptimizationLevel

    def get_available_providers(self):
        return ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]

    def InferenceSession(self, path, sess_options=None, providers=()):  # noqa: N802 - ORT's name
        fake = self
        self.created.append(list(providers))
        names = [p[0] if isinstance(p, tuple) else p for p in providers]
        options = {p[0]: {k: str(v) for k, v in p[1].items()} for p in providers
                   if isinstance(p, tuple)}
        if self.failing & set(names):
            print("*************** EP Error ***************")
            print(f"EP Error libcudnn.so.9: cannot open shared object file when using {names}")
            print("****************************************")
            names = ["CUDAExecutionProvider", "CPUExecutionProvider"]
            if "CUDAExecutionProvider" in self.failing:
                names = ["CPUExecutionProvider"]
            options = {n: {"device_id": "0"} for n in names if n != "CPUExecutionProvider"}
        real = self._ort.InferenceSession(path, providers=["CPUExecutionProvider"])

        class Session:
            fallback = True

            def __getattr__(self, name):
                return getattr(real, name)

            def get_providers(self):
                return names

            def get_provider_options(self):
                return {**options, "CPUExecutionProvider": {}}

            def disable_fallback(self):
                self.fallback = False
                fake.fallback_disabled = True

        return Session()


@pytest.fixture
def gpu_ort(monkeypatch, tmp_path):
    from resin.runtime.backends import onnxruntime as backend_mod

    monkeypatch.setenv("RESIN_CACHE_DIR", str(tmp_path / "cache"))

    def install(failing=()):
        fake = _FakeGpuOrt(failing)
        monkeypatch.setattr(backend_mod, "require", lambda *a, **k: fake)
        return fake
    return install


def test_tensorrt_provider_caches_engines_per_model(onnx_model, gpu_ort, tmp_path):
    from resin.runtime.backends.onnxruntime import OnnxRuntimeBackend

    from resin._cache import file_sha256

    fake = gpu_ort()
    backend = OnnxRuntimeBackend()
    backend.load(onnx_model, "cuda:1")
    assert backend.device == "cuda:1" and fake.fallback_disabled
    trt, cuda, cpu = fake.created[-1]
    assert trt[0] == "TensorrtExecutionProvider" and cuda == ("CUDAExecutionProvider",
                                                              {"device_id": 1})
    options = trt[1]
    folder = tmp_path / "cache" / "onnxruntime-tensorrt" / file_sha256(onnx_model)[:32]
    assert options["device_id"] == 1 and options["trt_engine_cache_enable"] is True
    assert options["trt_engine_cache_path"] == str(folder) and folder.is_dir()
    assert options["trt_timing_cache_enable"] is True
    assert not any(k.startswith("trt_profile") for k in options)  # a dynamic model


def test_tensorrt_profile_comes_from_the_tile_range(onnx_model, tmp_path, monkeypatch):
    from resin.runtime.backends.onnxruntime import tensorrt_provider_options

    from resin.metadata import ModelMetadata, NormalizationRecord

    monkeypatch.setenv("RESIN_CACHE_DIR", str(tmp_path))
    norm = NormalizationRecord(low_percentile=1, high_percentile=99)
    static = ModelMetadata(normalization=norm, export={"static_tile": [16, 32, 48]})
    options = tensorrt_provider_options(onnx_model, static, 0)
    assert options["trt_profile_min_shapes"] == "input:1x1x16x32x48"
    assert options["trt_profile_opt_shapes"] == options["trt_profile_max_shapes"] \
        == "input:1x1x16x32x48"


def test_cuda_1_running_on_device_0_after_a_provider_failure_is_refused(onnx_model, gpu_ort):
    from resin.runtime.backends.onnxruntime import OnnxRuntimeBackend

    gpu_ort(failing={"TensorrtExecutionProvider"})
    with pytest.raises(BackendError) as err:
        OnnxRuntimeBackend().load(onnx_model, "cuda:1")
    msg = str(err.value)
    assert "cuda:0, not on cuda:1" in msg and "libcudnn.so.9" in msg and "\n" not in msg


def test_provider_failure_on_the_asked_device_falls_back_only_where_allowed(onnx_model, gpu_ort,
                                                                           capfd, caplog):
    from resin.runtime.backends.onnxruntime import OnnxRuntimeBackend

    gpu_ort(failing={"TensorrtExecutionProvider"})
    backend = OnnxRuntimeBackend()
    backend.load(onnx_model, "cuda")  # TensorRT failed, CUDA on the same device 0: fine
    assert backend.device == "cuda" and backend._provider == "CUDAExecutionProvider"
    gpu_ort(failing={"TensorrtExecutionProvider", "CUDAExecutionProvider"})
    with pytest.raises(BackendError, match="fell back to the CPU .*libcudnn.*--device cpu"):
        OnnxRuntimeBackend().load(onnx_model, "cuda:0")
    backend = OnnxRuntimeBackend()
    with caplog.at_level(logging.INFO, logger="resin"):
        backend.load(onnx_model, "auto")  # auto may take the CPU, and says why
    assert backend.device == "cpu"
    assert "EP Error" not in capfd.readouterr().out  # ONNX Runtime's notice never reaches stdout
    assert any("running on the CPU (EP Error libcudnn" in r.getMessage()
               for r in caplog.records if r.name == "resin")


def test_missing_cuda_provider_says_why(onnx_model, monkeypatch):
    from resin.runtime.backends import onnxruntime as backend_mod

    installed = set()
    monkeypatch.setattr(backend_mod, "_installed", lambda dist: dist in installed)
    installed |= {"onnxruntime", "onnxruntime-gpu"}
    assert "both onnxruntime and onnxruntime-gpu" in backend_mod.no_cuda_provider_reason()
    installed -= {"onnxruntime-gpu"}
    reason = backend_mod.no_cuda_provider_reason()
    assert "CPU build" in reason and "pip install 'resin[gpu]'" in reason
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(BackendError, match="needs ONNX Runtime's CUDA provider, but the "
                                           "installed onnxruntime is the CPU build"):
        load_backend(onnx_model, "onnxruntime", "cuda:1")
