"""TensorRT build, plan sidecar and compatibility rules (resin.export._tensorrt).

Without TensorRT, the build is checked against the stand-in ``tensorrt`` module of
``tests/_fake_tensorrt.py``, which records what it is asked to do; the real build-and-run
test is marked ``trt`` and ``gpu``.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from _fake_tensorrt import GPU, make_fake_tensorrt, write_plan
from resin.export import _tensorrt as trtmod
from resin.export import (
    build_engine,
    check_plan_compatible,
    check_tensor_limit,
    optimization_profile,
    read_plan_sidecar,
)

from resin import tensorrt_plan
from resin.errors import (
    BackendError,
    MissingDependencyError,
    ModelError,
    OutputExistsError,
    UsageError,
)
from resin.metadata import ModelMetadata, NormalizationRecord


def _meta(features=(4, 8), dtype="float32", **kw) -> ModelMetadata:
    return ModelMetadata(size_multiple=2 ** (len(features) - 1), halo=(6, 6, 6),
                         normalization=NormalizationRecord(low_percentile=0.5,
                                                           high_percentile=99.9),
                         generator={"features": list(features), "in_channels": 1,
                                    "residual": True},
                         input_dtype=dtype, output_dtype=dtype, weights_sha256="abc", **kw)


# --- optimization profile -----------------------------------------------------------------

def test_profile_defaults_and_explicit_bounds():
    p = optimization_profile((16, 32, 48), 4)
    assert p == {"min": (1, 1, 4, 4, 4), "opt": (1, 1, 16, 32, 48), "max": (1, 1, 16, 32, 48)}
    p = optimization_profile([16, 32, 48], 4, min_tile=(8, 8, 8), max_tile=(32, 64, 48))
    assert p["min"] == (1, 1, 8, 8, 8) and p["max"] == (1, 1, 32, 64, 48)


@pytest.mark.parametrize(("kwargs", "flag"), [
    ({"tile": (16, 30, 32)}, "--tile"),
    ({"tile": (16, 32)}, "--tile"),
    ({"tile": (0, 32, 32)}, "--tile"),
    ({"tile": (16, 32, 32), "max_tile": (16, 32, 34)}, "--max-tile"),
    ({"tile": (16, 32, 32), "max_tile": (32, 16, 32)}, "--max-tile"),
    ({"tile": (16, 32, 32), "min_tile": (4, 36, 4)}, "--min-tile"),
])
def test_profile_errors_name_the_flag(kwargs, flag):
    with pytest.raises(UsageError, match=flag):
        optimization_profile(size_multiple=4, **kwargs)


# --- TensorRT's 2**31-element tensor limit ------------------------------------------------

def _largest_tensor_by_hooks(features, tile) -> int:
    """The real maximum numel over every module's inputs and outputs in one forward pass."""
    torch = pytest.importorskip("torch")
    from resin.config import GeneratorConfig
    from resin.models import Generator

    net = Generator(GeneratorConfig(features=list(features))).eval()
    seen: list[int] = []

    def hook(_module, inputs, output):
        for t in (*inputs, output):
            if isinstance(t, torch.Tensor):
                seen.append(t.numel())

    handles = [m.register_forward_hook(hook) for m in net.modules()]
    with torch.no_grad():
        net(torch.zeros((1, 1, *tile)))
    for h in handles:
        h.remove()
    return max(seen)


@pytest.mark.parametrize(("features", "tile"), [
    ((4, 8), (8, 12, 16)),
    ((4, 8, 16), (8, 12, 20)),
    ((3, 10, 5), (12, 8, 16)),   # wide middle level: the upsampled tensor is the largest
    ((6, 2, 9), (4, 8, 12)),     # the concatenated skip is the largest
    ((5, 7, 11), (6, 10, 14)),   # sides that pool to odd sizes (floor), as torch does
    ((8,), (6, 6, 6)),
])
def test_tensor_count_equals_the_real_network(features, tile):
    assert check_tensor_limit(features, tile) == _largest_tensor_by_hooks(features, tile)


def test_huge_tile_is_refused_with_a_tile_that_fits():
    features = [64, 128, 256]
    # 256**3 voxels x 128 channels (the concatenated skip) is exactly 2**31
    with pytest.raises(UsageError, match="--max-tile 256 256 256") as err:
        check_tensor_limit(features, (256, 256, 256))
    msg = str(err.value)
    assert "2**31" in msg and "\n" not in msg
    cube = [int(v) for v in msg.split("at most --max-tile ")[1].split(" or ")[0].split()]
    z_fit = [int(v) for v in msg.split(" or --max-tile ")[1].split()]
    assert cube[0] == cube[1] == cube[2] and cube[0] % 4 == 0 and z_fit[1:] == [256, 256]
    # both fit, and each is the largest of its kind
    for fit, bigger in ((cube, [cube[0] + 4] * 3), (z_fit, [z_fit[0] + 4, 256, 256])):
        assert check_tensor_limit(features, fit) < 2**31
        with pytest.raises(UsageError):
            check_tensor_limit(features, bigger)
    # the suggestion keeps the flag the caller names
    with pytest.raises(UsageError, match="at most --tile "):
        check_tensor_limit(features, (512, 512, 512), what="--tile")


def test_scale_counts_on_the_output_grid():
    assert check_tensor_limit([4, 8], (8, 16, 16), scale=(2, 1, 1)) == \
        check_tensor_limit([4, 8], (16, 16, 16))


# --- sidecar and compatibility ------------------------------------------------------------

def _write_plan(tmp_path: Path, name="model.plan", **trt_info) -> Path:
    return write_plan(tmp_path / name, b"plan bytes", _meta().model_dump(mode="json"), **trt_info)


def test_sidecar_round_trip(tmp_path):
    plan = _write_plan(tmp_path)
    record = read_plan_sidecar(plan)
    assert record["tensorrt"]["version"] == "10.3.0.26" and record["size_multiple"] == 2
    meta = check_plan_compatible(plan, trt_version="10.3.0.26", gpu=GPU)
    assert meta.halo == (6, 6, 6) and meta.model_extra["tensorrt"]["compute_capability"] == [8, 6]


def test_broken_sidecars_are_model_errors(tmp_path):
    plan = tmp_path / "lonely.plan"
    plan.write_bytes(b"x")
    with pytest.raises(ModelError, match="no lonely.plan.json.*resin export MODEL.pt --trt"):
        read_plan_sidecar(plan)
    sidecar = Path(str(plan) + ".json")
    sidecar.write_text("{not json")
    with pytest.raises(ModelError, match="not readable JSON.*resin export"):
        read_plan_sidecar(plan)
    sidecar.write_text(_meta().to_json())
    with pytest.raises(ModelError, match="no \"tensorrt\" build record.*resin export"):
        read_plan_sidecar(plan)
    sidecar.write_text(json.dumps({**_meta().model_dump(mode="json"), "tensorrt": {"version": 10}}))
    with pytest.raises(ModelError, match="incomplete"):
        read_plan_sidecar(plan)
    # a sound build record around a broken metadata record
    plan = _write_plan(tmp_path, "bad.plan")
    sidecar = Path(str(plan) + ".json")
    sidecar.write_text(sidecar.read_text().replace('"size_multiple": 2', '"size_multiple": 0'))
    with pytest.raises(ModelError, match="size_multiple"):
        check_plan_compatible(plan, trt_version="10.3.0", gpu=GPU)


@pytest.mark.parametrize(("built", "here_version", "here_cc", "error"), [
    ({}, "10.3.0", (8, 6), None),
    ({}, "10.3.0.30", (8, 6), None),                  # the build number is not compared
    ({}, "10.3.1", (8, 6), r"TensorRT 10\.3\.0\.26 .*this machine has TensorRT 10\.3\.1"),
    ({}, "10.2.0", (8, 6), "--version-compatible"),
    ({}, "10.3.0", (8, 9), r"RTX A6000 \(sm_86\).*\(sm_89\).*--hardware-compatible"),
    ({"version_compatible": True}, "10.8.0", (8, 6), None),
    ({"version_compatible": True}, "10.3.0", (8, 6), None),
    ({"version_compatible": True}, "10.2.1", (8, 6), r"10\.3\.0 or a newer 10\.x"),
    ({"version_compatible": True}, "11.0.0", (8, 6), r"10\.3\.0 or a newer 10\.x"),
    ({"version_compatible": True}, "10.8.0", (9, 0), "sm_90"),
    ({"hardware_compatible": True}, "10.3.0", (9, 0), None),
    ({"hardware_compatible": True}, "10.3.0", (8, 0), None),
    ({"hardware_compatible": True}, "10.3.0", (7, 5), "Ampere.*sm_75"),
    ({"hardware_compatible": True}, "10.4.0", (9, 0), "--version-compatible"),
    ({"version_compatible": True, "hardware_compatible": True}, "10.9.1", (12, 0), None),
])
def test_compatibility_rules(tmp_path, built, here_version, here_cc, error):
    plan = _write_plan(tmp_path, **built)
    here = ("NVIDIA H100", here_cc) if here_cc != (8, 6) else GPU
    if error is None:
        check_plan_compatible(plan, trt_version=here_version, gpu=here)
        return
    with pytest.raises(ModelError, match=error) as err:
        check_plan_compatible(plan, trt_version=here_version, gpu=here)
    msg = str(err.value)
    assert "resin export MODEL.pt --trt" in msg and "\n" not in msg


def test_compatibility_defaults_to_the_installed_tensorrt_and_gpu(tmp_path, monkeypatch):
    plan = _write_plan(tmp_path)
    monkeypatch.setitem(sys.modules, "tensorrt", SimpleNamespace(__version__="10.3.0.26"))
    monkeypatch.setattr(tensorrt_plan, "current_gpu", lambda: GPU)
    check_plan_compatible(plan)
    monkeypatch.setattr(tensorrt_plan, "current_gpu", lambda: ("NVIDIA L4", (8, 9)))
    with pytest.raises(ModelError, match="NVIDIA L4"):
        check_plan_compatible(plan)


# --- build_engine: the cheap checks and the missing dependency ----------------------------

@pytest.fixture
def no_tensorrt(monkeypatch):
    """Make ``import tensorrt`` fail, as on a machine without it."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)


@pytest.fixture
def fake_onnx(tmp_path, monkeypatch):
    """An ONNX path whose resin metadata is ``_meta()`` (read without onnx/onnxruntime)."""
    path = tmp_path / "model.onnx"
    path.write_bytes(b"stand-in onnx bytes")
    holder = {"meta": _meta()}
    monkeypatch.setattr(trtmod, "read_onnx_metadata", lambda p: holder["meta"])
    return path, holder


def test_build_without_tensorrt_names_the_extra(fake_onnx, no_tensorrt, tmp_path):
    onnx_path, _ = fake_onnx
    with pytest.raises(MissingDependencyError) as err:
        build_engine(onnx_path, tmp_path / "m.plan", tile=(16, 32, 32))
    assert "tensorrt" in str(err.value) and "resin[gpu]" in str(err.value)
    assert err.value.exit_code == 2
    assert not (tmp_path / "m.plan").exists()


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"tile": (16, 31, 32)}, UsageError, "--tile"),
    ({"tile": (16, 32, 32), "max_tile": (8, 32, 32)}, UsageError, "--max-tile"),
    ({"tile": (16, 32, 32), "max_tile": (2048, 2048, 2048)}, UsageError, "2\\*\\*31"),
    ({"tile": (1024, 1024, 1024)}, UsageError, "at most --tile"),
    ({"tile": (16, 32, 32), "workspace_gib": 0}, UsageError, "--workspace"),
    ({"tile": (16, 32, 32), "optimization_level": 6}, UsageError, "--optimization-level"),
])
def test_bad_flags_fail_before_tensorrt_is_needed(fake_onnx, no_tensorrt, tmp_path, kwargs,
                                                 error, match):
    with pytest.raises(error, match=match):
        build_engine(fake_onnx[0], tmp_path / "m.plan", **kwargs)


def test_existing_plan_or_sidecar_is_not_overwritten(fake_onnx, no_tensorrt, tmp_path):
    for existing in ("a.plan", "b.plan.json"):
        (tmp_path / existing).write_text("keep me")
        plan = tmp_path / existing.replace(".json", "")
        with pytest.raises(OutputExistsError, match="--overwrite"):
            build_engine(fake_onnx[0], plan, tile=(16, 32, 32))
        assert (tmp_path / existing).read_text() == "keep me"
    # with overwrite the next missing piece is TensorRT itself
    with pytest.raises(MissingDependencyError):
        build_engine(fake_onnx[0], tmp_path / "a.plan", tile=(16, 32, 32), overwrite=True)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"version_compatible": True}, "--allow-plan-host-code as well"),
    ({"allow_host_code": True}, "only applies with --version-compatible"),
])
def test_host_code_in_a_plan_only_when_asked_for_by_name(fake_onnx, no_tensorrt, tmp_path,
                                                         kwargs, match):
    with pytest.raises(UsageError, match=match):
        build_engine(fake_onnx[0], tmp_path / "m.plan", tile=(16, 32, 32), **kwargs)


def test_plain_build_has_no_host_code(fake_onnx, fake_trt, tmp_path):
    trt = fake_trt()
    record = build_engine(fake_onnx[0], tmp_path / "m.plan", tile=(8, 8, 8))
    assert record["tensorrt"]["host_code"] is False
    assert trt.BuilderFlag.VERSION_COMPATIBLE not in trt.calls.config.flags


def test_export_refuses_version_compatible_without_host_code_permission(cli, tmp_path):
    from conftest import assert_one_line_error

    proc = cli("resin", "export", str(tmp_path / "missing.pt"), "--trt",
               "--version-compatible")
    assert_one_line_error(proc)
    assert proc.returncode == 2 and "--allow-plan-host-code" in proc.stderr
    proc = cli("resin", "export", str(tmp_path / "missing.pt"), "--allow-plan-host-code")
    assert proc.returncode == 2 and "only apply with --trt" in proc.stderr


def test_plan_bytes_must_match_the_sidecar(tmp_path):
    plan = _write_plan(tmp_path)
    check_plan_compatible(plan, trt_version="10.3.0.26", gpu=GPU)
    plan.write_bytes(b"another plan")
    with pytest.raises(ModelError, match="do not match the SHA-256 in model.plan.json") as err:
        check_plan_compatible(plan, trt_version="10.3.0.26", gpu=GPU)
    assert err.value.exit_code == 2 and "\n" not in str(err.value)
    # the bytes about to be deserialized are the ones checked, not the file's
    check_plan_compatible(plan, trt_version="10.3.0.26", gpu=GPU, plan_bytes=b"plan bytes")
    sidecar = Path(str(plan) + ".json")
    record = json.loads(sidecar.read_text())
    del record["tensorrt"]["plan_sha256"]
    sidecar.write_text(json.dumps(record))
    with pytest.raises(ModelError, match="no plan_sha256"):
        check_plan_compatible(plan, trt_version="10.3.0.26", gpu=GPU)


def test_export_package_imports_without_torch_onnx_tensorrt():
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'onnx', 'tensorrt'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import resin.export._tensorrt, resin.runtime.backends.tensorrt\n"
        "from resin.export import check_plan_compatible, read_plan_sidecar\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'onnx')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# --- build_engine against a recording stand-in for tensorrt -------------------------------

@pytest.fixture
def fake_trt(monkeypatch):
    def install(**kw):
        trt = make_fake_tensorrt(**kw)
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        monkeypatch.setattr(trtmod, "_current_gpu", lambda: GPU)
        return trt
    return install


def test_build_sets_profile_workspace_flags_and_writes_plan_and_sidecar(fake_onnx, fake_trt,
                                                                         tmp_path):
    trt = fake_trt()
    onnx_path, _ = fake_onnx
    plan, cache = tmp_path / "out" / "model.plan", tmp_path / "timing.cache"
    cache.write_bytes(b"old")
    record = build_engine(onnx_path, plan, tile=(16, 32, 32), max_tile=(32, 64, 64),
                          workspace_gib=1.5, timing_cache=cache, optimization_level=5,
                          version_compatible=True, hardware_compatible=True,
                          allow_host_code=True)
    config = trt.calls.config
    assert config.profiles[0].shapes == {"input": ((1, 1, 2, 2, 2), (1, 1, 16, 32, 32),
                                                   (1, 1, 32, 64, 64))}
    assert config.pools == {trt.MemoryPoolType.WORKSPACE: int(1.5 * 2**30)}
    assert config.builder_optimization_level == 5
    assert config.flags == {trt.BuilderFlag.VERSION_COMPATIBLE}
    assert config.hardware_compatibility_level == trt.HardwareCompatibilityLevel.AMPERE_PLUS
    assert trt.calls.network.flags == 0  # explicit batch is implied from TensorRT 10
    assert trt.calls.parsed == str(onnx_path)
    assert plan.read_bytes() == b"serialized engine"
    assert cache.read_bytes() == b"old+timings"
    assert json.loads(Path(str(plan) + ".json").read_text()) == record
    info = record["tensorrt"]
    assert info["version"] == "10.8.0.43" and info["gpu_name"] == GPU[0]
    assert info["compute_capability"] == [8, 6] and info["fp16"] is False
    assert info["profile"]["max"] == [1, 1, 32, 64, 64]
    assert info["version_compatible"] is True and info["hardware_compatible"] is True
    assert info["host_code"] is True  # TensorRT's lean runtime rides in a version-compatible plan
    assert info["built_at"].endswith("+00:00")
    assert info["onnx_sha256"] == hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    assert info["plan_sha256"] == hashlib.sha256(b"serialized engine").hexdigest()
    assert record["weights_sha256"] == "abc" and record["halo"] == [6, 6, 6]
    assert sorted(p.name for p in plan.parent.iterdir()) == ["model.plan", "model.plan.json"]
    # what was written is what the runtime accepts on the same machine
    check_plan_compatible(plan, trt_version="10.8.0.43", gpu=GPU)
    with pytest.raises(OutputExistsError):
        build_engine(onnx_path, plan, tile=(16, 32, 32))


@pytest.mark.parametrize(("version", "fp16_flag", "onnx_dtype", "fp16", "expect"), [
    # fp16 ONNX: a strongly typed network where TensorRT has the flag
    ("10.13.0", True, "float16", False, "strongly"),
    ("11.0.0", False, "float16", True, "strongly"),
    # an fp32 ONNX with --fp16: the weak-typing FP16 flag only before 10.12
    ("10.8.0", True, "float32", True, "flag"),
    ("10.13.0", True, "float32", True, "refused"),
    ("11.0.0", False, "float32", True, "refused"),
    ("10.8.0", True, "float32", False, "fp32"),
])
def test_fp16_follows_the_tensorrt_version(fake_onnx, fake_trt, tmp_path, version, fp16_flag,
                                           onnx_dtype, fp16, expect):
    trt = fake_trt(version=version, fp16_flag=fp16_flag)
    fake_onnx[1]["meta"] = _meta(dtype=onnx_dtype)
    plan = tmp_path / "m.plan"
    if expect == "refused":
        with pytest.raises(UsageError, match="export the ONNX with --fp16"):
            build_engine(fake_onnx[0], plan, tile=(8, 8, 8), fp16=fp16)
        return
    record = build_engine(fake_onnx[0], plan, tile=(8, 8, 8), fp16=fp16)
    strongly = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    assert trt.calls.network.flags == (strongly if expect == "strongly" else 0)
    has_flag = hasattr(trt.BuilderFlag, "FP16") and trt.BuilderFlag.FP16 in trt.calls.config.flags
    assert has_flag == (expect == "flag")
    assert record["tensorrt"]["fp16"] == (expect != "fp32")


def test_build_failures_are_one_sentence(fake_onnx, fake_trt, tmp_path, monkeypatch):
    trt = fake_trt()
    trt.calls.parse_errors = ["Unsupported operator Foo.", "second problem"]
    with pytest.raises(ModelError, match="could not parse .*Unsupported operator Foo \\(and 1 more"):
        build_engine(fake_onnx[0], tmp_path / "m.plan", tile=(8, 8, 8))
    trt.calls.parse_errors = []
    trt.calls.build_fails = True
    with pytest.raises(BackendError, match="out of device memory.*--max-tile"):
        build_engine(fake_onnx[0], tmp_path / "m.plan", tile=(8, 8, 8))
    assert not list(tmp_path.glob("m.plan*"))
    trt.calls.build_fails = False
    monkeypatch.setattr(trtmod, "_current_gpu", lambda: ("Tesla T4", (7, 5)))
    with pytest.raises(UsageError, match="--hardware-compatible.*sm_75"):
        build_engine(fake_onnx[0], tmp_path / "m.plan", tile=(8, 8, 8), hardware_compatible=True)


def test_build_reads_the_real_onnx_metadata(tiny_export, fake_trt, tmp_path):
    onnx_path, meta = tiny_export
    fake_trt()
    record = build_engine(onnx_path, tmp_path / "tiny.plan", tile=(16, 32, 32))
    assert record["weights_sha256"] == meta.weights_sha256
    assert record["tensorrt"]["profile"]["min"] == [1, 1, *([meta.size_multiple] * 3)]
    assert ModelMetadata.from_json(json.dumps(record)).halo == meta.halo


# --- the real thing (machines with TensorRT and a GPU) -----------------------------------

@pytest.mark.trt
@pytest.mark.gpu
def test_real_engine_matches_onnxruntime(tiny_export, tmp_path):
    import onnxruntime as ort
    from resin.runtime.backends.tensorrt import TensorRTBackend

    onnx_path, meta = tiny_export
    plan, cache = tmp_path / "tiny.plan", tmp_path / "timing.cache"
    record = build_engine(onnx_path, plan, tile=(16, 32, 32), max_tile=(24, 32, 40),
                          workspace_gib=1.0, timing_cache=cache)
    assert plan.stat().st_size > 0 and cache.stat().st_size > 0
    assert check_plan_compatible(plan).weights_sha256 == meta.weights_sha256
    assert record["tensorrt"]["profile"]["opt"] == [1, 1, 16, 32, 32]
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    backend = TensorRTBackend()
    assert backend.load(plan, "cuda").halo == meta.halo
    rng = np.random.default_rng(0)
    try:
        for shape in ((16, 32, 32), (8, 16, 24), (24, 32, 40)):
            x = rng.random((1, 1, *shape), dtype=np.float32)
            ref = session.run(None, {"input": x})[0]
            out = backend.infer(x)
            assert out.shape == ref.shape
            span = float(ref.max() - ref.min()) or 1.0
            assert float(np.max(np.abs(out - ref))) <= 1e-3 * span
    finally:
        backend.close()
