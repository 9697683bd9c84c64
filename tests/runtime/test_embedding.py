"""Embedding resin: the library logs through ``logging`` (logger "resin") and never prints;
progress reaches a callback, and raising from it stops a run resumably."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest
from resin.runtime import Enhancer, RunProgress

from resin import _log
from resin.io import read_volume, write_volume


@pytest.fixture
def library_mode(monkeypatch):
    """As in an application that never called the CLIs' configure()."""
    monkeypatch.setitem(_log._state, "console", False)
    monkeypatch.setitem(_log._state, "quiet", False)
    monkeypatch.setattr(_log.logger, "handlers", [])
    monkeypatch.setattr(_log.logger, "propagate", True)
    monkeypatch.setattr(_log.logger, "level", logging.NOTSET)


def test_a_run_prints_nothing_and_logs_to_the_resin_logger(library_mode, fast_model, tmp_path,
                                                           rng, capfd, caplog):
    src = tmp_path / "in.tif"
    write_volume(src, rng.integers(0, 4000, size=(12, 20, 20)).astype(np.uint16))
    seen: list[RunProgress] = []
    with caplog.at_level(logging.INFO, logger="resin"):
        with Enhancer(fast_model, device="cpu", tile=(8, 16, 16)) as enh:
            enh.run(src, tmp_path / "out.zarr",
                    progress=lambda p: seen.append(dataclasses.replace(p)))
    out, err = capfd.readouterr()
    assert out == "" and err == "", (out, err)
    assert any(" of 12x20x20 (tile" in r.getMessage() for r in caplog.records
               if r.name == "resin")
    assert sorted({p.tiles_done for p in seen}) == list(range(1, seen[-1].tiles_total + 1))
    assert seen[-1].blocks_done == seen[-1].blocks_total and seen[-1].eta_seconds == 0


def test_stopping_from_the_callback_keeps_a_resumable_output(library_mode, fast_model,
                                                             tmp_path, rng):
    src = tmp_path / "in.tif"
    write_volume(src, rng.integers(0, 4000, size=(24, 20, 20)).astype(np.uint16))
    out = tmp_path / "out.zarr"

    class Stop(Exception):
        pass

    def stop(p: RunProgress) -> None:
        if p.blocks_done >= 2:
            raise Stop

    with Enhancer(fast_model, device="cpu", tile=(8, 16, 16), block=(4, 20, 20)) as enh:
        with pytest.raises(Stop):
            enh.run(src, out, progress=stop)
        assert not out.exists()
        report = enh.run(src, out, resume=True)
        assert report.resumed_blocks >= 2
        whole = enh.enhance(read_volume(src))
    np.testing.assert_array_equal(read_volume(out), whole)


def test_enhance_reports_progress_and_stops_from_the_callback(fast_model, rng):
    vol = rng.integers(0, 4000, size=(24, 20, 20)).astype(np.uint16)
    ticks: list[int] = []

    class Stop(Exception):
        pass

    def stop(p: RunProgress) -> None:
        ticks.append(p.tiles_done)
        if p.tiles_done == 5:
            raise Stop

    with Enhancer(fast_model, device="cpu", tile=(8, 16, 16), block=(4, 20, 20)) as enh:
        with pytest.raises(Stop):
            enh.enhance(vol, progress=stop)
        assert max(ticks) == 5
        whole = enh.enhance(vol)  # the Enhancer is still usable
    assert whole.shape == vol.shape


def test_working_memory_estimate_is_flat_in_the_volume():
    from resin.runtime.blocks import make_block_plan
    from resin.runtime.planner import plan_tiles

    small = make_block_plan(plan_tiles((500, 2000, 2000), None, (29, 29, 29), 8))
    big = make_block_plan(plan_tiles((2000, 20000, 30000), None, (29, 29, 29), 8))
    assert small.working_bytes(np.uint16) == big.working_bytes(np.uint16) < 1.5 * 2**30
