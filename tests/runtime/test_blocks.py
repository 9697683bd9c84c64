"""3-D blocks: byte-identical output for any block size, bounded memory, redundant work."""

from __future__ import annotations

import numpy as np
import pytest
from resin.runtime import Enhancer
from resin.runtime.blocks import make_block_plan
from resin.runtime.planner import plan_tiles

from resin.io import read_volume, write_volume


@pytest.mark.parametrize("faces", ["repeat", "zeros"])
@pytest.mark.parametrize("block", [(4, 8, 8), (6, 20, 12), (10, 40, 40), (64, 64, 64)])
def test_any_block_size_gives_the_same_bytes(fast_model, rng, block, faces):
    vol = rng.integers(0, 4000, size=(21, 37, 29)).astype(np.uint16)
    with Enhancer(fast_model, device="cpu", tile=(8, 12, 12), faces=faces) as whole, \
            Enhancer(fast_model, device="cpu", tile=(8, 12, 12), block=block,
                     faces=faces) as blocked:
        ref = whole.enhance(vol)
        plan = make_block_plan(plan_tiles(vol.shape, (8, 12, 12), (3, 3, 3), 1, faces=faces),
                               block)
        got = blocked.enhance(vol)
    assert plan.n_blocks > 1 or block == (64, 64, 64)
    np.testing.assert_array_equal(got, ref)


def test_float_output_is_byte_identical_with_overlap(fast_model, rng):
    """With extra overlap many tiles reach two blocks; each voxel still gets the same
    contributions in the same order, so float32 output is bit-identical."""
    vol = rng.gamma(2.0, 300.0, size=(19, 33, 27)).astype(np.float32)
    with Enhancer(fast_model, device="cpu", tile=(10, 14, 14), overlap=2) as a, \
            Enhancer(fast_model, device="cpu", tile=(10, 14, 14), overlap=2,
                     block=(3, 5, 7)) as b:
        np.testing.assert_array_equal(a.enhance(vol).view(np.uint32),
                                      b.enhance(vol).view(np.uint32))


def test_file_runs_identical_for_blocks_and_formats(fast_model, tmp_path, rng):
    vol = rng.integers(0, 4000, size=(30, 40, 36)).astype(np.uint16)
    src = tmp_path / "in.tif"
    write_volume(src, vol)
    outs = []
    for i, (block, suffix) in enumerate([(None, ".zarr"), ((4, 8, 8), ".ome.zarr"),
                                         ((12, 40, 16), ".tif")]):
        out = tmp_path / f"o{i}{suffix}"
        with Enhancer(fast_model, device="cpu", tile=(8, 16, 16), block=block) as enh:
            report = enh.run(src, out)
        assert (report.blocks > 1) == (block is not None)
        outs.append(read_volume(out))
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])


def test_blocks_cover_the_output_once_and_tiles_in_global_order():
    plan = plan_tiles((50, 70, 90), (16, 24, 24), (3, 3, 3), 2, scale=(2, 1, 1))
    bp = make_block_plan(plan, (20, 30, 40))
    cover = np.zeros(plan.out_shape, np.int32)
    order = {t.index: n for n, t in enumerate(plan.tiles())}
    for b in bp.blocks():
        cover[b.region] += 1
        idx = [order[t.index] for t in b.tiles]
        assert idx == sorted(idx)
        for i in range(3):
            assert b.start[i] % bp.chunks[i] == 0  # aligned to the chunk grid
    assert (cover == 1).all()


def test_default_block_has_little_redundant_work():
    """Chunks sit on the tile step, so cores and default blocks share their boundaries."""
    plan = plan_tiles((700, 3000, 3000), None, (29, 29, 29), 8)
    bp = make_block_plan(plan)
    assert bp.n_blocks > 20
    assert bp.redundant_share < 0.15, bp.redundant_share
    acc_bytes = 2 * 4 * np.prod(bp.block)
    assert acc_bytes < 1.2 * 2**30


@pytest.mark.parametrize("faces", ["repeat", "zeros"])
@pytest.mark.parametrize(("shape", "tile"), [((128, 512, 512), (128, 212, 512)),
                                             ((96, 256, 256), (96, 256, 256)),
                                             ((700, 3000, 3000), (156, 316, 316))])
def test_no_network_call_runs_twice_at_default_blocks(shape, tile, faces):
    """An axis that is one tile is one block along it: with unpadded faces the single
    tile's step is the whole axis, not its halo-trimmed core (which cut the volume into
    two blocks that each ran every tile)."""
    bp = make_block_plan(plan_tiles(shape, tile, (29, 21, 21), 8, faces=faces))
    assert bp.redundant_share == 0, (bp.redundant_share, bp.block, bp.chunks)


@pytest.mark.parametrize("faces", ["repeat", "zeros"])
def test_raw_mips_from_kept_regions_equal_numpy(rng, faces):
    """The input's MIPs are gathered from what each tile keeps: with zero-padded faces the
    first tile's kept region starts at the face, inside its halo."""
    from resin.runtime.pipeline import Mips, update_raw_mips
    from resin.runtime.planner import read_padded

    vol = rng.integers(0, 60000, size=(23, 41, 30)).astype(np.uint16)
    plan = plan_tiles(vol.shape, (14, 16, 16), (3, 4, 2), 2, faces=faces)
    assert plan.n_tiles > 8
    mips = Mips.empty(vol.shape, vol.dtype)
    for tile in plan.tiles():
        raw = read_padded(lambda r: vol[r], vol.shape, tile.start, plan.tile)
        update_raw_mips(mips, plan, raw, tile)
    for got, axis in ((mips.along_z, 0), (mips.along_y, 1), (mips.along_x, 2)):
        np.testing.assert_array_equal(got, vol.max(axis))


def test_a_record_of_the_earlier_tiling_is_refused_on_resume(tmp_path):
    """Run records of version 2 split two-tile axes at the second tile's start; resuming
    one with today's split could mix two tilings in one output, so it is refused."""
    import json

    from resin.runtime import runstate

    from resin.errors import ResumeError

    record = runstate.RunRecord(tmp_path / "rec", {"tile": [8, 8, 8]})
    record.create(4)
    body = json.loads(record.path.read_text())
    assert body["version"] == runstate.VERSION == 3
    record.check()  # today's record resumes
    body["version"] = 2
    record.path.write_text(json.dumps(body))
    with pytest.raises(ResumeError, match="another resin version"):
        record.check()


class _Pointwise:
    """A host engine whose network is a fixed nonlinear map of each voxel (no reach)."""

    name = "pointwise"
    device = "cpu"

    def __init__(self) -> None:
        from resin.metadata import ModelMetadata, NormalizationRecord

        self.metadata = ModelMetadata(scale=(1, 1, 1), halo=(1, 1, 1), size_multiple=1,
                                      weights_sha256="pointwise",
                                      normalization=NormalizationRecord(low_percentile=1,
                                                                        high_percentile=99))

    @staticmethod
    def net(x: np.ndarray) -> np.ndarray:
        return (np.float32(1.5) * x - np.float32(0.3) * x * x).astype(np.float32)

    def infer(self, tile: np.ndarray) -> np.ndarray:
        return self.net(tile)


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_tiles_that_partition_the_output_hold_no_float32_accumulators(rng, dtype):
    """Without --overlap each output voxel gets one core at weight 1, so a block needs no
    float32 sum and weight (8 bytes per voxel, 4x a uint16 output): the cores are
    finalized into the block's output, to the bytes of finalizing the whole volume at once."""
    import tracemalloc
    from dataclasses import replace

    from resin.kernels import finalize
    from resin.runtime.blocks import BlockRunner
    from resin.runtime.normalize import Levels, normalize_tile
    from resin.runtime.pipeline import ArraySink
    from resin.runtime.runner import TileSettings, make_plan

    levels = Levels(low_percentile=1.0, high_percentile=99.0, low=100.0, high=3100.0,
                    samples=1)
    engine = _Pointwise()
    vol = rng.integers(0, 4000, size=(32, 128, 128)).astype(np.uint16)
    settings = TileSettings(tile=(12, 40, 40), block=vol.shape)
    bplan = make_block_plan(make_plan(engine, vol.shape, settings), settings.block)
    assert bplan.n_blocks == 1 and bplan.tiles.n_tiles > 8
    out = np.empty(vol.shape, dtype)
    runner = BlockRunner(engine, bplan, levels, np.dtype(dtype), ArraySink(out))
    runner.run(lambda r: vol[r], list(bplan.blocks()))  # kernels loaded before measuring
    tracemalloc.start()
    try:
        runner.run(lambda r: vol[r], list(bplan.blocks()))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    accumulators = 2 * 4 * vol.size
    assert peak < out.nbytes + accumulators / 2, (peak, out.nbytes, accumulators)
    y = engine.net(normalize_tile(vol, levels))
    want = finalize(y, np.ones_like(y), dtype, levels.low, levels.high)
    np.testing.assert_array_equal(out.view(np.uint8), want.view(np.uint8))
    # the memory the tile budget plans for counts the same saving
    blended = replace(bplan, tiles=replace(bplan.tiles, partition=False))
    saved = blended.working_bytes(dtype) - bplan.working_bytes(dtype)
    assert saved == accumulators  # one block: its output is held either way


def test_an_in_memory_run_finalizes_into_its_result(rng, monkeypatch):
    """Enhancing an array fills the result itself block by block: no second copy of the
    output (nor float32 accumulators) is held beside it, and the bytes are those of a
    separate block buffer (a file run, whose blocks are written out)."""
    import tracemalloc

    from resin.runtime.normalize import Levels
    from resin.runtime.runner import TileSettings, enhance_array

    levels = Levels(low_percentile=1.0, high_percentile=99.0, low=100.0, high=3100.0,
                    samples=1)
    vol = rng.gamma(2.0, 600.0, size=(32, 128, 128)).astype(np.float32)
    settings = TileSettings(tile=(12, 40, 40))
    enhance_array(_Pointwise(), vol, settings, levels)  # kernels loaded before measuring
    tracemalloc.start()
    try:
        got = enhance_array(_Pointwise(), vol, settings, levels)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1.5 * got.nbytes, (peak, got.nbytes)
    from resin.runtime.pipeline import ArraySink

    monkeypatch.delattr(ArraySink, "buffer")  # a sink that only takes finished blocks
    for block in (None, (8, 64, 64)):
        apart = enhance_array(_Pointwise(), vol, TileSettings(tile=(12, 40, 40), block=block),
                              levels)
        np.testing.assert_array_equal(got.view(np.uint32), apart.view(np.uint32))


@pytest.mark.parametrize("in_memory", [True, False])
def test_out_of_memory_retries_the_unwritten_blocks_with_smaller_tiles(rng, tmp_path, caplog,
                                                                       in_memory):
    """An engine that runs out of memory on large tiles after some blocks are written: the
    written blocks stay, the rest (a half-filled one included) run again with a smaller
    tile, and the output is the one-call result (the network has no reach, so any tiling
    gives the same bytes)."""
    import logging

    from resin.kernels import finalize
    from resin.runtime.normalize import normalize_tile
    from resin.runtime.runner import TileSettings, enhance_array, levels_for

    class Fragile(_Pointwise):
        calls = 0

        def infer(self, tile: np.ndarray) -> np.ndarray:
            Fragile.calls += 1
            if Fragile.calls > 5 and tile.size > 12 * 24 * 24:
                raise RuntimeError("[ONNXRuntimeError] : 6 : Failed to allocate memory")
            return super().infer(tile)

    vol = rng.integers(0, 4000, size=(20, 64, 64)).astype(np.uint16)
    levels = levels_for(_Pointwise(), lambda r: vol[r], vol.shape, "volume")  # a file run's
    settings = TileSettings(tile=(12, 34, 34), block=(10, 32, 32))
    with caplog.at_level(logging.INFO, logger="resin"):
        if in_memory:
            got = enhance_array(Fragile(), vol, settings, levels)
        else:
            from resin.runtime.runner import enhance_file

            from resin.io import read_volume, write_volume

            write_volume(tmp_path / "in.tif", vol)
            (tmp_path / "fragile.onnx").write_bytes(b"stand-in")  # hashed into the record
            enhance_file(Fragile(), str(tmp_path / "fragile.onnx"), str(tmp_path / "in.tif"),
                         str(tmp_path / "out.zarr"), settings)
            got = read_volume(tmp_path / "out.zarr")
    # blocks were written before the failure; the smaller tile still failed once
    import re

    first = re.search(r"out of memory with tile 12x34x34; retrying the (\d+) unwritten "
                      r"blocks with tile 12x18x34", caplog.text)
    assert first is not None and 1 <= int(first.group(1)) < 8, caplog.text
    assert "out of memory with tile 12x18x34; retrying the" in caplog.text
    y = Fragile.net(normalize_tile(vol, levels))
    np.testing.assert_array_equal(got, finalize(y, np.ones_like(y), np.uint16, levels.low,
                                                levels.high))
