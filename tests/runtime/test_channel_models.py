"""One model per channel (``resin-run --channel all --engine c0 --engine c1 ...``,
``run_series([...])``): each channel enhanced by its own model into one store (or one
output each), the parts tiled alike so that they share the store's chunks; what cannot
work is refused before anything is written."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from conftest import assert_one_line_error
from resin.runtime import Enhancer, run_series

from resin.errors import ResumeError, UsageError

TILE = ("--tile", "12", "16", "16")


@pytest.fixture
def models(tmp_path_factory, model_factory):
    """Three one-level models (size multiple 1), the second with a larger halo."""
    import warnings

    folder = tmp_path_factory.mktemp("channel_models")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [model_factory(folder / f"m{i}.onnx", seed=10 + i, halo=halo, features=(4,))
                for i, halo in enumerate(((3, 3, 3), (5, 4, 4), (3, 3, 3)))]


def _expected(model: Path, volume: np.ndarray, floor=None) -> np.ndarray:
    with Enhancer(model, device="cpu", tile=(12, 16, 16)) as enh:
        if floor is not None:
            enh.settings = replace(enh.settings, halo_floor=floor)
        return enh.enhance(volume)


def _engines(models):
    return [a for m in models for a in ("--engine", str(m))]


def test_each_channel_is_enhanced_by_its_own_model_into_one_store(cli, models, channels):
    path, data = channels
    out = path.parent / "o.ome.zarr"
    proc = cli("resin-run", *_engines(models), str(path), "--time", "all", "--channel", "all",
               "-o", str(out), "--device", "cpu", *TILE, "--report")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("backend: ") == 3  # said once per model
    group = zarr.open_group(out, mode="r")
    assert group["0"].shape == (2, 3, 16, 20, 24)
    resin = dict(group.attrs["resin"])
    assert [p["model"] for p in resin["parts"]] == [f"m{c}.onnx" for t in range(2)
                                                   for c in range(3)]
    assert resin["halo"] == [5, 4, 4]  # one tiling for all parts: the largest halo
    for t in range(2):
        for c in range(3):
            got = group["0"][t, c]
            np.testing.assert_array_equal(got, _expected(models[c], data[t, c], (5, 4, 4)))
            # the larger halo changes nothing a model's own halo already covers
            own = _expected(models[c], data[t, c]).astype(np.int64)
            assert np.abs(got.astype(np.int64) - own).max() <= 1
        assert not np.array_equal(group["0"][t, 1], _expected(models[0], data[t, 1]))
    reports = sorted(p.name for p in path.parent.glob("*.report.json"))
    assert reports == [f"o_t{t}_c{c}.ome.zarr.report.json" for t in range(2) for c in range(3)]


def test_one_output_per_channel_keeps_each_models_own_halo(channels, models):
    path, data = channels
    enhancers = [Enhancer(m, device="cpu", tile=(12, 16, 16)) for m in models]
    try:
        reports = run_series(enhancers, path, str(path.parent / "c{c}.tif"), time=1,
                             channel="all")
        assert len(reports) == 3
        for c in range(3):
            np.testing.assert_array_equal(tifffile.imread(path.parent / f"c{c}.tif"),
                                          _expected(models[c], data[1, c]))
        with pytest.raises(UsageError, match="3 models .one per channel. need --channel all"):
            run_series(enhancers, path, str(path.parent / "x.ome.zarr"), time=1, channel=2)
        other = Enhancer(models[2], device="cpu", tile=(12, 16, 16), faces="zeros")
        with pytest.raises(UsageError, match="m2.onnx was given another faces than"):
            run_series([*enhancers[:2], other], path, str(path.parent / "y.ome.zarr"), time=1,
                       channel="all")
        other.close()
        assert not list(path.parent.glob("[xy].ome.zarr*"))
    finally:
        for e in enhancers:
            e.close()


def test_models_that_cannot_share_a_job_are_refused_before_anything_is_written(
        cli, models, channels, model_factory, tmp_path):
    path, _ = channels
    base = ["--device", "cpu", *TILE]
    line = assert_one_line_error(cli("resin-run", *_engines(models[:2]), str(path),
                                     "--time", "0", "--channel", "1", *base))
    assert "one model per channel needs --channel all" in line
    line = assert_one_line_error(cli("resin-run", *_engines(models[:2]), str(path),
                                     "--time", "0", "--channel", "all", *base))
    assert "has 3 channels but 2 models were given; give one --engine per channel" in line
    scaled = model_factory(tmp_path / "z2.onnx", seed=5, halo=(3, 3, 3), features=(4,),
                           scale=(2.0, 1.0, 1.0))
    line = assert_one_line_error(cli("resin-run", *_engines([*models[:2], scaled]),
                                     str(path), "--time", "0", "--channel", "all", *base))
    assert "z2.onnx: scales the volume by (2.0, 1.0, 1.0)" in line
    pooled = model_factory(tmp_path / "p.onnx", seed=6)  # two levels: size multiple 2
    line = assert_one_line_error(cli("resin-run", *_engines([*models[:2], pooled]),
                                     str(path), "--time", "0", "--channel", "all", *base))
    assert "cannot share one store's chunks; write one output per channel" in line
    assert sorted(p.name for p in path.parent.iterdir()) == ["cells.tif", "p.onnx",
                                                              "z2.onnx"]


class _Stop(Exception):
    pass


def test_an_interrupted_job_resumes_with_its_models_and_refuses_others(channels, models):
    path, data = channels
    out = path.parent / "r.ome.zarr"
    started = set()

    def stop(p):  # channel 0 done, then a block of channel 1
        started.add(p.started)
        if len(started) == 2 and p.blocks_done >= 1:
            raise _Stop

    def open_all(order):
        return [Enhancer(models[i], device="cpu", tile=(12, 16, 16), block=(12, 20, 24))
                for i in order]

    enhancers = open_all((0, 1, 2))
    try:
        with pytest.raises(_Stop):
            run_series(enhancers, path, out, time=0, channel="all", progress=stop)
        swapped = open_all((1, 0, 2))
        try:
            with pytest.raises(ResumeError, match="started with another model_sha256"):
                run_series(swapped, path, out, time=0, channel="all", resume=True)
        finally:
            for e in swapped:
                e.close()
        run_series(enhancers, path, out, time=0, channel="all", resume=True)
    finally:
        for e in enhancers:
            e.close()
    assert all(e.settings.halo_floor is None for e in enhancers)  # the job's, undone after it
    group = zarr.open_group(out, mode="r")
    for c in range(3):
        np.testing.assert_array_equal(group["0"][c], _expected(models[c], data[0, c],
                                                               (5, 4, 4)))
