"""The TensorRT backend's whole path (sidecar, plan hash, host code, deserialize, dtypes,
shapes, buffers, stream, execute) against the stand-ins of ``tests/_fake_tensorrt.py``.

The same path on real TensorRT and a GPU is ``tests/export/test_tensorrt.py``'s ``trt`` test.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from _fake_tensorrt import FakeCuda, fake_plan_bytes, install, write_plan
from resin.runtime.backends import load_backend
from resin.runtime.backends import tensorrt as backend_mod

from resin.errors import BackendError, ModelError
from resin.metadata import ModelMetadata, NormalizationRecord


def _record(scale=(1, 1, 1), dtype="float32") -> dict:
    return ModelMetadata(scale=scale, size_multiple=2, halo=(2, 2, 2), input_dtype=dtype,
                         output_dtype=dtype, weights_sha256="abc",
                         normalization=NormalizationRecord(low_percentile=1,
                                                           high_percentile=99),
                         ).model_dump(mode="json")


@pytest.fixture
def machine(monkeypatch):
    """A machine with the stand-in TensorRT 10.3.0.26 and GPU; returns (trt, cuda)."""
    cuda = FakeCuda()
    return install(monkeypatch, cuda), cuda


def _plan(tmp_path, name="model.plan", *, record=None, sidecar=None, **engine):
    return write_plan(tmp_path / name, fake_plan_bytes(**engine), record or _record(),
                      **(sidecar or {}))


def test_a_tile_runs_through_the_engine(machine, tmp_path, capsys):
    trt, cuda = machine
    plan = _plan(tmp_path, record=_record(scale=(2, 1, 1)), scale=(2, 1, 1))
    engine = load_backend(plan, "tensorrt", "cuda:1")
    assert engine.name == "tensorrt" and engine.device == "cuda:1" and cuda.selected == 1
    assert engine.metadata.scale == (2, 1, 1)
    x = np.random.default_rng(0).random((1, 1, 4, 6, 8), dtype=np.float32)
    y = engine.infer(x)
    assert y.dtype == np.float32 and y.shape == (1, 1, 8, 6, 8)
    np.testing.assert_array_equal(y, 2 * np.repeat(x, 2, axis=2))
    (handle, shape), = trt.calls.executed
    assert handle == int(engine._stream) and shape == x.shape
    assert not hasattr(engine._stream.handle, "value")  # NVIDIA bindings' CUstream
    assert cuda.synchronized == 1
    assert trt.calls.runtimes[0].engine_host_code_allowed is False
    engine.close()
    with pytest.raises(BackendError, match="closed"):
        engine.infer(x)
    assert capsys.readouterr().err == ""


def test_buffers_take_the_engines_dtypes(machine, tmp_path):
    _, cuda = machine
    plan = _plan(tmp_path, record=_record(dtype="float16"), input_dtype="float16")
    engine = load_backend(plan, "tensorrt", "cuda")
    x = np.linspace(0, 1, 2 * 4 * 6, dtype=np.float32).reshape(1, 1, 2, 4, 6)
    y = engine.infer(x)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, 2 * x.astype(np.float16).astype(np.float32))
    out = engine.infer_device(cuda.to_device(x.astype(np.float16)))
    assert out.dtype == np.float16 and out.shape == x.shape
    with pytest.raises(BackendError, match="takes float16 tiles, got float32"):
        engine.infer_device(cuda.to_device(x))


@pytest.mark.parametrize(("engine_io", "match"), [
    ({"input_dtype": "float16"}, "plan's input is float16, but its sidecar records float32"),
    ({"output_dtype": "float16"}, "plan's output is float16, but its sidecar records float32"),
])
def test_engine_dtypes_must_match_the_sidecar(machine, tmp_path, engine_io, match):
    plan = _plan(tmp_path, **engine_io)
    with pytest.raises(ModelError, match=match) as err:
        load_backend(plan, "tensorrt", "cuda")
    assert err.value.exit_code == 2 and "\n" not in str(err.value)


def test_output_shape_comes_from_the_engine_and_must_match_the_scale(machine, tmp_path):
    plan = _plan(tmp_path, record=_record(scale=(2, 1, 1)), scale=(2, 1, 1),
                 output_scale=(1, 1, 1))
    engine = load_backend(plan, "tensorrt", "cuda")
    with pytest.raises(ModelError, match=r"output of shape \(1, 1, 4, 6, 8\) for a tile of "
                                         r"\(1, 1, 4, 6, 8\).*says \(1, 1, 8, 6, 8\)"):
        engine.infer(np.zeros((1, 1, 4, 6, 8), np.float32))


def test_tile_outside_the_profile(machine, tmp_path):
    engine = load_backend(_plan(tmp_path, max_tile=(8, 8, 8)), "tensorrt", "cuda")
    with pytest.raises(BackendError, match="outside the plan's optimization profile"):
        engine.infer(np.zeros((1, 1, 16, 8, 8), np.float32))


def test_no_execution_context_is_an_error(machine, tmp_path):
    with pytest.raises(BackendError, match="could not create an execution context .*GPU memory"):
        load_backend(_plan(tmp_path, context_fails=True), "tensorrt", "cuda")


def test_tensorrt_messages_go_to_the_resin_logger(machine, tmp_path, capfd, caplog):
    trt, _ = machine
    plan = write_plan(tmp_path / "broken.plan", b"not a plan", _record())
    with caplog.at_level(logging.DEBUG, logger="resin"):
        with pytest.raises(ModelError) as err:
            load_backend(plan, "tensorrt", "cuda")
        # a warning is a WARNING record, so an embedding application sees it
        trt.calls.runtimes[0].logger.log(trt.ILogger.Severity.WARNING, "plan from another GPU")
    # the error TensorRT logged is in the one-line message (so only a DEBUG record), and
    # nothing went to stdout or stderr
    assert "could not deserialize this plan (IRuntime::deserializeCudaEngine" in str(err.value)
    assert capfd.readouterr() == ("", "")
    records = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "resin"]
    assert records == [
        (logging.DEBUG, "TensorRT: IRuntime::deserializeCudaEngine: Error Code 1: "
                        "Serialization (magic tag does not match)"),
        (logging.WARNING, "TensorRT: plan from another GPU")]


def test_plan_must_be_the_one_its_sidecar_describes(machine, tmp_path):
    plan = _plan(tmp_path)
    plan.write_bytes(fake_plan_bytes(scale=(2, 1, 1)))
    with pytest.raises(ModelError, match="do not match the SHA-256 in model.plan.json"):
        load_backend(plan, "tensorrt", "cuda")


def test_host_code_needs_the_users_permission(machine, tmp_path, monkeypatch):
    trt, _ = machine
    plan = _plan(tmp_path, host_code=True,
                 sidecar={"version_compatible": True, "host_code": True})
    with pytest.raises(ModelError, match="carries TensorRT host code .*RESIN_ALLOW_PLAN_HOST_CODE"
                                         "=1") as err:
        load_backend(plan, "tensorrt", "cuda")
    assert err.value.exit_code == 2 and not trt.calls.runtimes
    engine = load_backend(plan, "tensorrt", "cuda", allow_plan_host_code=True)
    assert trt.calls.runtimes[-1].engine_host_code_allowed is True
    engine.close()
    monkeypatch.setenv(backend_mod.HOST_CODE_ENV, "1")
    load_backend(plan, "tensorrt", "cuda")
    # a sidecar from before the host_code field: a version-compatible plan has host code
    older = _plan(tmp_path, "older.plan", host_code=True, sidecar={"version_compatible": True})
    monkeypatch.delenv(backend_mod.HOST_CODE_ENV)
    with pytest.raises(ModelError, match="host code"):
        load_backend(older, "tensorrt", "cuda")


def test_a_plan_without_sidecar_is_refused(machine, tmp_path):
    plan = tmp_path / "model.plan"
    plan.write_bytes(fake_plan_bytes())
    with pytest.raises(ModelError, match="no model.plan.json beside the plan.*--trt"):
        load_backend(plan, "tensorrt", "cuda")


def test_a_plan_built_elsewhere_is_refused(machine, tmp_path):
    plan = _plan(tmp_path, sidecar={"version": "10.5.0", "compute_capability": [9, 0]})
    with pytest.raises(ModelError, match="this machine has TensorRT 10.3.0.26"):
        load_backend(plan, "tensorrt", "cuda")
