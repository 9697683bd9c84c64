"""Tiled, blended, streamed inference equals one-tile inference of the whole volume."""

from __future__ import annotations

import numpy as np
import pytest
from _reference import one_tile_reference
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from resin.runtime import Enhancer
from resin.runtime.runner import make_plan


@pytest.mark.parametrize("shape,tile,overlap,blend", [
    ((13, 37, 29), (32, 32, 32), 0, "gaussian"),
    ((21, 19, 45), (32, 40, 40), 3, "cosine"),
    ((5, 50, 7), (26, 34, 26), 1, "constant"),
])
def test_tiled_equals_one_tile(onnx_model, rng, shape, tile, overlap, blend):
    vol = (rng.gamma(2.0, 200.0, size=shape) + 50).astype(np.float32)
    with Enhancer(onnx_model, device="cpu", tile=tile, overlap=overlap, blend=blend) as enh:
        meta = enh.metadata
        levels = enh.levels(vol)
        out = enh.enhance(vol)
        n_tiles = make_plan(enh.engine, shape, enh.settings).n_tiles
    assert n_tiles > 1, "the test must actually tile"
    ref = one_tile_reference(onnx_model, vol, meta.halo, meta.size_multiple, levels.low,
                              levels.high)
    assert out.shape == vol.shape and out.dtype == np.float32
    span = float(ref.max() - ref.min())
    err = float(np.abs(out - ref).max())
    assert err <= 1e-3 * span, (err, span)


@pytest.mark.parametrize("shape,tile", [
    ((13, 37, 29), (26, 32, 32)),
    ((40, 19, 45), (32, 40, 30)),
    ((5, 50, 7), (26, 34, 26)),
    ((33, 33, 33), (30, 32, 28)),
])
def test_zero_faces_equal_one_call_on_the_volume(onnx_model, rng, shape, tile):
    """faces="zeros": the tiles reproduce one network call over the volume itself (padded at
    the end to the size multiple only), whose faces meet the network's zero padding."""
    vol = (rng.gamma(2.0, 200.0, size=shape) + 50).astype(np.float32)
    with Enhancer(onnx_model, device="cpu", tile=tile, faces="zeros", exact_halo=True) as enh:
        meta = enh.metadata
        levels = enh.levels(vol)
        out = enh.enhance(vol)
        plan = make_plan(enh.engine, shape, enh.settings)
    assert plan.n_tiles > 1 and plan.faces == "zeros", "the test must tile without padding"
    ref = one_tile_reference(onnx_model, vol, meta.halo, meta.size_multiple, levels.low,
                             levels.high, pad=(0, 0, 0))
    span = float(ref.max() - ref.min())
    assert float(np.abs(out - ref).max()) <= 1e-5 * span
    repeat = one_tile_reference(onnx_model, vol, meta.halo, meta.size_multiple, levels.low,
                                levels.high)
    assert float(np.abs(repeat - ref).max()) > 1e-4 * span, "the face modes must differ"


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=st.tuples(st.integers(1, 40), st.integers(1, 48), st.integers(1, 48)),
       tile=st.tuples(st.integers(26, 44), st.integers(26, 44), st.integers(26, 44)))
def test_zero_faces_equal_one_call_for_any_shape_and_tile(onnx_model, shape, tile):
    vol = np.random.default_rng(sum(shape)).gamma(2.0, 200.0, size=shape).astype(np.float32)
    with Enhancer(onnx_model, device="cpu", tile=tile, faces="zeros", exact_halo=True) as enh:
        levels = enh.levels(vol)
        out = enh.enhance(vol)
        meta = enh.metadata
    ref = one_tile_reference(onnx_model, vol, meta.halo, meta.size_multiple, levels.low,
                             levels.high, pad=(0, 0, 0))
    span = max(float(ref.max() - ref.min()), 1e-3)
    assert float(np.abs(out - ref).max()) <= 1e-5 * span + 1e-4


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=st.tuples(st.integers(1, 40), st.integers(1, 48), st.integers(1, 48)),
       tile=st.tuples(st.integers(28, 44), st.integers(28, 44), st.integers(28, 44)),
       pad=st.integers(0, 16))  # 28: the smallest tile for every padding of a halo of 12
def test_faces_padded_by_n_equal_one_call_on_the_volume_padded_by_n(onnx_model, shape, tile,
                                                                     pad):
    """faces="N": the tiles reproduce one call over the volume with each face plane
    repeated min(N, halo) voxels, its faces meeting the network's zero padding beyond."""
    vol = np.random.default_rng(sum(shape) + pad).gamma(2.0, 200.0, size=shape).astype(
        np.float32)
    with Enhancer(onnx_model, device="cpu", tile=tile, faces=str(pad), exact_halo=True) as enh:
        levels = enh.levels(vol)
        out = enh.enhance(vol)
        meta = enh.metadata
        plan = make_plan(enh.engine, shape, enh.settings)
    padding = tuple(min(pad, h) for h in meta.halo)
    assert plan.pad == padding
    ref = one_tile_reference(onnx_model, vol, meta.halo, meta.size_multiple, levels.low,
                             levels.high, pad=padding)
    span = max(float(ref.max() - ref.min()), 1e-3)
    assert float(np.abs(out - ref).max()) <= 1e-5 * span + 1e-4


def test_a_face_mode_that_is_not_one_is_refused(onnx_model):
    from resin.errors import UsageError

    for faces in ("mirror", "-2", "8.5", ""):
        with pytest.raises(UsageError, match="repeat, zeros or a number of voxels"):
            Enhancer(onnx_model, device="cpu", faces=faces)


def test_integer_output_is_rounded_and_clipped(onnx_model, awkward_volume):
    with Enhancer(onnx_model, device="cpu", tile=(32, 32, 32)) as enh:
        out = enh.enhance(awkward_volume)
        levels = enh.levels(awkward_volume)
    ref = one_tile_reference(onnx_model, awkward_volume, (12, 12, 12), 2, levels.low,
                              levels.high)
    expect = np.clip(np.round(ref), 0, 65535).astype(np.uint16)
    assert out.dtype == np.uint16
    assert np.abs(out.astype(np.int64) - expect).max() <= 1


@pytest.mark.parametrize("faces", ["repeat", "zeros"])
def test_stream_plane_by_plane_equals_enhance(fast_model, awkward_volume, faces):
    with Enhancer(fast_model, device="cpu", tile=(8, 16, 16), faces=faces) as enh:
        levels = enh.levels(awkward_volume)
        whole = enh.enhance(awkward_volume)
        with enh.stream(awkward_volume.shape, awkward_volume.dtype, levels=levels) as s:
            for plane in awkward_volume:
                s.push(plane)
        np.testing.assert_array_equal(s.result, whole)
        # slabs of uneven sizes give the same bytes
        with enh.stream(awkward_volume.shape, awkward_volume.dtype, levels=levels) as s2:
            s2.push(awkward_volume[:4])
            s2.push(awkward_volume[4:5])
            s2.push(awkward_volume[5:])
        np.testing.assert_array_equal(s2.result, whole)


def test_stream_flushes_chunks_before_the_end(fast_model, tmp_path, rng):
    from resin.io import read_volume

    deep = rng.integers(0, 4000, size=(40, 12, 10)).astype(np.uint16)
    out = tmp_path / "live.zarr"
    with Enhancer(fast_model, device="cpu", tile=(12, 12, 12)) as enh:
        levels = enh.levels(deep)
        whole = enh.enhance(deep, levels=levels)
        s = enh.stream(deep.shape, deep.dtype, out=out, levels=levels)
        for plane in deep[:20]:
            s.push(plane)
        written = s.sync()
        assert 0 < written < deep.shape[0], "no chunk was written while planes arrived"
        partial = read_volume(str(out) + ".partial")  # named .partial until complete
        np.testing.assert_array_equal(partial[:written], whole[:written])
        assert not out.exists()
        for plane in deep[20:]:
            s.push(plane)
        s.close()
    np.testing.assert_array_equal(read_volume(out), whole)


def test_stream_refuses_wrong_planes(onnx_model):
    from resin.errors import VolumeError

    with Enhancer(onnx_model, device="cpu") as enh:
        s = enh.stream((4, 8, 8), np.uint16)
        with pytest.raises(VolumeError, match="does not match"):
            s.push(np.zeros((9, 8), np.uint16))
        s.push(np.zeros((3, 8, 8), np.uint16))
        with pytest.raises(VolumeError, match="closed after 3 of 4"):
            s.close()


def test_enhancer_is_thread_safe(fast_model, awkward_volume):
    from concurrent.futures import ThreadPoolExecutor

    with Enhancer(fast_model, device="cpu", tile=(10, 16, 16)) as enh:
        expect = enh.enhance(awkward_volume)
        with ThreadPoolExecutor(3) as pool:
            results = list(pool.map(lambda _: enh.enhance(awkward_volume), range(3)))
    for r in results:
        np.testing.assert_array_equal(r, expect)


def test_bad_arrays(onnx_model):
    from resin.errors import VolumeError

    with Enhancer(onnx_model, device="cpu") as enh:
        with pytest.raises(VolumeError, match="3D"):
            enh.enhance(np.zeros((4, 4), np.uint16))
        with pytest.raises(VolumeError, match="empty"):
            enh.enhance(np.zeros((0, 4, 4), np.uint16))
        bad = np.ones((4, 8, 8), np.float32)
        bad[1, 2, 3] = np.nan
        with pytest.raises(VolumeError, match="NaN"):
            enh.enhance(bad)


class _UpsampleZ:
    """A fake engine: nearest-neighbour 2x along z (checks the planner's scale handling)."""

    name = "fake"
    device = "cpu"

    def __init__(self) -> None:
        from resin.metadata import ModelMetadata, NormalizationRecord

        self.metadata = ModelMetadata(scale=(2.0, 1.0, 1.0), halo=(2, 2, 2), size_multiple=2,
                                      normalization=NormalizationRecord(low_percentile=1,
                                                                        high_percentile=99))

    def load(self, path, device):
        return self.metadata

    def infer(self, tile):
        return np.repeat(tile, 2, axis=2)

    def close(self):
        pass


def test_upsampling_model_scales_output(rng):
    from resin.runtime.runner import TileSettings, enhance_array

    vol = rng.integers(0, 3000, size=(9, 21, 17)).astype(np.uint16)
    out = enhance_array(_UpsampleZ(), vol, TileSettings(tile=(8, 12, 10), blend="cosine"))
    assert out.shape == (18, 21, 17)
    np.testing.assert_array_equal(out, np.repeat(vol, 2, axis=0))


def test_nan_found_mid_run_keeps_finished_blocks_and_the_old_output(fast_model, tmp_path,
                                                                    monkeypatch):
    """Defect: any error on a fresh run deleted the output and its journal, and with
    --overwrite the user's previous output too."""
    import tifffile
    from resin.runtime import runner
    from resin.runtime.normalize import Levels

    from resin.errors import VolumeError
    from resin.io import write_volume

    # a sample that missed the NaN
    monkeypatch.setattr(runner, "levels_for", lambda *a: Levels(1, 99, 0.0, 2.0, 10))
    vol = np.ones((64, 10, 10), np.float32)
    vol[60, 3, 3] = np.nan
    src = tmp_path / "in.tif"
    tifffile.imwrite(src, vol)
    out = tmp_path / "out.zarr"
    previous = np.full((3, 3, 3), 7, np.float32)
    write_volume(out, previous)
    with Enhancer(fast_model, device="cpu", tile=(8, 16, 16), block=(8, 10, 10)) as enh:
        with pytest.raises(VolumeError, match="NaN"):
            enh.run(src, out, overwrite=True)
    from resin.io import read_volume

    np.testing.assert_array_equal(read_volume(out), previous)  # untouched
    done = list((tmp_path / "out.zarr.partial" / ".resin-run" / "done").iterdir())
    assert len(done) >= 2, "the finished blocks were not kept"


def test_stream_to_file_refuses_existing_output(fast_model, tmp_path):
    from resin.errors import OutputExistsError

    out = tmp_path / "x.zarr"
    out.mkdir()
    with Enhancer(fast_model, device="cpu") as enh:
        with pytest.raises(OutputExistsError):
            enh.stream((4, 8, 8), np.uint16, out=out)


def test_a_bounded_model_gets_its_preferred_tile_and_refuses_others(rng):
    """A TensorRT plan's profile (or a --static export) bounds the tile: default to its opt
    shape, and refuse a tile outside it with a usage error (exit 2), not mid-run."""
    from resin.runtime.runner import TileSettings, enhance_array, make_plan

    from resin.errors import UsageError

    engine = _UpsampleZ()
    engine.metadata = engine.metadata.model_validate({
        **engine.metadata.model_dump(), "scale": (1.0, 1.0, 1.0),
        "tensorrt": {"profile": {"min": [1, 1, 8, 8, 8], "opt": [1, 1, 12, 16, 16],
                                 "max": [1, 1, 16, 20, 20]}}})
    engine.infer = lambda tile: tile  # the identity, at scale 1
    assert engine.metadata.tile_range() == ((8, 8, 8), (12, 16, 16), (16, 20, 20))
    assert make_plan(engine, (30, 40, 40), TileSettings()).tile == (12, 16, 16)
    with pytest.raises(UsageError, match="from 8x8x8 to 16x20x20"):
        make_plan(engine, (30, 40, 40), TileSettings(tile=(24, 16, 16)))
    vol = rng.integers(0, 3000, size=(9, 21, 17)).astype(np.uint16)
    np.testing.assert_array_equal(enhance_array(engine, vol, TileSettings()), vol)


def test_static_export_metadata_fixes_the_tile():
    from resin.metadata import ModelMetadata, NormalizationRecord

    meta = ModelMetadata(normalization=NormalizationRecord(low_percentile=1, high_percentile=99),
                         export={"static_tile": [16, 32, 32]})
    assert meta.tile_range() == ((16, 32, 32),) * 3
    plain = ModelMetadata(normalization=NormalizationRecord(low_percentile=1, high_percentile=99))
    assert plain.tile_range() is None
