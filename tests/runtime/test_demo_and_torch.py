"""`resin demo` end to end, and the PyTorch backend against ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest
from resin.runtime import Enhancer


def test_demo_writes_files_and_prints_metrics(cli, fast_model, tmp_path):
    out = tmp_path / "demo"
    proc = cli("resin", "demo", "--out", str(out), "--shape", "16", "40", "40", "--engine",
               str(fast_model), "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    for name in ("raw.tif", "truth.tif", "enhanced.tif", "mip.png"):
        assert (out / name).is_file(), name
    assert "ssim" in proc.stdout and "raw input" in proc.stdout
    # rerunning into the same folder replaces the demo's own files
    again = cli("resin", "demo", "--out", str(out), "--shape", "16", "40", "40", "--engine",
                str(fast_model), "--device", "cpu", "--quiet")
    assert again.returncode == 0, again.stderr


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
