"""Tiles chosen from a memory budget (resin.runtime.budget and make_plan's default)."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from resin.runtime.budget import (
    BLOCK_GAIN,
    GiB,
    choose_tile,
    default_budget,
    engine_bytes_per_voxel,
)
from resin.runtime.planner import plan_tiles
from resin.runtime.runner import TileSettings, make_plan

from resin.errors import UsageError
from resin.metadata import ModelMetadata, NormalizationRecord

BYTES = engine_bytes_per_voxel(ModelMetadata(
    normalization=NormalizationRecord(low_percentile=1, high_percentile=99),
    generator={"features": [8, 16, 32]}))

shapes = st.tuples(st.integers(1, 300), st.integers(1, 1500), st.integers(1, 1500))
halos = st.tuples(st.integers(0, 30), st.integers(0, 30), st.integers(0, 30))


@settings(max_examples=40, deadline=None)
@given(shape=shapes, halo=halos, m=st.sampled_from([1, 2, 4, 8]))
# the default block does not fit 0.25 GiB, so a smaller one is taken (kept 95.1 %); from
# 0.5 GiB the default block fits and keeps 94.2 %, within the 2 % a smaller block must gain
@example(shape=(289, 423, 812), halo=(0, 0, 3), m=8)
def test_more_memory_never_keeps_less_and_the_estimate_stays_within_the_budget(shape, halo, m):
    shares = []
    for gib in (0.25, 0.5, 1, 2, 4, 8):
        budget = int(gib * GiB)
        choice = choose_tile(shape, halo, m, (1, 1, 1), budget, BYTES)
        smallest = choose_tile(shape, halo, m, (1, 1, 1), 1, BYTES)
        assert choice.memory <= budget or choice == smallest
        plan = plan_tiles(shape, choice.tile, halo, m)  # a valid tile, kept as chosen
        assert plan.tile == choice.tile and plan.n_tiles == choice.calls
        assert choice.kept_share == pytest.approx(
            math.prod(shape) / (plan.n_tiles * math.prod(plan.tile)))
        shares.append(choice.kept_share)
    # more memory never keeps less, but for the share a smaller block must gain before the
    # planner takes more blocks (BLOCK_GAIN: fewer writes, flushes and resume markers)
    assert all(later * BLOCK_GAIN >= max(shares[:i + 1]) * (1 - 1e-9)
               for i, later in enumerate(shares))


def test_a_profile_bounds_the_chosen_tile():
    lo, hi = (8, 16, 16), (40, 64, 96)
    choice = choose_tile((100, 500, 500), (6, 6, 6), 4, (1, 1, 1), 64 * GiB, BYTES,
                         bounds=(lo, hi))
    assert all(a <= t <= b for a, t, b in zip(lo, choice.tile, hi, strict=True))
    assert choice.tile == hi  # plenty of memory: the largest the engine takes


class _Bounded:
    name, device = "fake", "cpu"
    metadata = ModelMetadata(halo=(2, 2, 2), size_multiple=2,
                             normalization=NormalizationRecord(low_percentile=1,
                                                               high_percentile=99))


def test_make_plan_chooses_within_the_memory_and_the_profile():
    engine = _Bounded()
    engine.metadata = engine.metadata.model_validate({
        **engine.metadata.model_dump(),
        "tensorrt": {"profile": {"min": [1, 1, 8, 8, 8], "opt": [1, 1, 12, 16, 16],
                                 "max": [1, 1, 16, 20, 20]}}})
    # no --memory: the tile the engine was tuned for; with one: the best within its range
    assert make_plan(engine, (30, 40, 40), TileSettings()).tile == (12, 16, 16)
    chosen = make_plan(engine, (30, 40, 40), TileSettings(memory=8.0))
    tuned = make_plan(engine, (30, 40, 40), TileSettings())
    assert all(8 <= t <= hi for t, hi in zip(chosen.tile, (16, 20, 20), strict=True))
    assert (chosen.n_tiles * math.prod(chosen.tile)) < tuned.n_tiles * math.prod(tuned.tile)
    small = make_plan(engine, (300, 400, 400), TileSettings(memory=0.01)).tile
    large = make_plan(engine, (300, 400, 400), TileSettings(memory=8.0)).tile
    assert math.prod(small) < math.prod(large)
    with pytest.raises(UsageError, match="--memory"):
        TileSettings(memory=0.0).check()


def test_default_budget_is_a_share_of_the_available_memory(monkeypatch):
    from resin.runtime import budget

    monkeypatch.setattr(budget, "available_memory", lambda: 64 * GiB)
    assert default_budget() == 16 * GiB
    monkeypatch.setattr(budget, "available_memory", lambda: None)
    assert default_budget() == 4 * GiB


class _Gpu:
    """An engine on a GPU with ``free`` bytes of free device memory."""

    name, device, device_resident = "fake-gpu", "cuda:0", False
    metadata = ModelMetadata(halo=(4, 4, 4), size_multiple=4, generator={"features": [8, 16, 32]},
                             normalization=NormalizationRecord(low_percentile=1,
                                                               high_percentile=99))

    def __init__(self, free: float) -> None:
        self.free = free

    def device_memory(self):
        return self.free, 80 * GiB


def test_a_gpu_engine_plans_its_activations_within_its_device_memory(monkeypatch):
    from resin.runtime import budget

    monkeypatch.setattr(budget, "available_memory", lambda: 64 * GiB)  # plenty of RAM
    shape = (200, 1000, 1000)
    small = make_plan(_Gpu(0.5 * GiB), shape, TileSettings())
    large = make_plan(_Gpu(40 * GiB), shape, TileSettings())
    assert math.prod(small.tile) < math.prod(large.tile)
    for free in (0.5 * GiB, 40 * GiB):  # the activations fit half of the free memory
        tile = make_plan(_Gpu(free), shape, TileSettings()).tile
        assert math.prod(tile) * BYTES <= budget.DEFAULT_DEVICE_SHARE * free
    # --memory is GPU memory on a GPU engine, whatever the device has free
    given = make_plan(_Gpu(40 * GiB), shape, TileSettings(memory=0.5)).tile
    assert math.prod(given) * BYTES <= 0.5 * GiB
    # and RAM on a CPU engine: the host buffers count too, so the same 0.5 GiB buys less
    cpu = choose_tile(shape, (4, 4, 4), 4, (1, 1, 1), GiB // 2, BYTES)
    assert math.prod(cpu.tile) <= math.prod(given)
    # the GPU-resident blend keeps its block buffers on the device as well
    bare = choose_tile(shape, (4, 4, 4), 4, (1, 1, 1), 16 * GiB, BYTES, device_budget=GiB)
    blend = choose_tile(shape, (4, 4, 4), 4, (1, 1, 1), 16 * GiB, BYTES, device_budget=GiB,
                        device_blend=True)
    assert bare.device_memory <= GiB and blend.device_memory <= GiB
    assert blend.device_memory > math.prod(blend.tile) * BYTES
    assert bare.memory <= 16 * GiB and bare.device_memory == pytest.approx(
        math.prod(bare.tile) * BYTES)


def test_the_plan_says_which_budget_chose_the_tile(monkeypatch):
    from resin.runtime import budget

    monkeypatch.setattr(budget, "available_memory", lambda: 64 * GiB)
    monkeypatch.setattr("resin.runtime.runner.available_memory", lambda: 64 * GiB)
    shape = (64, 256, 256)
    assert make_plan(_Gpu(40 * GiB), shape, TileSettings()).budget == (
        "within 20.0 GiB (50% of the 40.0 GiB free) of GPU memory")
    assert make_plan(_Gpu(40 * GiB), shape, TileSettings(memory=2)).budget == (
        "within --memory 2 GiB of GPU memory")
    assert make_plan(_Bounded(), shape, TileSettings()).budget == (
        "within 16.0 GiB of RAM (25% of the 64.0 GiB available)")
    assert make_plan(_Gpu(40 * GiB), shape, TileSettings(tile=(16, 16, 16))).budget == ""
    assert make_plan(_Gpu(40 * GiB), shape, TileSettings(overlap=4)).budget == ""


def test_free_gpu_memory_is_read_once_per_plan_and_the_log_names_that_figure(monkeypatch):
    """The plan's log line used to read free GPU memory again, and could name another figure
    than the one the tile was chosen with."""
    from resin.runtime import runner

    class Draining(_Gpu):
        calls = 0

        def device_memory(self):
            Draining.calls += 1
            return 40 * GiB / Draining.calls, 80 * GiB

    lines: list[str] = []
    monkeypatch.setattr(runner._log, "log", lines.append)
    engine = Draining(0)
    plan = make_plan(engine, (64, 256, 256), TileSettings())
    runner.log_plan(engine, plan, TileSettings())
    assert Draining.calls == 1
    assert "(50% of the 40.0 GiB free) of GPU memory" in lines[0]


def test_available_ram_is_read_once_per_plan_and_the_log_names_that_figure(monkeypatch):
    """The plan's log line used to read the available RAM again for its share text, so it
    could name another figure than the one the budget was taken from."""
    from resin.runtime import budget, runner

    calls = []

    def draining() -> int:
        calls.append(1)
        return 64 * GiB // len(calls)

    monkeypatch.setattr(budget, "available_memory", draining)
    monkeypatch.setattr(runner, "available_memory", draining)
    lines: list[str] = []
    monkeypatch.setattr(runner._log, "log", lines.append)

    class OnCpu(_Gpu):
        device = "cpu"

    engine = OnCpu(0)
    plan = make_plan(engine, (64, 256, 256), TileSettings())
    runner.log_plan(engine, plan, TileSettings())
    assert len(calls) == 1
    assert "within 16.0 GiB of RAM (25% of the 64.0 GiB available)" in lines[0]


def test_gpu_memory_that_cannot_be_read_falls_back_to_the_ram_budget():
    from resin.runtime.budget import free_device_memory

    assert free_device_memory(_Gpu(8 * GiB)) == 8 * GiB
    assert free_device_memory(_Gpu(float("inf"))) is None  # Numba's simulator
    assert free_device_memory(_Bounded()) is None  # a CPU engine

    class Failing(_Gpu):
        def device_memory(self):
            raise RuntimeError("no driver")

    class OnCpu(_Gpu):
        device = "cpu"

    assert free_device_memory(Failing(0)) is None
    assert free_device_memory(OnCpu(8 * GiB)) is None
    shape = (200, 1000, 1000)  # --memory 0.25 is then RAM for activations and buffers alike
    unread = make_plan(Failing(0), shape, TileSettings(memory=0.25)).tile
    assert unread == make_plan(OnCpu(8 * GiB), shape, TileSettings(memory=0.25)).tile
    assert unread != make_plan(_Gpu(8 * GiB), shape, TileSettings(memory=0.25)).tile


def test_tiles_get_the_tolerant_halo_unless_asked_for_the_exact_one():
    from resin.runtime.runner import halo_kind

    engine = _Bounded()
    engine.metadata = _Bounded.metadata.model_copy(update={
        "halo": (6, 6, 6), "halo_tolerant": (3, 4, 2), "halo_tolerance": 1e-4})
    # raised to the exact halo's pooling grid (size multiple 2): 3 -> 4
    assert make_plan(engine, (30, 40, 40), TileSettings()).halo == (4, 4, 2)
    assert make_plan(engine, (30, 40, 40), TileSettings(exact_halo=True)).halo == (6, 6, 6)
    assert halo_kind(engine.metadata, TileSettings()) == "tolerant 0.0001"
    assert halo_kind(engine.metadata, TileSettings(exact_halo=True)) == "exact"
    assert halo_kind(_Bounded.metadata, TileSettings()) == "exact"  # none recorded


def test_resin_run_logs_the_plan_and_records_the_halo(cli, fast_model, tmp_path):
    import json

    import numpy as np
    import zarr

    from resin.io import write_volume

    src = tmp_path / "in.tif"
    write_volume(src, np.random.default_rng(0).integers(100, 900, (12, 40, 40),
                                                         dtype=np.uint16))
    proc = cli("resin-run", "--engine", str(fast_model), str(src), "-o",
               str(tmp_path / "out.ome.zarr"), "--device", "cpu", "--memory", "0.5",
               "--exact-halo")
    assert proc.returncode == 0, proc.stderr
    assert "keeps" in proc.stderr and "; 1 network call\n" in proc.stderr, proc.stderr
    # one of each is said in the singular ("1 blocks of" before)
    assert "1 block of 12x40x40 (tile 18x46x46, 1 tile," in proc.stderr, proc.stderr
    assert "1 tile of 18x46x46, 1 block of 12x40x40)" in proc.stderr, proc.stderr
    assert "chosen within --memory 0.5 GiB of RAM" in proc.stderr, proc.stderr
    attrs = zarr.open_group(tmp_path / "out.ome.zarr", mode="r").attrs["resin"]
    assert attrs["halo_kind"] == "exact"
    assert json.dumps(attrs["halo"]) == "[3, 3, 3]"


@pytest.mark.parametrize("level, probes", [(logging.INFO, 1), (logging.ERROR, 0)])
def test_the_time_estimate_probes_the_engine_only_when_its_line_is_shown(monkeypatch, level,
                                                                         probes):
    """The estimate's probe is a network call; under --quiet (the logger above INFO) it
    used to run anyway, about 3 % of a 128x512x512 run on a CPU, for a line nobody saw."""
    from resin.runtime import runner

    class Counting(_Bounded):
        calls = 0

        def infer(self, tile):
            Counting.calls += 1
            return tile.astype(np.float32)

    lines: list[str] = []
    monkeypatch.setattr(runner._log, "log", lines.append)
    engine = Counting()
    plan = make_plan(engine, (30, 40, 40), TileSettings(tile=(12, 16, 16)))
    assert plan.n_tiles > 1
    before = runner._log.logger.level
    runner._log.logger.setLevel(level)  # setLevel, not the attribute: it clears the cache
    try:
        runner.log_plan(engine, plan, TileSettings(tile=(12, 16, 16)))
    finally:
        runner._log.logger.setLevel(before)
    assert Counting.calls == probes
    assert ("s per call)" in lines[0]) == bool(probes)


@pytest.mark.parametrize("dtype", [np.float32, np.uint16])
@pytest.mark.parametrize("shape", [(64, 256, 256), (128, 512, 512), (300, 2000, 1500)])
def test_the_budget_counts_the_blocks_a_run_holds(shape, dtype):
    """A run holds its blocks' buffers (the block being filled and those queued for the
    writer) clipped to the output, and never more blocks than it has: a volume that is one
    block holds one. The budget's estimate is the run's own (activations + its
    BlockPlan.working_bytes), so a small volume is not planned as if it held four blocks
    larger than itself."""
    from dataclasses import replace

    from resin.runtime.blocks import QUEUE_DEPTH, make_block_plan

    halo, m = (29, 21, 21), 8
    itemsize = np.dtype(dtype).itemsize
    choice = choose_tile(shape, halo, m, (1, 1, 1), GiB, BYTES, out_itemsize=itemsize)
    bplan = make_block_plan(replace(plan_tiles(shape, choice.tile, halo, m),
                                    block=choice.block))
    tile = math.prod(choice.tile)
    assert choice.memory == pytest.approx(tile * BYTES + bplan.working_bytes(dtype))
    tiles = (QUEUE_DEPTH + 2) * tile * 4 * 2
    held = min(bplan.n_blocks, QUEUE_DEPTH + 2)
    block = math.prod(min(b, n) for b, n in zip(bplan.block, shape, strict=True))
    assert bplan.working_bytes(np.uint16) == held * block * 2 + tiles
    if bplan.n_blocks == 1:
        assert bplan.working_bytes(np.uint16) == math.prod(shape) * 2 + tiles


def test_a_uint16_output_leaves_more_of_the_budget_to_the_tiles():
    """Blocks of a uint16 output take half the bytes of float32 ones: on a large volume
    with a small budget the run plans for the blocks it will hold, not float32 ones."""
    engine = _Bounded()
    shape, settings = (512, 2048, 2048), TileSettings(memory=1.0, block=(96, 768, 768))
    wide = make_plan(engine, shape, settings)
    assert make_plan(engine, shape, settings, out_dtype=np.float32).tile == wide.tile
    narrow = make_plan(engine, shape, settings, out_dtype=np.uint16)
    assert math.prod(narrow.tile) > 1.5 * math.prod(wide.tile)


class _Light:
    """A host engine of 32 bytes per voxel whose network maps each voxel on its own."""

    name, device = "light", "cpu"
    metadata = ModelMetadata(halo=(1, 1, 1), size_multiple=1, weights_sha256="light",
                             normalization=NormalizationRecord(low_percentile=1,
                                                               high_percentile=99),
                             generator={"features": [1]})

    def infer(self, tile: np.ndarray) -> np.ndarray:
        return (np.float32(1.5) * tile - np.float32(0.3) * tile * tile).astype(np.float32)


def test_a_small_budget_takes_smaller_blocks_and_resume_keeps_them(tmp_path, rng):
    """Where the default block's buffers would take most of a small budget, the budget
    takes a smaller block (never below a chunk) so that the tiles get the memory, and
    --resume reuses the interrupted run's block as it reuses its tile (the run record
    would refuse anything else), whatever today's budget."""
    from dataclasses import replace

    from resin.runtime.blocks import make_block_plan
    from resin.runtime.budget import BUDGET_BLOCKS
    from resin.runtime.runner import enhance_file

    from resin.io import read_volume, write_volume

    shape = (16, 1024, 1024)
    big = choose_tile(shape, (1, 1, 1), 1, (1, 1, 1), int(0.05 * GiB), 32.0, out_itemsize=2)
    fixed = choose_tile(shape, (1, 1, 1), 1, (1, 1, 1), int(0.05 * GiB), 32.0,
                        block=(96, 768, 768), out_itemsize=2)
    assert big.block in BUDGET_BLOCKS and big.memory <= 0.05 * GiB
    assert big.kept_share > 1.2 * fixed.kept_share
    roomy = choose_tile(shape, (1, 1, 1), 1, (1, 1, 1), 8 * GiB, 32.0, out_itemsize=2)
    assert roomy.block is None  # plenty of memory: the default block

    vol = rng.integers(0, 4000, size=shape).astype(np.uint16)
    src = tmp_path / "in.tif"
    write_volume(src, vol)
    model = tmp_path / "light.onnx"
    model.write_bytes(b"stand-in")  # hashed into the run record
    plan = make_plan(_Light(), shape, TileSettings(memory=0.05), out_dtype=np.uint16)
    bplan = make_block_plan(plan)
    assert plan.block is not None and bplan.block[1] < 768 and bplan.n_blocks >= 4
    default = make_block_plan(replace(plan, block=None))
    assert bplan.working_bytes(np.uint16) < default.working_bytes(np.uint16) - 0.02 * GiB

    ref = enhance_file(_Light(), str(model), src, tmp_path / "ref.zarr",
                       TileSettings(memory=0.05))
    assert ref.block == bplan.block

    def stop(progress) -> None:
        if progress.blocks_done >= 2:
            raise KeyboardInterrupt

    out = tmp_path / "out.zarr"
    with pytest.raises(KeyboardInterrupt):
        enhance_file(_Light(), str(model), src, out, TileSettings(memory=0.05),
                     progress=stop)
    resumed = enhance_file(_Light(), str(model), src, out, TileSettings(memory=2.0),
                           resume=True)
    assert resumed.resumed_blocks >= 2 and resumed.block == bplan.block
    np.testing.assert_array_equal(read_volume(out), read_volume(tmp_path / "ref.zarr"))


def test_the_plan_names_fewer_face_voxels_where_the_padding_is_most_of_the_work():
    """A thin stack padded by the halo computes mostly repeated face planes (20 planes:
    29 more on each side); the plan's log says so and what --faces 8 saves."""
    from resin.runtime.planner import plan_tiles
    from resin.runtime.runner import faces_hint

    halo = (29, 21, 21)

    def hint(shape, faces="repeat", overlap=None):
        plan = plan_tiles(shape, (80, 300, 300), halo, 4, 0, (1, 1, 1), faces)
        return faces_hint(plan, TileSettings(faces=faces, overlap=overlap))

    thin = hint((20, 1024, 1024))
    assert thin is not None
    padded, fewer = 78 * 1066 * 1066, 36 * 1040 * 1040
    assert f"{100 * (1 - 20 * 1024 * 1024 / padded):.0f} %" in thin
    assert "--faces 8" in thin and f"about {padded / fewer:.1f}x fewer" in thin
    assert hint((96, 256, 256)) is not None  # half the computed volume is padding
    assert hint((128, 512, 512)) is None  # 41 %: the faces are a minority
    assert hint((20, 1024, 1024), faces="8") is None
    assert hint((20, 1024, 1024), faces="zeros") is None
    assert hint((20, 1024, 1024), overlap=8) is None  # --faces N needs --overlap 0
