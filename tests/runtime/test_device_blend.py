"""The GPU-resident path (:mod:`resin.runtime.device`) against the host path and one-tile
inference.

The device tests run twice: in Numba's CUDA simulator (``cudasim``: only in the separate
``NUMBA_ENABLE_CUDASIM=1 pytest -m cudasim`` invocation of ``make test``, since the variable
must be set before Numba is imported) and on a real GPU (``gpu``: skips itself without
one). Their engine stand-in returns Numba device arrays from ``infer_device``; the TensorRT
backend's own device path runs on ``tests/_fake_tensorrt.py`` with simulator arrays. The
tests without a marker check the host fallback and the switches on any machine.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import tifffile
from resin.runtime.backends._base import device_resident
from resin.runtime.blocks import BlockRunner, blend_path, make_block_plan
from resin.runtime.normalize import Levels, normalize_tile
from resin.runtime.pipeline import ArraySink, Mips
from resin.runtime.planner import read_padded
from resin.runtime.runner import TileSettings, enhance_array, enhance_file, make_plan

from resin.errors import InferenceError
from resin.io import read_volume, write_volume
from resin.metadata import ModelMetadata, NormalizationRecord

CUDASIM = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
LEVELS = Levels(low_percentile=1.0, high_percentile=99.0, low=100.0, high=3100.0, samples=1)


@pytest.fixture(params=[pytest.param("cudasim", marks=pytest.mark.cudasim),
                        pytest.param("gpu", marks=pytest.mark.gpu)])
def place(request) -> str:
    if request.param == "cudasim" and not CUDASIM:
        pytest.skip("runs in the NUMBA_ENABLE_CUDASIM=1 invocation (make test)")
    return request.param


def _local(x: np.ndarray) -> np.ndarray:
    """A nonlinear stand-in network with a 1-voxel reach: each output voxel is a fixed sum
    over its own neighbourhood (edges repeat), so tiles with a halo >= 1 give the bytes of
    one call on the whole face-padded volume."""
    p = np.pad(x, 1, mode="edge")
    c = p[1:-1, 1:-1, 1:-1]
    return (np.float32(2) * c + np.float32(0.25) * (p[:-2, 1:-1, 1:-1] + p[2:, 1:-1, 1:-1])
            + np.float32(0.125) * (p[1:-1, 1:-1, :-2] - p[1:-1, 2:, 1:-1])
            + np.float32(0.1) * c * c).astype(np.float32)


class StandIn:
    """A backend whose outputs can stay on the GPU: ``infer_device`` hands back a Numba
    device array (a simulator array under NUMBA_ENABLE_CUDASIM=1)."""

    name = "stand-in"
    device = "cuda"
    device_stream = None

    def __init__(self, scale=(1, 1, 1), halo=(1, 1, 1), resident=True, nan_call=None):
        self.metadata = ModelMetadata(scale=scale, halo=halo, size_multiple=1,
                                      weights_sha256="stand-in",
                                      normalization=NormalizationRecord(low_percentile=1,
                                                                        high_percentile=99))
        self.device_resident = resident
        self.nan_call = nan_call
        self.calls = {"infer": 0, "infer_device": 0}

    def _run(self, tile: np.ndarray) -> np.ndarray:
        y = _local(tile[0, 0])
        for axis, f in enumerate(self.metadata.scale):
            y = np.repeat(y, int(f), axis=axis)
        n = sum(self.calls.values())
        if n == self.nan_call:  # a bad value in the middle of the tile (inside its core)
            y[tuple(s // 2 for s in y.shape)] = np.inf
        return y[None, None]

    def load(self, path, device):
        return self.metadata

    def infer(self, tile: np.ndarray) -> np.ndarray:
        y = self._run(tile)
        self.calls["infer"] += 1
        return y

    def infer_device(self, tile: np.ndarray):
        from numba import cuda

        y = self._run(tile)
        self.calls["infer_device"] += 1
        return cuda.to_device(y)

    def close(self) -> None:
        pass


def one_tile(engine, vol: np.ndarray, dtype, faces: str = "repeat") -> np.ndarray:
    """The whole volume as one network call (padded by the halo, or not with zero-padded
    faces), finalized."""
    from resin.kernels import finalize

    h, s = engine.metadata.halo, tuple(int(f) for f in engine.metadata.scale)
    h = (0, 0, 0) if faces == "zeros" else h
    padded = read_padded(lambda r: vol[r], vol.shape, tuple(-n for n in h),
                         tuple(n + 2 * m for n, m in zip(vol.shape, h, strict=True)))
    y = engine.infer(normalize_tile(padded, LEVELS)[None, None])[0, 0]
    core = np.ascontiguousarray(y[tuple(slice(h[i] * s[i], (h[i] + vol.shape[i]) * s[i])
                                        for i in range(3))])
    return finalize(core, np.ones_like(core), dtype, LEVELS.low, LEVELS.high)


def run_blocks(engine, vol, settings: TileSettings, device_blend: bool, dtype=np.float32):
    """A BlockRunner over the whole volume with output MIPs; (output, MIPs, runner)."""
    plan = make_plan(engine, vol.shape, settings)
    bplan = make_block_plan(plan, settings.block)
    out = np.full(plan.out_shape, 7, dtype)
    mips = Mips.empty(plan.out_shape, np.dtype(dtype))
    runner = BlockRunner(engine, bplan, LEVELS, np.dtype(dtype), ArraySink(out),
                         settings.blend, settings.sigma_scale, mips=mips,
                         device_blend=device_blend)
    runner.run(lambda r: vol[r], list(bplan.blocks()))
    assert len(runner.done) == bplan.n_blocks
    return out, (mips.along_z, mips.along_y, mips.along_x), runner


# (the simulator runs every CUDA thread as a Python thread: volumes stay tiny)
@pytest.mark.parametrize(("scale", "tile", "overlap", "block", "faces"), [
    ((1, 1, 1), (6, 8, 8), None, (4, 6, 6), "repeat"),  # tiles partition the output
    ((2, 1, 1), (6, 8, 8), 1, (5, 7, 6), "repeat"),     # blended cores, z-step 2, uneven blocks
    ((2, 1, 1), (4, 6, 5), None, (4, 6, 6), "zeros"),   # faces unpadded, z-step 2
])
def test_device_path_matches_host_and_one_tile(place, rng, scale, tile, overlap, block, faces):
    from resin.kernels import mip

    vol = rng.gamma(2.0, 600.0, size=(7, 10, 9)).astype(np.float32)
    settings = TileSettings(tile=tile, overlap=overlap, block=block, faces=faces)
    engine = StandIn(scale=scale)
    dev, dev_mips, runner = run_blocks(engine, vol, settings, device_blend=True)
    assert runner.device_blend and engine.calls["infer"] == 0
    host, host_mips, runner = run_blocks(engine, vol, settings, device_blend=False)
    assert not runner.device_blend and engine.calls["infer"] == engine.calls["infer_device"]
    assert runner.bplan.n_blocks > 1
    ref = one_tile(engine, vol, np.float32, faces)
    if place == "cudasim":  # the simulator rounds each float32 operation like the CPU kernel
        np.testing.assert_array_equal(dev.view(np.uint32), host.view(np.uint32))
    else:  # a GPU may fuse acc + tile * w into one FMA
        np.testing.assert_allclose(dev, host, rtol=1e-6, atol=1e-3)
    if overlap is None:  # one contribution of weight 1 per voxel: exact
        np.testing.assert_array_equal(host, ref)
    np.testing.assert_allclose(dev, ref, rtol=1e-5, atol=1e-2)
    for d, h, m in zip(dev_mips, host_mips, mip(dev), strict=True):
        np.testing.assert_array_equal(d, m)
        np.testing.assert_allclose(d, h, rtol=1e-6, atol=1e-3)


def test_integer_output_and_enhance_array(place, rng):
    vol = rng.integers(0, 4000, size=(7, 10, 9)).astype(np.uint16)
    engine = StandIn()
    settings = TileSettings(tile=(6, 8, 8), overlap=1, block=(4, 6, 6))
    dev = enhance_array(engine, vol, settings, LEVELS)
    assert engine.calls["infer"] == 0 and engine.calls["infer_device"] > 0
    host = enhance_array(engine, vol, TileSettings(**{**settings.__dict__,
                                                      "device_blend": False}), LEVELS)
    assert dev.dtype == np.uint16
    diff = np.abs(dev.astype(np.int32) - host.astype(np.int32))
    assert diff.max() <= (0 if place == "cudasim" else 1)
    assert np.abs(dev.astype(np.int32) - one_tile(engine, vol, np.uint16)).max() <= 1


def test_finished_blocks_reuse_their_device_and_pinned_buffers(place, rng, monkeypatch):
    """Page-locked host memory is slow to allocate: eight blocks of one shape must not make
    eight pinned buffers, only as many as are in flight (copy, writer queue, writing)."""
    from numba import cuda
    from resin.runtime.pipeline import QUEUE_DEPTH

    made = []
    pinned = cuda.pinned_array

    def counting(shape, dtype=np.float64, *args, **kwargs):
        made.append(tuple(shape))
        return pinned(shape, dtype, *args, **kwargs)

    monkeypatch.setattr(cuda, "pinned_array", counting)
    vol = rng.gamma(2.0, 600.0, size=(8, 12, 12)).astype(np.float32)
    settings = TileSettings(tile=(6, 8, 8), block=(4, 6, 6))
    engine = StandIn()
    dev, dev_mips, runner = run_blocks(engine, vol, settings, device_blend=True)
    assert runner.device_blend and runner.bplan.n_blocks == 8
    assert set(made) == {(4, 6, 6)}
    assert len(made) <= QUEUE_DEPTH + 2
    host, _, _ = run_blocks(engine, vol, settings, device_blend=False)
    if place == "cudasim":  # a reused buffer holds its own block, not an earlier one's
        np.testing.assert_array_equal(dev.view(np.uint32), host.view(np.uint32))
    else:
        np.testing.assert_allclose(dev, host, rtol=1e-6, atol=1e-3)


def test_nan_from_the_device_names_the_tile_like_the_host(place, rng):
    vol = rng.gamma(2.0, 600.0, size=(7, 10, 9)).astype(np.float32)
    settings = TileSettings(tile=(6, 8, 8), block=(4, 6, 6))
    errors = []
    for device_blend in (True, False):
        with pytest.raises(InferenceError) as err:
            run_blocks(StandIn(nan_call=3), vol, settings, device_blend)
        errors.append(str(err.value))
    assert errors[0] == errors[1]
    assert "returned 1 NaN/infinite values for the tile read at z,y,x" in errors[0]


def test_file_run_resumes_on_the_device(place, rng, tmp_path):
    vol = rng.integers(0, 4000, size=(7, 10, 9)).astype(np.uint16)
    src, model = tmp_path / "in.tif", tmp_path / "stand-in.model"
    write_volume(src, vol)
    model.write_bytes(b"stand-in")
    settings = TileSettings(tile=(6, 8, 8), block=(4, 6, 6))
    engine = StandIn()

    def stop_after_two(state):
        if state.blocks_done >= 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        enhance_file(engine, str(model), src, tmp_path / "dev.zarr", settings,
                     progress=stop_after_two)
    enhance_file(engine, str(model), src, tmp_path / "dev.zarr", settings, resume=True,
                 mip_dir=tmp_path / "mips-dev")
    assert engine.calls["infer"] <= 2  # at most the plan's probe call, once per run
    host = TileSettings(**{**settings.__dict__, "device_blend": False})
    enhance_file(engine, str(model), src, tmp_path / "host.zarr", host,
                 mip_dir=tmp_path / "mips-host")
    dev_out, host_out = read_volume(tmp_path / "dev.zarr"), read_volume(tmp_path / "host.zarr")
    assert np.abs(dev_out.astype(np.int32) - host_out.astype(np.int32)).max() <= (
        0 if place == "cudasim" else 1)
    names = sorted(n for n in os.listdir(tmp_path / "mips-host") if n.endswith(".tif"))
    assert len(names) == 3
    for name in names:
        a = tifffile.imread(tmp_path / "mips-dev" / name.replace("host", "dev"))
        b = tifffile.imread(tmp_path / "mips-host" / name)
        assert np.abs(a.astype(np.int32) - b.astype(np.int32)).max() <= (
            0 if place == "cudasim" else 1), name


# -- TensorRT's device path on the stand-in TensorRT, with simulator arrays ------------------

@pytest.fixture
def trt_machine(monkeypatch, place):
    if place != "cudasim":
        pytest.skip("the TensorRT stand-in runs in the simulator; a GPU runs real TensorRT")
    from _fake_tensorrt import FakeCuda, install

    cuda = FakeCuda(simulator=True)
    return install(monkeypatch, cuda), cuda


def test_tensorrt_outputs_are_blended_on_the_device(trt_machine, tmp_path, rng, caplog):
    from _fake_tensorrt import fake_plan_bytes, write_plan
    from resin.runtime import Enhancer
    from resin.runtime.backends import tensorrt as backend_mod

    trt, cuda = trt_machine
    record = ModelMetadata(scale=(2, 1, 1), size_multiple=2, halo=(2, 2, 2),
                           weights_sha256="abc",
                           normalization=NormalizationRecord(low_percentile=1,
                                                             high_percentile=99)
                           ).model_dump(mode="json")
    plan = write_plan(tmp_path / "m.plan", fake_plan_bytes(scale=(2, 1, 1)), record)
    vol = rng.gamma(2.0, 600.0, size=(6, 10, 9)).astype(np.float32)
    host_calls = []
    real_infer = backend_mod.TensorRTBackend.infer

    def counting_infer(self, tile):
        host_calls.append(tile.shape)
        return real_infer(self, tile)

    outs = {}
    for device_blend in (True, False):
        with Enhancer(plan, backend="tensorrt", device="cuda", tile=(8, 10, 10),
                      block=(8, 6, 6), device_blend=device_blend) as enh:
            assert enh.engine.device_resident
            with caplog.at_level(logging.DEBUG, logger="resin"):
                with pytest.MonkeyPatch.context() as mp:
                    mp.setattr(backend_mod.TensorRTBackend, "infer", counting_infer)
                    outs[device_blend] = enh.enhance(vol, levels=LEVELS)
            if device_blend:
                assert host_calls == [] and len(trt.calls.executed) > 1
                assert "blending on the GPU: tensorrt outputs stay" in caplog.text
            else:
                assert len(host_calls) == len(trt.calls.executed) // 2
                assert "blending on the CPU (host blending asked for" in caplog.text
    np.testing.assert_array_equal(outs[True].view(np.uint32), outs[False].view(np.uint32))
    up = np.repeat(normalize_tile(vol, LEVELS), 2, axis=0)  # the stand-in plan: 2 * upsample
    expect = (2 * up) * np.float32(LEVELS.high - LEVELS.low) + np.float32(LEVELS.low)
    np.testing.assert_allclose(outs[True], expect, rtol=1e-5, atol=1e-2)


# -- on any machine ------------------------------------------------------------------------

def test_engines_without_the_capability_keep_the_host_path(rng):
    engine = StandIn(resident=False)
    assert not device_resident(engine)
    vol = rng.gamma(2.0, 600.0, size=(7, 10, 9)).astype(np.float32)
    out, _, runner = run_blocks(engine, vol, TileSettings(tile=(6, 8, 8), block=(4, 6, 6)),
                                device_blend=True)
    assert not runner.device_blend and engine.calls["infer_device"] == 0
    np.testing.assert_array_equal(out, one_tile(engine, vol, np.float32))
    assert blend_path(engine) == "blending on the CPU (stand-in on cuda returns host arrays)"
    assert blend_path(StandIn(), device_blend=False).startswith(
        "blending on the CPU (host blending asked for")


def test_resin_run_host_blend_flag(cli):
    proc = cli("resin-run", "--help")
    assert proc.returncode == 0 and "--host-blend" in proc.stdout


class _CudaBinding:
    """ONNX Runtime's IO binding as the backend uses it on CUDA."""

    def __init__(self) -> None:
        self.x = None
        self.out = None  # (dtype, shape, pointer) of a bound device buffer
        self.outputs: list = []

    def bind_cpu_input(self, name, x):
        assert name == "input"
        self.x = x

    def bind_output(self, name, device_type, device_id, element_type=None, shape=None,
                    buffer_ptr=None):
        assert (name, device_type, device_id) == ("output", "cuda", 0)
        if buffer_ptr is not None:
            assert type(buffer_ptr) is int
            self.out = (np.dtype(element_type), tuple(shape), buffer_ptr)

    def copy_outputs_to_cpu(self):
        return self.outputs


class _CudaSession:
    """An ONNX Runtime CUDA session as IO binding sees it; a CPU session computes, and a
    bound output buffer (a stand-in device array) receives the result."""

    def __init__(self, cpu, cuda) -> None:
        self.cpu, self.cuda = cpu, cuda
        self.bound = 0

    def io_binding(self):
        return _CudaBinding()

    def run_with_iobinding(self, binding):
        y = self.cpu.run(["output"], {"input": binding.x})[0]
        if binding.out is None:
            binding.outputs = [y]
            return
        dtype, shape, ptr = binding.out
        target = self.cuda.memory[ptr]
        assert target.dtype == dtype and target.shape == shape == y.shape
        target[...] = y
        self.bound += 1


def test_onnxruntime_cuda_outputs_are_blended_on_the_device(place, fast_model, rng):
    if place != "cudasim":
        pytest.skip("on a GPU, ONNX Runtime's own CUDA provider is the test (not here)")
    from _fake_tensorrt import FakeCuda
    from resin.runtime.backends.onnxruntime import OnnxRuntimeBackend

    engine = OnnxRuntimeBackend()
    engine.load(fast_model, "cpu")
    assert not engine.device_resident
    cuda = FakeCuda(simulator=True)
    session = _CudaSession(engine._session, cuda)
    engine._session, engine.device, engine._cuda = session, "cuda", cuda
    assert device_resident(engine)
    vol = rng.integers(0, 4000, size=(8, 10, 9)).astype(np.uint16)
    settings = TileSettings(tile=(8, 10, 9), block=(4, 5, 9))
    dev = enhance_array(engine, vol, settings, LEVELS)
    assert session.bound > 1
    host = enhance_array(engine, vol, TileSettings(**{**settings.__dict__,
                                                      "device_blend": False}), LEVELS)
    np.testing.assert_array_equal(dev, host)
