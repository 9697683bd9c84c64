"""ONNX export: parity, the metadata record, the measured halo, tiling with it, the CLI."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from _reference import one_tile_reference  # noqa: E402
from conftest import assert_one_line_error  # noqa: E402

from resin.errors import ModelError, OutputExistsError, ParityError, UsageError  # noqa: E402


def _export(ckpt, out, **kw):
    from resin.export import export_onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return export_onnx(ckpt, out, **kw)


def _torch_out(ckpt, x: np.ndarray) -> np.ndarray:
    from resin.export import load_generator

    _, net = load_generator(ckpt)
    with torch.no_grad():
        return net(torch.from_numpy(x[None, None].astype(np.float32)))[0, 0].numpy()


def test_parity_is_measured_and_recorded(tiny_export, tiny_checkpoint, rng):
    path, meta = tiny_export
    par = meta.model_extra["export"]["parity_max_rel_error"]
    assert 0.0 <= par["random"] <= 1e-4 and 0.0 <= par["patch"] <= 1e-4
    # an independent check on a shape the export never saw (dynamic axes)
    x = rng.uniform(0, 1, (12, 20, 28)).astype(np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(["output"], {"input": x[None, None]})[0][0, 0]
    ref = _torch_out(tiny_checkpoint, x)
    assert np.abs(got - ref).max() <= 1e-4 * float(ref.max() - ref.min())
    # the network is not the identity, so parity is not trivially true
    assert np.abs(ref - x).max() > 1e-3


def test_metadata_record_is_complete_and_sane(tiny_export):
    from resin.export import read_onnx_metadata

    path, meta = tiny_export
    read = read_onnx_metadata(path)
    assert read.model_dump() == meta.model_dump()
    raw = json.loads(onnx.load(str(path)).metadata_props[0].value)
    for key in ("format_version", "resin_version", "axes", "scale", "axial_angle_deg",
                "axial_vector", "receptive_field", "halo", "size_multiple", "input_dtype",
                "output_dtype", "voxel_size", "normalization", "weights_sha256", "export"):
        assert key in raw, key
    assert raw["axes"] == "zyx" and raw["size_multiple"] == 2
    assert raw["normalization"]["low_percentile"] == 0.5
    assert raw["voxel_size"] == [1.0, 0.5, 0.5]
    assert len(raw["weights_sha256"]) == 64
    # receptive field = 2 * halo + 1 for a symmetric network; halo within the architecture bound
    from resin.export._halo import reach_bound

    assert all(1 <= h <= reach_bound([4, 8]) for h in meta.halo)
    assert all(r >= h + 1 for r, h in zip(meta.receptive_field, meta.halo, strict=True))


def test_halo_thin_probe_agrees_with_full_probe(tiny_checkpoint):
    from resin.export import load_generator, measure_halo

    _, net = load_generator(tiny_checkpoint)
    thin = measure_halo(net, 2, max_positions=2, backgrounds=1)
    full = measure_halo(net, 2, max_positions=2, backgrounds=1, probe="full")
    assert thin == full


def test_halo_is_tight(tiny_checkpoint, rng):
    """A change exactly ``halo`` voxels away reaches the centre; one voxel further does not."""
    from resin.export import load_generator, measure_halo

    _, net = load_generator(tiny_checkpoint)
    net = net.double()
    _, halo = measure_halo(net, 2)
    side = 2 * halo[0] + 10
    side += side % 2
    base = torch.from_numpy(rng.uniform(0, 1, (1, 1, side, 8, 8)))
    with torch.no_grad():
        ref = net(base)[0, 0]
        c = side // 2
        reached = []
        for d in range(1, side // 2):
            x = base.clone()
            x[0, 0, c + d, 4, 4] += 8.0
            x[0, 0, c - d, 4, 4] += 8.0
            reached.append(float((net(x)[0, 0] - ref)[c].abs().max()) > 0)
    farthest = max(d for d, r in zip(range(1, side // 2), reached, strict=False) if r)
    assert farthest <= halo[0]


def test_tiling_with_recorded_halo_reproduces_whole_volume(tiny_export, rng):
    from resin.runtime import Enhancer
    from resin.runtime.runner import make_plan

    path, meta = tiny_export
    shape = (37, 45, 53)
    vol = (rng.gamma(2.0, 300.0, size=shape) + 80).astype(np.float32)
    tile = tuple(2 * h + 8 for h in meta.halo)  # small cores: many tiles in every axis
    with Enhancer(path, device="cpu", tile=tile, blend="gaussian", exact_halo=True) as enh:
        levels = enh.levels(vol)
        out = enh.enhance(vol)
        plan = make_plan(enh.engine, shape, enh.settings)
    assert all(len(a.starts) >= 3 for a in plan.axes), "several tiles along every axis"
    ref = one_tile_reference(path, vol, meta.halo, meta.size_multiple, levels.low, levels.high)
    span = float(ref.max() - ref.min())
    assert float(np.abs(out - ref).max()) <= 1e-4 * span


def test_multiplicative_generator_exports_and_tiles_like_the_whole_volume(tmp_path, rng):
    """The gain form (output = input x exp(correction)) keeps parity, and its measured halo
    (random backgrounds carry the correction's reach) makes tiling exact."""
    from _checkpoints import make_checkpoint
    from resin.runtime import Enhancer

    ckpt = make_checkpoint(tmp_path / "mul.pt", multiplicative=True)
    meta = _export(ckpt, tmp_path / "mul.onnx")
    assert meta.halo[0] > 0
    shape = (37, 45, 53)
    vol = (rng.gamma(2.0, 300.0, size=shape) + 80).astype(np.float32)
    tile = tuple(2 * h + 8 for h in meta.halo)
    with Enhancer(tmp_path / "mul.onnx", device="cpu", tile=tile, blend="gaussian") as enh:
        levels = enh.levels(vol)
        out = enh.enhance(vol)
    ref = one_tile_reference(tmp_path / "mul.onnx", vol, meta.halo, meta.size_multiple,
                             levels.low, levels.high)
    span = float(ref.max() - ref.min())
    assert float(np.abs(out - ref).max()) <= 1e-4 * span


def test_fp16_export_within_its_tolerance(tiny_checkpoint, tmp_path):
    meta = _export(tiny_checkpoint, tmp_path / "half.onnx", fp16=True)
    assert meta.input_dtype == "float16"
    par = meta.model_extra["export"]["parity_max_rel_error"]
    assert max(par.values()) <= 1e-2
    sess = ort.InferenceSession(str(tmp_path / "half.onnx"), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].type == "tensor(float16)"


def test_output_floor_is_exported(tmp_path, rng):
    from _checkpoints import make_checkpoint
    from resin.export import load_generator

    ckpt = make_checkpoint(tmp_path / "floor.pt", output_floor=0.0)
    meta = _export(ckpt, tmp_path / "floor.onnx")
    assert max(meta.model_extra["export"]["parity_max_rel_error"].values()) <= 1e-4
    x = rng.uniform(-0.5, 1.0, (8, 16, 16)).astype(np.float32)
    sess = ort.InferenceSession(str(tmp_path / "floor.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(["output"], {"input": x[None, None]})[0][0, 0]
    assert float(got.min()) == 0.0
    _, net = load_generator(ckpt)
    net.train()  # training sees the unclamped output (a clamp there can stall F)
    with torch.no_grad():
        assert float(net(torch.from_numpy(x[None, None])).min()) < 0.0


def test_static_export_has_a_fixed_shape(tiny_checkpoint, tmp_path):
    meta = _export(tiny_checkpoint, tmp_path / "s.onnx", static_tile=(8, 16, 24))
    assert meta.model_extra["export"]["static_tile"] == [8, 16, 24]
    sess = ort.InferenceSession(str(tmp_path / "s.onnx"), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].shape == [1, 1, 8, 16, 24]
    with pytest.raises(UsageError, match="multiple"):
        _export(tiny_checkpoint, tmp_path / "bad.onnx", static_tile=(7, 16, 16))


def test_failed_parity_leaves_no_file(tiny_checkpoint, tmp_path, monkeypatch):
    from resin.export import _onnx

    monkeypatch.setitem(_onnx.TOLERANCE, "float32", 0.0)
    monkeypatch.setattr(_onnx, "parity", lambda *a, **k: [1e-3, 1e-3])
    out = tmp_path / "m.onnx"
    with pytest.raises(ParityError, match="nothing was written"):
        _export(tiny_checkpoint, out)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_refused_and_untouched(tiny_checkpoint, tmp_path):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"precious")
    with pytest.raises(OutputExistsError):
        _export(tiny_checkpoint, out)
    assert out.read_bytes() == b"precious"


def test_external_data_outside_the_folder_is_refused(tiny_export, tmp_path):
    from onnx import TensorProto
    from resin.export import check_external_data

    path, _ = tiny_export
    model = onnx.load(str(path))
    init = model.graph.initializer[0]
    init.data_location = TensorProto.EXTERNAL
    entry = init.external_data.add()
    entry.key, entry.value = "location", "../../etc/passwd"
    init.ClearField("raw_data")
    bad = tmp_path / "evil.onnx"
    onnx.save(model, str(bad))
    with pytest.raises(ModelError, match="outside the model's folder"):
        check_external_data(bad)


# --- the CLI ---------------------------------------------------------------------------------


def test_cli_exports_beside_the_checkpoint(cli, tiny_checkpoint, tmp_path):
    import shutil

    ckpt = tmp_path / "model.pt"
    shutil.copy(tiny_checkpoint, ckpt)
    proc = cli("resin", "export", str(ckpt))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "model.onnx").is_file()
    assert "parity ONNX Runtime CPU vs torch" in proc.stderr + proc.stdout
    assert "Warning" not in proc.stderr  # torch's exporter notes are not the user's business
    again = cli("resin", "export", str(ckpt))
    assert "already exists" in assert_one_line_error(again)


@pytest.mark.parametrize("args,message", [
    (["--trt"], "tensorrt is not installed"),
    (["--plan", "x.plan"], "--plan only applies with --trt"),
    (["--static"], "--static needs --tile"),
    (["-o", "model.txt"], "must end in .onnx"),
    (["--tile", "8", "0", "8"], "positive integer"),
    (["--fp16", "--bioimageio", "pkg"], "needs a float32 model"),
    (["--author", "A. Person"], "--author only applies with --bioimageio"),
    (["--trt", "--static", "--tile", "8", "16", "16", "--max-tile", "8", "16", "16"],
     "--static takes exactly --tile"),
    (["--static", "--tile", "8", "16", "16", "--bioimageio", "pkg"], "dynamic-shape"),
])
def test_cli_bad_flags_exit_2_one_line(cli, tiny_checkpoint, tmp_path, args, message):
    import importlib.util

    if args == ["--trt"] and importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here")
    proc = cli("resin", "export", str(tiny_checkpoint), *args, cwd=tmp_path)
    assert message in assert_one_line_error(proc)
    assert not list(tmp_path.glob("*.onnx"))


def test_cli_output_folder_through_a_file_is_one_line(cli, tiny_checkpoint, tmp_path):
    (tmp_path / "taken").write_text("not a folder")
    for args in (["-o", "taken/m.onnx"], ["--bioimageio", "taken/pkg"]):
        proc = cli("resin", "export", str(tiny_checkpoint), *args, cwd=tmp_path)
        assert "cannot create the output folder" in assert_one_line_error(proc), args
    assert (tmp_path / "taken").read_text() == "not a folder"


def test_cli_bad_checkpoint_exits_2(cli, tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"\x80\x02not a checkpoint")
    assert "not a readable resin checkpoint" in assert_one_line_error(
        cli("resin", "export", str(bad)))
    assert "no such checkpoint" in assert_one_line_error(
        cli("resin", "export", str(tmp_path / "missing.pt")))


def test_halo_is_measured_without_the_output_floor(tmp_path):
    from _checkpoints import make_checkpoint
    from resin.export import load_generator, measure_halo

    from resin.checkpoint import load_checkpoint

    floor = load_generator(make_checkpoint(tmp_path / "f.pt", output_floor=0.0))[1]
    plain = load_generator(make_checkpoint(tmp_path / "p.pt"))[1]
    assert measure_halo(floor, 2, max_positions=2) == measure_halo(plain, 2, max_positions=2)
    assert floor.config.output_floor == 0.0  # the caller's network is left as it was
    assert load_checkpoint(tmp_path / "f.pt")["config"]["generator"]["output_floor"] == 0.0


def test_slim_checkpoint_keeps_inference_and_guards_its_source(tiny_checkpoint, tmp_path):
    import shutil

    from resin.checkpoint import load_checkpoint, save_generator_only

    src = tmp_path / "m.pt"
    shutil.copy(tiny_checkpoint, src)
    slim = save_generator_only(src, tmp_path / "slim.pt")
    data = load_checkpoint(slim)
    assert "optimizers" not in data and set(data["generator"]) == set(
        load_checkpoint(src)["generator"])
    with pytest.raises(OutputExistsError):
        save_generator_only(src, slim)
    with pytest.raises(UsageError, match="must not replace its source"):
        save_generator_only(src, src, overwrite=True)


def test_the_exporters_own_warnings_do_not_reach_the_user(tmp_path):
    """A constant sliced with a step (D's kernel) made torch's legacy exporter print
    'Constant folding - Only steps=1 ...' UserWarnings on every `resin export`."""
    import warnings

    import torch
    from resin.export._onnx import export_graph

    class Strided(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.arange(5.0))

        def forward(self, x):
            return x * self.w[::2].sum()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        used = export_graph(Strided().eval(), torch.rand(1, 1, 4, 4, 4), tmp_path / "s.onnx",
                            17, exporter="legacy")
    assert used == ("legacy", 17) and (tmp_path / "s.onnx").is_file()
    assert [str(w.message) for w in caught] == []
