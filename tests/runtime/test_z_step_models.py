"""Models trained with --z-step K run through the runtime: K output planes per input plane.

F was trained on z interpolated by K (``resin.data.lerp_planes``) and keeps its input's
shape; the runtime runs it behind that interpolation (``resin.models.ZInterpolated``).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from resin.checkpoint import build_generator, load_checkpoint, save_checkpoint  # noqa: E402
from resin.config import GeneratorConfig  # noqa: E402
from resin.data import lerp_planes  # noqa: E402
from resin.models import Generator, ZInterpolated  # noqa: E402


def _checkpoint(path, k: int, seed: int = 3):
    torch.manual_seed(seed)
    net = Generator(GeneratorConfig(features=[4, 8]))
    with torch.no_grad():  # a non-zero correction, so the network does something
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    save_checkpoint(path, {"resin_version": "test", "config": {"generator": net.config.model_dump()},
                           "generator": net.state_dict(), "step": 0,
                           "normalization": {"low_percentile": 0.5, "high_percentile": 99.9},
                           "scale": [float(k), 1.0, 1.0], "axial_angle_deg": 0.0,
                           "voxel_size": None})
    return net.eval()


def test_the_interpolation_is_trainings_and_adds_k_planes_per_plane(tmp_path):
    net = _checkpoint(tmp_path / "m.pt", 3)
    wrapped = build_generator(load_checkpoint(tmp_path / "m.pt"))
    assert isinstance(wrapped, ZInterpolated) and wrapped.k == 3
    x = np.random.default_rng(0).random((5, 8, 12), dtype=np.float32)
    with torch.inference_mode():
        got = wrapped(torch.from_numpy(x)[None, None])[0, 0].numpy()
        # training's grid: (Z - 1) K + 1 planes at t = j / K, the rest past the last plane
        grid = lerp_planes(x, np.arange(5 * 3) / 3)
        want = net(torch.from_numpy(np.ascontiguousarray(grid))[None, None])[0, 0].numpy()
    assert got.shape == (15, 8, 12)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_a_scale_one_checkpoint_is_the_plain_generator(tmp_path):
    _checkpoint(tmp_path / "m.pt", 1)
    assert isinstance(build_generator(load_checkpoint(tmp_path / "m.pt")), Generator)


def test_a_fractional_or_lateral_scale_is_refused(tmp_path):
    from resin.errors import ModelError

    _checkpoint(tmp_path / "m.pt", 2)
    ckpt = load_checkpoint(tmp_path / "m.pt")
    for scale in ([1.5, 1.0, 1.0], [2.0, 2.0, 1.0]):
        with pytest.raises(ModelError, match="z-step"):
            build_generator({**ckpt, "scale": scale})


def test_the_runtime_runs_a_z_step_model_tiled_as_one_whole_call(tmp_path):
    """Tiled by the runtime (torch backend, exact halo), a scale-2 model's output equals one
    call on the whole volume: K planes per input plane, no seams."""
    from resin.runtime import Enhancer

    _checkpoint(tmp_path / "m.pt", 2)
    rng = np.random.default_rng(1)
    vol = (rng.random((20, 40, 36)) * 1000 + 100).astype(np.float32)
    with Enhancer(tmp_path / "m.pt", backend="torch", device="cpu", tile=(16, 30, 30),
                  exact_halo=True) as enh:
        assert tuple(enh.metadata.scale) == (2, 1, 1)
        tiled = enh.enhance(vol)
    with Enhancer(tmp_path / "m.pt", backend="torch", device="cpu", tile=(20, 40, 36),
                  exact_halo=True) as whole:
        one = whole.enhance(vol)
    assert tiled.shape == one.shape == (40, 40, 36)
    span = float(one.max() - one.min())
    assert np.abs(tiled - one).max() <= 1e-4 * span
    assert np.abs(one[::2] - vol).max() > 1e-3 * span  # the network did something


def test_a_z_step_model_exports_to_onnx_and_runs_as_in_torch(tmp_path):
    """Export (its own parity check included) and ONNX Runtime give the K-fold planes."""
    pytest.importorskip("onnxruntime")
    from resin.export import export_onnx
    from resin.runtime import Enhancer

    _checkpoint(tmp_path / "m.pt", 2)
    meta = export_onnx(tmp_path / "m.pt", tmp_path / "m.onnx")
    assert tuple(meta.scale) == (2, 1, 1) and meta.halo[0] < meta.halo[1]
    vol = (np.random.default_rng(2).random((12, 24, 24)) * 1000).astype(np.float32)
    with Enhancer(tmp_path / "m.onnx", backend="onnxruntime", device="cpu") as a:
        out_onnx = a.enhance(vol)
    with Enhancer(tmp_path / "m.pt", backend="torch", device="cpu") as b:
        out_torch = b.enhance(vol)
    assert out_onnx.shape == out_torch.shape == (24, 24, 24)
    span = float(out_torch.max() - out_torch.min())
    assert np.abs(out_onnx - out_torch).max() <= 1e-4 * span
