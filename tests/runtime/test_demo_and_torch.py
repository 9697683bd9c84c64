"""`resin demo` end to end, and the PyTorch backend against ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_one_line_error
from resin.runtime import Enhancer


def test_demo_writes_files_and_prints_metrics(cli, fast_model, tmp_path):
    out = tmp_path / "demo"
    proc = cli("resin", "demo", "--out", str(out), "--shape", "16", "40", "40", "--engine",
               str(fast_model), "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    for name in ("raw.tif", "truth.tif", "enhanced.tif", "mip.png"):
        assert (out / name).is_file(), name
    assert "ssim" in proc.stdout and "raw input" in proc.stdout
    # rerunning into the same folder replaces the demo's files only when asked to
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    refused = cli("resin", "demo", "--out", str(out), "--shape", "12", "40", "40", "--engine",
                  str(fast_model), "--device", "cpu", "--quiet")
    line = assert_one_line_error(refused)
    assert "raw.tif" in line and "--overwrite" in line
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    again = cli("resin", "demo", "--out", str(out), "--shape", "12", "40", "40", "--engine",
                str(fast_model), "--device", "cpu", "--quiet", "--overwrite")
    assert again.returncode == 0, again.stderr
    assert (out / "raw.tif").read_bytes() != before["raw.tif"]


def test_demo_refuses_a_folder_holding_a_file_it_would_write_before_any_work(cli, tmp_path):
    out = tmp_path / "figures"
    out.mkdir()
    (out / "mip.png").write_bytes(b"my figure")
    proc = cli("resin", "demo", "--out", str(out), "--engine", str(tmp_path / "none.onnx"))
    line = assert_one_line_error(proc)
    assert "mip.png" in line and "--overwrite" in line
    assert [p.name for p in out.iterdir()] == ["mip.png"]
    assert (out / "mip.png").read_bytes() == b"my figure"


def test_demo_into_a_folder_through_a_file_is_one_line(cli, fast_model, tmp_path):
    (tmp_path / "taken").write_text("not a folder")
    proc = cli("resin", "demo", "--out", str(tmp_path / "taken" / "demo"), "--engine",
               str(fast_model), "--device", "cpu", "--shape", "12", "40", "40")
    assert "cannot create the output folder" in assert_one_line_error(proc)
    assert (tmp_path / "taken").read_text() == "not a folder"


@pytest.mark.slow
def test_torch_backend_matches_onnxruntime(tmp_path, model_factory, awkward_volume):
    torch = pytest.importorskip("torch")
    from resin.checkpoint import save_checkpoint
    from resin.config import GeneratorConfig
    from resin.models import Generator

    torch.manual_seed(0)  # the same weights as model_factory(seed=0)
    net = Generator(GeneratorConfig(features=[4, 8]))
    ckpt = tmp_path / "model.pt"
    save_checkpoint(ckpt, {"resin_version": "test", "config": {"generator": net.config.model_dump()},
                           "generator": net.state_dict(), "step": 0,
                           "normalization": {"low_percentile": 0.5, "high_percentile": 99.9},
                           "scale": [1, 1, 1], "axial_angle_deg": 0.0, "voxel_size": None})
    onnx = model_factory(tmp_path / "model.onnx", seed=0)
    vol = awkward_volume.astype(np.float32)
    with Enhancer(ckpt, backend="torch", device="cpu", tile=(40, 48, 48)) as a:
        assert a.engine.name == "torch"
        assert min(a.metadata.halo) > 0
        out_t = a.enhance(vol)
    with Enhancer(onnx, device="cpu", tile=(40, 48, 48)) as b:
        out_o = b.enhance(vol)
    span = float(out_o.max() - out_o.min())
    assert np.abs(out_t - out_o).max() <= 1e-3 * span


def test_torch_backend_channels_last_matches_plain_network(tmp_path):
    """On the CPU the backend runs the network in the channels-last 3-D layout (oneDNN for
    a batch of one); its output must be the plain-layout network's, tile by tile."""
    torch = pytest.importorskip("torch")
    from resin.runtime.backends.torch import TorchBackend

    from resin.checkpoint import build_generator, load_checkpoint, save_checkpoint
    from resin.config import GeneratorConfig
    from resin.models import Generator

    torch.manual_seed(3)
    net = Generator(GeneratorConfig(features=[4, 8]))
    with torch.no_grad():  # a non-zero correction, so the residual is not the whole output
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ckpt = tmp_path / "model.pt"
    save_checkpoint(ckpt, {"resin_version": "test", "config": {"generator": net.config.model_dump()},
                           "generator": net.state_dict(), "step": 0,
                           "normalization": {"low_percentile": 0.5, "high_percentile": 99.9},
                           "scale": [1, 1, 1], "axial_angle_deg": 0.0, "voxel_size": None})
    plain = build_generator(load_checkpoint(ckpt))
    engine = TorchBackend()
    engine.load(ckpt, "cpu")
    rng = np.random.default_rng(0)
    try:
        for shape in ((1, 1, 12, 16, 20), (2, 1, 8, 24, 12)):
            tile = rng.random(shape, dtype=np.float32)
            got = engine.infer(tile)
            with torch.inference_mode():
                want = plain(torch.from_numpy(tile)).numpy()
            assert got.shape == want.shape and got.flags.c_contiguous
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
            assert np.abs(want - tile).max() > 1e-3  # the network did something
    finally:
        engine.close()
