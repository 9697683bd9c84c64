from __future__ import annotations

import itertools

import numpy as np
import pytest
import tifffile

from resin.config import DataConfig, NormalizationConfig
from resin.data import (
    Normalization,
    PatchSampler,
    SeriesSampler,
    apply_symmetry,
    compute_normalization,
    psf_symmetries,
    undo_symmetry,
    volume_sample,
)
from resin.errors import VolumeError
from resin.io import open_volume
from resin.simulate import gaussian_psf


def _sampler(path, **data) -> PatchSampler:
    reader = open_volume(path)
    cfg = DataConfig(**{"patch_size": (8, 8, 8), "foreground_tries": 2, **data})
    sample = volume_sample(reader, cfg.percentile_sample_voxels)
    norm = compute_normalization(sample, NormalizationConfig())
    return PatchSampler(reader, cfg, norm, foreground_level=0.0, seed=3)


def test_normalization_is_global_percentiles(rng):
    x = rng.random(10_000).astype(np.float32) * 100
    n = compute_normalization(x, NormalizationConfig(low_percentile=1, high_percentile=99))
    lo, hi = np.percentile(x, [1, 99])
    assert (n.low, n.high) == pytest.approx((lo, hi))
    np.testing.assert_allclose(n.apply(x), (x - lo) / (hi - lo), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(n.invert(n.apply(x)), x, rtol=1e-4, atol=1e-3)


def test_constant_volume_is_refused():
    with pytest.raises(VolumeError, match="empty or constant"):
        compute_normalization(np.full(1000, 7.0, np.float32), NormalizationConfig())


def test_patches_use_the_global_normalization_not_per_patch(tmp_path, tiny_volume):
    path = tmp_path / "v.tif"
    tifffile.imwrite(path, tiny_volume)
    s = _sampler(path, augment=False)
    patch = s.read_patch((2, 3, 4))
    expected = s.norm.apply(tiny_volume[2:10, 3:11, 4:12])
    np.testing.assert_array_equal(patch, expected)


def test_z_step_interpolates_linearly(tmp_path):
    vol = np.repeat(np.arange(10, dtype=np.float32)[:, None, None] * 10, 8, 1).repeat(8, 2)
    path = tmp_path / "z.tif"
    tifffile.imwrite(path, vol)
    s = _sampler(path, z_step=3, augment=False)
    assert s.shape == (28, 8, 8)
    s_id = Normalization(0, 100, 0.0, 1.0)
    s.norm = s_id
    patch = s.read_patch((4, 0, 0))
    np.testing.assert_allclose(patch[:, 0, 0], (4 + np.arange(8)) / 3 * 10, rtol=1e-6)


def test_patches_past_a_face_are_the_runtimes_face_padding(tmp_path, rng):
    """A patch reaching past the faces holds what the runtime's padding feeds the network
    there (numpy 'edge'); with a z step, the first or last of the interpolated planes."""
    vol = (rng.random((12, 14, 16)) * 1000).astype(np.float32)
    path = tmp_path / "v.tif"
    tifffile.imwrite(path, vol)
    s = _sampler(path, augment=False)
    s.norm = Normalization(0, 100, 0.0, 1000.0)
    padded = np.pad(vol / 1000, 5, mode="edge")
    for start in [(-2, 3, -1), (5, -2, 10), (-5, -5, -5), (0, 0, 0), (6, 9, 13)]:
        want = padded[tuple(slice(a + 5, a + 5 + 8) for a in start)]
        np.testing.assert_allclose(s.read_patch(start), want, rtol=1e-6)
    k = _sampler(path, z_step=2, augment=False)
    k.norm = s.norm
    fine = np.stack([(vol[i // 2] + vol[(i + 1) // 2]) / 2 for i in range(23)]) / 1000
    fine_padded = np.pad(fine, ((5, 5), (0, 0), (0, 0)), mode="edge")
    for t0 in (-3, 17):
        np.testing.assert_allclose(k.read_patch((t0, 2, 2)),
                                   fine_padded[t0 + 5:t0 + 13, 2:10, 2:10], rtol=1e-5)


def test_patches_reach_past_the_faces_only_where_padding_keeps_the_psf(tmp_path, rng):
    vol = (rng.random((16, 16, 48)) * 1000).astype(np.float32)
    path = tmp_path / "v.tif"
    tifffile.imwrite(path, vol)
    axial = _sampler(path, face_margin=0.25)
    starts = np.array([axial._random_start() for _ in range(400)])
    assert axial.holdout
    assert starts.min(axis=0).tolist() == [-2, -2, -2]
    # the far x face stays inside: the held-out strip lies beyond it
    assert starts.max(axis=0).tolist() == [10, 10, axial.train_x_max]
    reader = open_volume(path)
    cfg = DataConfig(patch_size=(8, 8, 8), face_margin=0.25)
    norm = Normalization(0, 1000, 0.0, 1.0)
    oblique = PatchSampler(reader, cfg, norm, 0.0, angle_deg=45.0, seed=1)
    starts = np.array([oblique._random_start() for _ in range(400)])
    assert starts.min(axis=0).tolist() == [0, -2, 0]
    assert starts.max(axis=0).tolist() == [8, 10, oblique.train_x_max]
    none = _sampler(path)  # the default keeps every patch inside
    assert none.real_batch() is None
    assert np.array([none._random_start() for _ in range(200)]).min() == 0


def test_volume_smaller_than_patch_is_refused(tmp_path, tiny_volume):
    path = tmp_path / "v.tif"
    tifffile.imwrite(path, tiny_volume)
    with pytest.raises(VolumeError, match="smaller than the training patch"):
        _sampler(path, patch_size=(32, 32, 32))


def test_sampler_state_round_trip(tmp_path, tiny_volume):
    path = tmp_path / "v.tif"
    tifffile.imwrite(path, tiny_volume)
    s = _sampler(path)
    state = s.state()
    first = s.batch()
    s.set_state(state)
    np.testing.assert_array_equal(s.batch(), first)


def test_oblique_augmentation_keeps_the_psf_axis(tmp_path, rng):
    """Every oblique augmentation maps a line along (1, 0, 1) onto a line along (1, 0, 1)."""
    vol = rng.integers(0, 10, size=(8, 8, 8)).astype(np.uint16)
    path = tmp_path / "o.tif"
    tifffile.imwrite(path, vol)
    reader = open_volume(path)
    s = PatchSampler(reader, DataConfig(patch_size=(8, 8, 8)), Normalization(0, 100, 0, 1), 0.0,
                     angle_deg=45.0, seed=0)
    line = np.zeros((8, 8, 8), np.float32)
    for i in range(8):
        line[i, 3, i] = 1
    for _ in range(20):
        out = s.augment(line)
        z, _, x = np.nonzero(out)
        assert np.all(z == x)


@pytest.mark.parametrize("angle", [0.0, 45.0, -30.0])
def test_the_psf_symmetries_keep_the_psf_and_no_other_flip_does(angle):
    psf = gaussian_psf((5.0, 1.0, 1.0), angle)
    kept = psf_symmetries(oblique=bool(angle))
    assert kept[0] == (False, False, False, False)
    assert len(kept) == (4 if angle else 16)
    for op in itertools.product((False, True), repeat=4):
        turned = apply_symmetry(psf, op)
        same = turned.shape == psf.shape and np.allclose(turned, psf, atol=1e-7)
        assert same == (op in kept), op


def test_each_symmetry_is_undone_exactly(rng):
    v = rng.random((5, 7, 7), dtype=np.float32)
    for op in psf_symmetries(oblique=False):
        turned = apply_symmetry(v, op)
        assert turned.flags.c_contiguous
        np.testing.assert_array_equal(undo_symmetry(turned, op), v)
    assert not np.array_equal(apply_symmetry(v, (False, False, False, True)), v)


def test_foreground_filter_prefers_bright_patches(tmp_path, rng):
    vol = rng.poisson(10, size=(16, 64, 64)).astype(np.uint16)
    vol[4:12, 40:48, 40:48] += 1000
    path = tmp_path / "f.tif"
    tifffile.imwrite(path, vol)
    reader = open_volume(path)
    cfg = DataConfig(patch_size=(8, 8, 8), foreground_tries=200, augment=False)
    norm = compute_normalization(vol.ravel().astype(np.float32), NormalizationConfig())
    s = PatchSampler(reader, cfg, norm, foreground_level=0.5, seed=1, holdout=False)
    assert all(s.sample().max() > 0.5 for _ in range(5))


def test_rotated_batch_is_data_everywhere_and_is_trainings_rotation(tmp_path):
    """An oblique R seen through the sampler: every voxel is resampled from data (no
    filled corners), it is scipy's trilinear resampling of the block read around the
    patch centre, and that is the rotation training's R (torch) applies to a patch."""
    torch = pytest.importorskip("torch")
    from scipy.ndimage import affine_transform

    from resin.train.geometry import Geometry

    vol = (np.random.default_rng(5).random((48, 48, 48)) * 1000).astype(np.float32)
    path = tmp_path / "v.tif"
    tifffile.imwrite(path, vol)
    reader = open_volume(path)
    cfg = DataConfig(patch_size=(16, 16, 16), batch_size=2, augment=False, foreground_tries=1)

    def sampler() -> PatchSampler:
        return PatchSampler(reader, cfg, Normalization(0, 100, 0.0, 1000.0), 0.0,
                            angle_deg=45.0, seed=0, holdout=False)

    b = Geometry((16, 16, 16), 45.0).rotation_matrix("y")
    out = sampler().rotated_batch(b)
    assert out is not None and out.shape == (2, 1, 16, 16, 16)
    # corners included, every voxel interpolates data in [0, 1] (outside the block would be 0)
    assert float(out.min()) > 0.0 and float(out.max()) <= 1.0
    # the first draw again, resampled by scipy from the block around the same centre
    rng = sampler().rng
    size = [int(np.ceil(2 * h)) + 2 for h in (16 - 1) / 2 * np.abs(b).sum(axis=1)]
    start = [int(rng.integers(0, 48 - n + 1)) for n in size]
    block = vol[tuple(slice(a, a + n) for a, n in zip(start, size, strict=True))] / 1000.0
    centre = (np.asarray(size) - 1) / 2
    ref = affine_transform(block, b, offset=centre - b @ np.full(3, 7.5), output_shape=(16,) * 3,
                           order=1)
    np.testing.assert_allclose(out[0, 0], ref, atol=1e-5)
    # training's R on a 32-cube agrees with the same resampling where R has data
    g = Geometry((32, 32, 32), 45.0)
    cube = vol[:32, :32, :32] / 1000.0
    torch_r = g.rotate(torch.from_numpy(cube.astype(np.float32))[None, None], "y")[0, 0].numpy()
    c = np.full(3, 15.5)
    scipy_r = affine_transform(cube, b, offset=c - b @ c, output_shape=(32,) * 3, order=1)
    np.testing.assert_allclose(torch_r[g.valid], scipy_r[g.valid], atol=1e-5)


def test_rotated_batch_is_none_when_the_volume_is_too_small(tmp_path):
    from resin.train.geometry import Geometry

    pytest.importorskip("torch")
    path = tmp_path / "v.tif"
    tifffile.imwrite(path, np.ones((16, 40, 40), np.uint16))
    reader = open_volume(path)
    s = PatchSampler(reader, DataConfig(patch_size=(16, 16, 16)), Normalization(0, 1, 0, 1),
                     0.0, angle_deg=45.0, holdout=False)
    assert s.rotated_batch(Geometry((16, 16, 16), 45.0).rotation_matrix("x")) is None


def test_the_discriminators_real_patches_stay_inside(tmp_path, rng, monkeypatch):
    vol = (rng.random((16, 16, 48)) * 1000).astype(np.float32)
    path = tmp_path / "v.tif"
    tifffile.imwrite(path, vol)
    s = _sampler(path, face_margin=0.5, batch_size=4)
    starts = []
    read = s.read_patch
    monkeypatch.setattr(s, "read_patch", lambda start, size=None: (starts.append(start),
                                                                   read(start, size))[1])
    for _ in range(50):
        assert s.real_batch().shape == (4, 1, 8, 8, 8)
    lo, hi = np.array(starts).min(axis=0), np.array(starts).max(axis=0)
    assert lo.min() >= 0 and np.all(hi <= [8, 8, s.train_x_max])
    starts.clear()
    for _ in range(50):
        s.batch()
    assert np.array(starts).min() < 0  # the training batch does reach past the faces


def _series_sampler(tmp_path, volumes, seed=0):
    """A SeriesSampler over a TZYX TIFF of ``volumes``, as training builds it."""
    from resin.config import TrainConfig
    from resin.train.trainer import _sampler, open_readers

    path = tmp_path / "series.tif"
    tifffile.imwrite(path, np.stack(volumes).astype(np.uint16), imagej=True,
                     metadata={"axes": "TZYX"})
    config = TrainConfig.model_validate({"seed": seed, "data": {
        "patch_size": (8, 8, 8), "batch_size": 4, "foreground_tries": 1, "time": "all"}})
    readers = open_readers(path, None, "all")
    return _sampler(readers, config), readers


def test_a_series_sampler_draws_every_time_point_each_under_its_own_levels(tmp_path, rng):
    """Patches come from every time point, each normalized by that time point's levels (as
    resin-run --time all normalizes each), so a time point ten times brighter gives patches
    on the same scale; the state restores the draws exactly."""
    base = rng.random((12, 16, 48)) * 100
    sampler, readers = _series_sampler(tmp_path, [base, 10 * base[..., ::-1], 3 * base])
    try:
        assert isinstance(sampler, SeriesSampler) and len(sampler.samplers) == 3
        assert [s.reader.time for s in sampler.samplers] == [0, 1, 2]
        highs = [s.norm.high for s in sampler.samplers]
        assert highs[1] == pytest.approx(10 * highs[0], rel=0.02)
        assert highs[2] == pytest.approx(3 * highs[0], rel=0.02)
        seen: list[int] = []
        for t, s in enumerate(sampler.samplers):  # which time point each draw reads
            def sample(inside=False, t=t, draw=s.sample):
                seen.append(t)
                return draw(inside)
            s.sample = sample
        state = sampler.state()
        batches = [sampler.batch() for _ in range(6)]
        assert set(seen) == {0, 1, 2}
        flat = np.concatenate([b.ravel() for b in batches])
        assert 0.8 < np.percentile(flat, 99.9) < 1.2  # one scale for all time points
        drawn, seen[:] = list(seen), []
        sampler.set_state(state)
        for b in batches:
            np.testing.assert_array_equal(sampler.batch(), b)
        assert seen == drawn
        val = sampler.validation_patches(3, seed=1)
        assert len(val) == 3 and all(v.shape == (8, 8, 8) for v in val)
    finally:
        for r in readers:
            r.close()


def test_a_constant_time_point_is_left_out_of_a_series(tmp_path, rng, caplog, monkeypatch):
    from resin import _log

    monkeypatch.setattr(_log.logger, "propagate", True)  # to caplog, whatever ran before
    caplog.set_level("WARNING", logger="resin")
    base = rng.random((12, 16, 48)) * 100
    sampler, readers = _series_sampler(tmp_path, [base, np.full_like(base, 7), base[::-1]])
    try:
        assert [s.reader.time for s in sampler.samplers] == [0, 2]
        assert "(time point 1) is constant" in caplog.text
    finally:
        for r in readers:
            r.close()
    with pytest.raises(VolumeError, match="every time point trained on is empty or constant"):
        _series_sampler(tmp_path, [np.full_like(base, 7), np.full_like(base, 9)])


def test_a_long_series_trains_on_time_points_spread_over_it(tmp_path, rng, monkeypatch):
    """--time all opens at most SERIES_TIME_POINTS readers (each TIFF reader parses the whole
    file and holds file handles), first to last, evenly spaced."""
    from resin.train import trainer

    assert trainer.series_time_points(5) == [0, 1, 2, 3, 4]
    assert trainer.series_time_points(300) == [round(i * 299 / 15) for i in range(16)]
    assert trainer.series_time_points(300)[-1] == 299
    monkeypatch.setattr(trainer, "SERIES_TIME_POINTS", 3)
    base = rng.random((12, 16, 48)) * 100
    sampler, readers = _series_sampler(tmp_path, [base * (t + 1) for t in range(7)])
    try:
        assert [r.time for r in readers] == [0, 3, 6]
        assert [s.reader.time for s in sampler.samplers] == [0, 3, 6]
    finally:
        for r in readers:
            r.close()
