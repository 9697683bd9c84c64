"""Tiles chosen from a memory budget (resin.runtime.budget and make_plan's default)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from resin.runtime.budget import GiB, choose_tile, default_budget, engine_bytes_per_voxel
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
    assert shares == sorted(shares)


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
    assert "keeps" in proc.stderr and "network calls" in proc.stderr, proc.stderr
    attrs = zarr.open_group(tmp_path / "out.ome.zarr", mode="r").attrs["resin"]
    assert attrs["halo_kind"] == "exact"
    assert json.dumps(attrs["halo"]) == "[3, 3, 3]"
