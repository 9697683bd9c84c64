"""The bioimage.io package: validates offline, describes the model truthfully, atomic writes."""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("bioimageio.spec")
pytest.importorskip("onnx")
torch = pytest.importorskip("torch")

from _checkpoints import make_checkpoint  # noqa: E402

from resin.errors import ModelError, OutputExistsError  # noqa: E402


class _NoNetwork:
    """Patches socket so that every connection attempt is recorded and refused.

    Recorded, not only refused: bioimage.io.spec turns failed URL checks into warnings, so
    an exception alone could go unnoticed.
    """

    def __init__(self, mp: pytest.MonkeyPatch) -> None:
        self.attempts: list[str] = []
        for owner, name in ((socket.socket, "connect"), (socket, "create_connection"),
                            (socket, "getaddrinfo")):
            mp.setattr(owner, name, self._refuse)

    def _refuse(self, *args, **kwargs):
        self.attempts.append(repr(args)[:200])
        raise OSError("network disabled in this test")


@pytest.fixture
def offline(monkeypatch):
    guard = _NoNetwork(monkeypatch)
    yield
    assert guard.attempts == []


def _write(*args, **kwargs) -> Path:
    from resin.export import write_bioimageio

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return write_bioimageio(*args, **kwargs)


@pytest.fixture(scope="module")
def package(tmp_path_factory, tiny_checkpoint, tiny_export) -> Path:
    """rdf.yaml of a package of the tiny model, written with the network unreachable."""
    onnx_path, _ = tiny_export
    with pytest.MonkeyPatch.context() as mp:
        guard = _NoNetwork(mp)
        rdf = _write(tiny_checkpoint, onnx_path, tmp_path_factory.mktemp("bio") / "pkg")
    assert guard.attempts == []
    return rdf


def _load(rdf: Path):
    from bioimageio.spec import load_description
    from bioimageio.spec.model.v0_5 import ModelDescr
    from resin.export._bioimageio import PAPER_URL

    descr = load_description(rdf, perform_io_checks=True, known_files={PAPER_URL: None})
    assert isinstance(descr, ModelDescr), descr.validation_summary.format()
    return descr


def _spatial(axes) -> dict[str, object]:
    return {str(a.id): a for a in axes if str(a.id) in ("z", "y", "x")}


def test_package_validates_offline(package, offline):
    from resin.export._bioimageio import validate_package

    summary = validate_package(package)
    assert summary.status in ("passed", "valid-format"), summary.format()
    assert summary.format_version.startswith("0.5.")
    assert all(d.status == "passed" for d in summary.details)
    files = {p.name for p in package.parent.iterdir()}
    assert {"rdf.yaml", "weights.onnx", "weights.pt", "test_input.npy", "test_output.npy",
            "cover.png", "README.md", "resin.json"} <= files


def test_validation_catches_a_tampered_file(package, tmp_path, offline):
    import shutil

    from resin.export._bioimageio import validate_package

    copy = tmp_path / "pkg"
    shutil.copytree(package.parent, copy)
    y = np.load(copy / "test_output.npy")
    np.save(copy / "test_output.npy", y + 1.0)
    assert validate_package(copy / "rdf.yaml").status == "failed"


def test_axes_halo_step_and_scale_match_the_metadata(package, tiny_export, offline):
    from bioimageio.spec.model.v0_5 import (
        ParameterizedSize,
        ScaleRangeDescr,
        SizeReference,
        SpaceOutputAxisWithHalo,
    )

    _, meta = tiny_export
    descr = _load(package)
    (ipt,), (out,) = descr.inputs, descr.outputs
    assert [str(a.id) for a in ipt.axes] == ["batch", "channel", "z", "y", "x"]
    assert [str(a.id) for a in out.axes] == ["batch", "channel", "z", "y", "x"]
    ins, outs = _spatial(ipt.axes), _spatial(out.axes)
    for i, axis in enumerate("zyx"):
        a, b = ins[axis], outs[axis]
        assert isinstance(a.size, ParameterizedSize)
        assert a.size.step == meta.size_multiple
        assert a.size.min % meta.size_multiple == 0 and a.size.min > 2 * meta.halo[i]
        assert a.unit == b.unit == "micrometer"
        assert a.scale == pytest.approx(meta.voxel_size[i], rel=1e-8)
        assert b.scale == pytest.approx(meta.voxel_size[i] / meta.scale[i], rel=1e-8)
        assert isinstance(b.size, SizeReference)
        assert (str(b.size.tensor_id), str(b.size.axis_id)) == ("input", axis)
        assert isinstance(b, SpaceOutputAxisWithHalo)
        assert b.halo == meta.halo[i] * meta.scale[i]
        # the sizes a consumer computes are whole: input n -> output n * scale
        n = a.size.get_size(3)
        assert b.size.get_size(b, a, ref_size=n) == n * meta.scale[i]
    (scale_range,) = [p for p in ipt.preprocessing if isinstance(p, ScaleRangeDescr)]
    assert scale_range.kwargs.min_percentile == meta.normalization.low_percentile
    assert scale_range.kwargs.max_percentile == meta.normalization.high_percentile
    assert [str(a) for a in scale_range.kwargs.axes] == ["z", "y", "x"]
    record = json.loads((package.parent / "resin.json").read_text())
    assert record == json.loads(meta.to_json())


def test_test_output_is_onnxruntime_on_the_test_input(package, tiny_export):
    import onnxruntime as ort

    _, meta = tiny_export
    x = np.load(package.parent / "test_input.npy")
    y = np.load(package.parent / "test_output.npy")
    assert x.dtype == np.float32 and x.ndim == 5 and x.shape[:2] == (1, 1)
    sess = ort.InferenceSession(str(package.parent / "weights.onnx"),
                                providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {"input": x})[0], y, rtol=1e-6, atol=1e-6)
    # normalized as the runtime does, so scale_range with the same percentiles keeps it
    lo, hi = np.percentile(x, [meta.normalization.low_percentile,
                               meta.normalization.high_percentile])
    np.testing.assert_allclose((x - lo) / (hi - lo + 1e-6), x, atol=1e-5)


def test_onnx_in_the_package_is_byte_identical(package, tiny_export):
    onnx_path, _ = tiny_export
    assert (package.parent / "weights.onnx").read_bytes() == onnx_path.read_bytes()


def test_torch_weights_reproduce_the_onnx_through_the_declared_architecture(package, offline):
    import importlib

    descr = _load(package)
    entry = descr.weights.pytorch_state_dict
    assert descr.weights.onnx.parent == "pytorch_state_dict"
    factory = getattr(importlib.import_module(entry.architecture.import_from),
                      str(entry.architecture.callable))
    net = factory(**entry.architecture.kwargs)
    state = torch.load(package.parent / str(entry.source.path), weights_only=True)
    net.load_state_dict(state, strict=True)
    x = np.load(package.parent / "test_input.npy")
    y = np.load(package.parent / "test_output.npy")
    with torch.no_grad():
        ref = net.eval()(torch.from_numpy(x)).numpy()
    assert np.max(np.abs(ref - y)) <= 1e-4 * float(y.max() - y.min())


def test_cover_is_a_two_to_one_png(package):
    data = (package.parent / "cover.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width == 2 * height


def test_an_existing_folder_is_refused_and_replaced_only_with_overwrite(
        tmp_path, tiny_checkpoint, tiny_export, offline):
    from resin.errors import UsageError

    onnx_path, _ = tiny_export
    out = tmp_path / "pkg"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError):
        _write(tiny_checkpoint, onnx_path, out)
    # not a package: --overwrite must not delete the user's folder
    with pytest.raises(UsageError, match="not a bioimage.io package"):
        _write(tiny_checkpoint, onnx_path, out, overwrite=True)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    (out / "keep.txt").unlink()
    rdf = _write(tiny_checkpoint, onnx_path, out)
    (out / "stale.txt").write_text("from an earlier package")
    rdf = _write(tiny_checkpoint, onnx_path, out, overwrite=True)
    assert rdf == out / "rdf.yaml" and rdf.is_file() and not (out / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]


def test_overwrite_never_replaces_a_folder_holding_an_input(tmp_path, tiny_checkpoint,
                                                           tiny_export, offline):
    import shutil

    from resin.errors import UsageError

    onnx_src, _ = tiny_export
    folder = tmp_path / "models"
    folder.mkdir()
    ckpt, onnx_path = folder / "m.pt", folder / "m.onnx"
    shutil.copy(tiny_checkpoint, ckpt)
    shutil.copy(onnx_src, onnx_path)
    (folder / "rdf.yaml").write_text("format_version: 0.5.4\n")
    with pytest.raises(UsageError, match="holds m.pt"):
        _write(ckpt, onnx_path, folder, overwrite=True)
    assert ckpt.is_file() and onnx_path.is_file()


def test_a_failure_midway_leaves_no_folder(tmp_path, tiny_checkpoint, tiny_export, monkeypatch,
                                           offline):
    import resin.export._bioimageio as bio

    onnx_path, _ = tiny_export

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(bio, "cover_image", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        _write(tiny_checkpoint, onnx_path, tmp_path / "pkg")
    assert list(tmp_path.iterdir()) == []


def test_a_package_that_does_not_validate_is_not_written(tmp_path, tiny_checkpoint,
                                                         tiny_export, monkeypatch, offline):
    import resin.export._bioimageio as bio

    monkeypatch.setattr(bio, "_sha256", lambda path: "0" * 64)
    with pytest.raises(ModelError, match="did not validate"):
        _write(tiny_checkpoint, tiny_export[0], tmp_path / "pkg")
    assert list(tmp_path.iterdir()) == []


def test_an_onnx_from_another_checkpoint_is_refused(tmp_path, tiny_export, offline):
    other = make_checkpoint(tmp_path / "other.pt", seed=1)
    onnx_path, _ = tiny_export
    with pytest.raises(ModelError, match="not exported from"):
        _write(other, onnx_path, tmp_path / "pkg")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.pt"]


def test_a_plan_and_its_sidecar_ride_along_as_attachments(tmp_path, tiny_checkpoint,
                                                          tiny_export, offline):
    onnx_path, meta = tiny_export
    plan = tmp_path / "tiny.plan"
    plan.write_bytes(b"not a real engine, only carried")
    plan.with_name("tiny.plan.json").write_text(meta.to_json())
    rdf = _write(tiny_checkpoint, onnx_path, tmp_path / "pkg", plan=plan)
    descr = _load(rdf)
    assert {str(a.source.path) for a in descr.attachments} == {
        "resin.json", "tiny.plan", "tiny.plan.json"}
    assert (rdf.parent / "tiny.plan").read_bytes() == plan.read_bytes()
    assert set(descr.weights.available_formats) == {"onnx", "pytorch_state_dict"}

    other = meta.model_copy(update={"weights_sha256": "0" * 64})
    plan.with_name("tiny.plan.json").write_text(other.to_json())
    with pytest.raises(ModelError, match="not built from this model"):
        _write(tiny_checkpoint, onnx_path, tmp_path / "pkg2", plan=plan)
    assert not (tmp_path / "pkg2").exists()


def test_a_float16_onnx_is_refused(tmp_path, tiny_checkpoint, offline):
    from resin.export import export_onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_onnx(tiny_checkpoint, tmp_path / "half.onnx", fp16=True)
    with pytest.raises(ModelError, match="float16"):
        _write(tiny_checkpoint, tmp_path / "half.onnx", tmp_path / "pkg")
    assert not (tmp_path / "pkg").exists()


def test_decimal_voxel_sizes_and_a_missing_voxel_size_validate(tmp_path, offline):
    from resin.export import export_onnx
    from resin.export._bioimageio import validate_package

    for i, voxel in enumerate([(0.3, 0.1, 0.108), None]):
        ckpt = make_checkpoint(tmp_path / f"m{i}.pt", features=(4,), voxel_size=voxel)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            meta = export_onnx(ckpt, tmp_path / f"m{i}.onnx")
        rdf = _write(ckpt, tmp_path / f"m{i}.onnx", tmp_path / f"pkg{i}", name="decimal voxels")
        assert validate_package(rdf).status != "failed"
        ins = _spatial(_load(rdf).inputs[0].axes)
        for k, axis in enumerate("zyx"):
            if voxel is None:
                assert ins[axis].unit is None and ins[axis].scale == 1.0
            else:
                assert ins[axis].scale == pytest.approx(meta.voxel_size[k], rel=1e-8)


def test_exact_scale_makes_bioimageio_size_arithmetic_exact():
    from resin.export._bioimageio import exact_scale

    n = np.arange(1, 1 << 16, dtype=np.float64)
    for v in (0.1, 0.3, 0.108, 0.406, 1 / 3, 2.5, 7.77):
        for s in (1, 2, 3, 5):
            out = exact_scale(v / s)
            assert abs(out * s - v) <= 1e-9 * v
            assert np.array_equal(np.floor(n * (out * s) / out), n * s)
            halo = np.arange(1, 200) * s
            assert np.array_equal(halo * out / (out * s), halo // s)


def test_missing_bioimageio_names_the_extra(tmp_path, monkeypatch, tiny_checkpoint, tiny_export):
    from resin.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "bioimageio.spec", None)
    with pytest.raises(MissingDependencyError, match=r"resin\[export\]") as info:
        _write(tiny_checkpoint, tiny_export[0], tmp_path / "pkg")
    assert info.value.exit_code == 2
    assert not (tmp_path / "pkg").exists()


def test_the_module_imports_nothing_heavy():
    code = ("import sys, resin.export, resin.export._bioimageio; "
            "heavy = {'torch', 'onnx', 'bioimageio'} & {m.split('.')[0] for m in sys.modules}; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)
