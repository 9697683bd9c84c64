"""`resin-run --time all` / `--channel all` (``Enhancer.run_series``): every time point
(channel) of a file into one Zarr store with those axes, or into one output each; each
volume the bytes of its own single run; everything checked before the first output
exists; an interrupted job resumes, keeping what it finished, also when it stopped while
moving the parts into the one store."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from conftest import assert_one_line_error
from resin.runtime import Enhancer

from resin.errors import OutputExistsError, ResumeError
from resin.io import open_volume, read_volume

TILE = ("--tile", "8", "16", "16")


@pytest.fixture
def series(tmp_path, rng):
    """A 3-time-point ImageJ TZYX stack and its data."""
    data = rng.integers(0, 4000, size=(3, 16, 20, 24)).astype(np.uint16)
    data[1] //= 3  # time points differ in level, so their normalizations differ
    path = tmp_path / "series.tif"
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "TZYX"})
    return path, data


def _singles(model, data):
    with Enhancer(model, device="cpu", tile=(8, 16, 16)) as enh:
        return [enh.enhance(v) for v in data]


def test_every_time_point_goes_into_one_store_with_a_time_axis(cli, fast_model, series):
    path, data = series
    proc = cli("resin-run", "--engine", str(fast_model), str(path), "--time", "all",
               "--device", "cpu", *TILE, "--mip", str(path.parent / "mips"))
    assert proc.returncode == 0, proc.stderr
    assert "time point 2 (3 of 3)" in proc.stderr and "enhanced 3 volumes" in proc.stderr
    assert "2 done, 1 to go: about" in proc.stderr
    for line in ("backend: ", "network calls", "blending on"):  # said once, not per part
        assert proc.stderr.count(line) == 1, (line, proc.stderr)
    out = path.parent / "series_resin.ome.zarr"
    assert f"wrote {out} (TZYX: 3 time points)" in proc.stderr
    assert sorted(p.name for p in path.parent.iterdir()) == ["mips", "series.tif",
                                                              "series_resin.ome.zarr"]
    group = zarr.open_group(out, mode="r")
    assert group["0"].shape == (3, 16, 20, 24) and group["0"].chunks[0] == 1
    assert group["0"].metadata.dimension_names == ("t", "z", "y", "x")
    axes = group.attrs["ome"]["multiscales"][0]["axes"]
    assert [(a["name"], a["type"]) for a in axes][:2] == [("t", "time"), ("z", "space")]
    resin = dict(group.attrs["resin"])
    assert resin["complete"] is True and "input_time" not in resin
    assert [p["time"] for p in resin["parts"]] == [0, 1, 2]
    assert len({json.dumps(p["normalization"]) for p in resin["parts"]}) == 3
    for t, want in enumerate(_singles(fast_model, data)):
        np.testing.assert_array_equal(group["0"][t], want)
        with open_volume(out, time=t) as reader:
            np.testing.assert_array_equal(reader.read(), want)
        mip = tifffile.imread(path.parent / "mips" / f"series_resin_t{t}_mip_z.tif")
        np.testing.assert_array_equal(mip, want.max(axis=0))
    info = cli("resin", "info", str(out))
    assert info.returncode == 0 and "time points" in info.stdout + info.stderr


def test_every_channel_and_time_point_into_one_tczyx_store(cli, fast_model, channels):
    path, data = channels
    out = path.parent / "o.zarr"  # a plain Zarr array names its axes too
    proc = cli("resin-run", "--engine", str(fast_model), str(path), "--time", "all",
               "--channel", "all", "-o", str(out), "--device", "cpu", *TILE,
               "--shard", "16", "32", "32", "--report")
    assert proc.returncode == 0, proc.stderr
    assert "time point 1, channel 2 (6 of 6)" in proc.stderr
    reports = sorted(p.name for p in path.parent.glob("*.report.json"))  # beside the store
    assert reports == [f"o_t{t}_c{c}.zarr.report.json" for t in range(2) for c in range(3)]
    array = zarr.open_array(out, mode="r")
    assert array.shape == (2, 3, 16, 20, 24)
    assert array.metadata.dimension_names == ("t", "c", "z", "y", "x")
    with Enhancer(fast_model, device="cpu", tile=(8, 16, 16)) as enh:
        for t in range(2):
            for c in range(3):
                np.testing.assert_array_equal(array[t, c], enh.enhance(data[t, c]))
        # one time point, every channel: CZYX, named after that time point
        proc = cli("resin-run", "--engine", str(fast_model), str(path), "--time", "1",
                   "--channel", "all", "--device", "cpu", *TILE, "--levels", "2")
        assert proc.returncode == 0, proc.stderr
        group = zarr.open_group(path.parent / "cells_t1_resin.ome.zarr", mode="r")
        assert group["0"].shape == (3, 16, 20, 24) and group["1"].shape == (3, 8, 10, 12)
        for c in range(3):
            want = enh.enhance(data[1, c])
            np.testing.assert_array_equal(group["0"][c], want)
            half = want.astype(np.float64).reshape(8, 2, 10, 2, 12, 2).mean(axis=(1, 3, 5))
            np.testing.assert_array_equal(group["1"][c], np.rint(half).astype(np.uint16))
        # one TIFF per channel
        proc = cli("resin-run", "--engine", str(fast_model), str(path), "--time", "0",
                   "--channel", "all", "-o", str(path.parent / "c{c}.tif"), "--device",
                   "cpu", *TILE)
        assert proc.returncode == 0, proc.stderr
        for c in range(3):
            np.testing.assert_array_equal(tifffile.imread(path.parent / f"c{c}.tif"),
                                          enh.enhance(data[0, c]))


def test_output_pattern_and_reports(cli, fast_model, series):
    path, data = series
    pattern = str(path.parent / "out" / "t{t}.zarr")
    proc = cli("resin-run", "--engine", str(fast_model), str(path), "--time", "all", "-o",
               pattern, "--device", "cpu", *TILE, "--report")
    assert proc.returncode == 0, proc.stderr
    for t, want in enumerate(_singles(fast_model, data)):
        np.testing.assert_array_equal(read_volume(path.parent / "out" / f"t{t}.zarr"), want)
    single = path.parent / "single.zarr"  # each report is the one a run of its time point gives
    proc = cli("resin-run", "--engine", str(fast_model), str(path), "--time", "1", "-o",
               str(single), "--device", "cpu", *TILE, "--report")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((path.parent / "out" / "t1.zarr.report.json").read_text())
    assert report == json.loads((path.parent / "single.zarr.report.json").read_text())
    assert report != json.loads((path.parent / "out" / "t0.zarr.report.json").read_text())


def test_bad_series_requests_are_one_line(cli, fast_model, series, channels):
    path, _ = series
    line = assert_one_line_error(cli("resin-run", "--engine", str(fast_model), str(path),
                                     "--device", "cpu"))
    assert "--time T (0 to 2), or every one with --time all" in line
    line = assert_one_line_error(cli("resin-run", "--engine", str(fast_model), str(path),
                                     "--time", "all", "-o", str(path.parent / "o.tif"),
                                     "--device", "cpu"))
    assert "o.tif: one output holding every time point or channel is a Zarr store" in line
    line = assert_one_line_error(cli("resin-run", "--engine", str(fast_model), str(path),
                                     "--time", "every", "--device", "cpu"))
    assert "or all" in line
    line = assert_one_line_error(cli("resin-run", "--engine", str(fast_model), str(path),
                                     "--time", "all", "-o", str(path.parent / "o{c}.zarr"),
                                     "--device", "cpu"))
    assert "holds {c} but that choice is not 'all'" in line
    cpath, _ = channels
    line = assert_one_line_error(cli("resin-run", "--engine", str(fast_model), str(cpath),
                                     "--time", "all", "--device", "cpu"))
    assert "or every one with --channel all" in line
    line = assert_one_line_error(cli("resin-run", "--engine", str(fast_model), str(cpath),
                                     "--time", "all", "--channel", "all", "-o",
                                     str(cpath.parent / "o_t{t}.zarr"), "--device", "cpu"))
    assert "needs {t} and {c} in its name (missing {c})" in line
    assert not list(path.parent.glob("*.zarr*"))


def test_an_existing_output_is_refused_before_any_time_point_runs(cli, fast_model, series):
    path, _ = series
    (path.parent / "o_t2.zarr").mkdir()  # the last one is in the way
    line = assert_one_line_error(cli("resin-run", "--engine", str(fast_model), str(path),
                                     "--time", "all", "-o", str(path.parent / "o_t{t}.zarr"),
                                     "--device", "cpu", *TILE))
    assert "o_t2.zarr exists" in line
    assert not (path.parent / "o_t0.zarr").exists()


def test_one_store_replaces_an_old_one_only_when_complete(cli, fast_model, series):
    path, data = series
    out = path.parent / "series_resin.ome.zarr"
    args = ["resin-run", "--engine", str(fast_model), str(path), "--time", "all",
            "--device", "cpu", *TILE]
    out.mkdir()  # a folder of the user's that happens to have the name: never replaced
    (out / "notes.txt").write_text("mine")
    line = assert_one_line_error(cli(*args, "--overwrite"))
    assert "is not a Zarr store; refusing to replace it" in line
    assert (out / "notes.txt").read_text() == "mine"
    (out / "notes.txt").unlink()
    out.rmdir()
    assert cli(*args).returncode == 0
    line = assert_one_line_error(cli(*args))
    assert "series_resin.ome.zarr exists; pass --overwrite" in line
    stamp = (out / "zarr.json").stat().st_mtime_ns
    proc = cli(*args, "--overwrite", "--tile", "8", "8", "8")
    assert proc.returncode == 0, proc.stderr
    assert (out / "zarr.json").stat().st_mtime_ns != stamp
    assert not Path(f"{out}.partial").exists() and not Path(f"{out}.resin-old").exists()
    with Enhancer(fast_model, device="cpu", tile=(8, 8, 8)) as enh:
        for t in range(3):
            with open_volume(out, time=t) as reader:
                np.testing.assert_array_equal(reader.read(), enh.enhance(data[t]))


def test_mips_of_outputs_with_one_name_are_refused(cli, fast_model, series):
    path, _ = series
    line = assert_one_line_error(cli("resin-run", "--engine", str(fast_model), str(path),
                                     "--time", "all", "-o", str(path.parent / "{t}" / "o.zarr"),
                                     "--mip", str(path.parent / "mips"), "--device", "cpu"))
    assert "would both write o_mip_z.tif" in line
    assert not list(path.parent.glob("*/o.zarr"))


class _Stop(Exception):
    pass


def _stop_in_the_second(model, path, output):
    """Run the series into ``output``, stopping after a block of its second time point."""
    runs = set()

    def stop(p):  # all of time point 0, then part of time point 1
        runs.add(p.started)
        if len(runs) == 2 and p.blocks_done >= 1:
            raise _Stop

    with Enhancer(model, device="cpu", tile=(8, 16, 16), block=(8, 20, 24)) as enh:
        with pytest.raises(_Stop):
            enh.run_series(path, output, progress=stop)


def test_an_interrupted_series_resumes_keeping_the_finished_outputs(cli, fast_model, series):
    path, data = series
    pattern = str(path.parent / "o_t{t}.zarr")
    _stop_in_the_second(fast_model, path, pattern)
    first = path.parent / "o_t0.zarr"
    assert first.exists() and (path.parent / "o_t1.zarr.partial").exists()
    stamp = (first / "zarr.json").stat().st_mtime_ns
    args = ["resin-run", "--engine", str(fast_model), str(path), "--time", "all", "-o",
            pattern, "--device", "cpu", *TILE, "--block", "8", "20", "24"]
    line = assert_one_line_error(cli(*args))  # without --resume nothing is replaced
    assert "--resume" in line
    proc = cli(*args, "--resume")
    assert proc.returncode == 0, proc.stderr
    assert "o_t0.zarr is complete; kept" in proc.stderr
    assert (first / "zarr.json").stat().st_mtime_ns == stamp
    for t, want in enumerate(_singles(fast_model, data)):
        np.testing.assert_array_equal(read_volume(path.parent / f"o_t{t}.zarr"), want)


def test_resume_does_not_keep_an_output_another_run_wrote(cli, fast_model, series, tmp_path):
    path, data = series
    other = tmp_path / "other.tif"
    tifffile.imwrite(other, data, imagej=True, metadata={"axes": "TZYX"})
    with Enhancer(fast_model, device="cpu", tile=(8, 16, 16)) as enh:
        enh.run(other, tmp_path / "o_t0.zarr", time=0)  # same data, another input file
    line = assert_one_line_error(cli("resin-run", "--engine", str(fast_model), str(path),
                                     "--time", "all", "-o", str(tmp_path / "o_t{t}.zarr"),
                                     "--device", "cpu", *TILE, "--resume"))
    assert "o_t0.zarr is complete but was not written by this run (input differ)" in line


def test_a_plain_volume_is_its_own_series(fast_model, tmp_path, rng):
    data = rng.integers(0, 4000, size=(16, 20, 24)).astype(np.uint16)
    src = tmp_path / "vol.tif"
    tifffile.imwrite(src, data)
    with Enhancer(fast_model, device="cpu", tile=(8, 16, 16)) as enh:
        reports = enh.run_series(src)
        assert [r.output for r in reports] == [str(tmp_path / "vol_resin.ome.zarr")]
        np.testing.assert_array_equal(read_volume(reports[0].output), enh.enhance(data))


def test_an_interrupted_store_resumes_keeping_the_finished_time_points(cli, fast_model, series):
    path, data = series
    out = path.parent / "s.ome.zarr"
    _stop_in_the_second(fast_model, path, out)
    parts = Path(f"{out}.partial") / "parts"
    assert (parts / "s_t0.ome.zarr").exists() and (parts / "s_t1.ome.zarr.partial").exists()
    assert not out.exists()
    args = ["resin-run", "--engine", str(fast_model), str(path), "--time", "all", "-o",
            str(out), "--device", "cpu", *TILE, "--block", "8", "20", "24"]
    line = assert_one_line_error(cli(*args))  # without --resume nothing is replaced
    assert "--resume" in line
    other = ["resin-run", "--engine", str(fast_model), str(path), "--time", "1", "-o",
             str(out), "--device", "cpu", "--resume"]
    line = assert_one_line_error(cli(*other))  # a single run cannot take the series over
    assert "is an unfinished run over every time point or channel" in line
    proc = cli(*args, "--resume", "--tile", "8", "8", "8")  # the finished part's tile wins
    assert proc.returncode == 0, proc.stderr
    assert "s_t0.ome.zarr is complete; kept" in proc.stderr
    group = zarr.open_group(out, mode="r")
    for t, want in enumerate(_singles(fast_model, data)):
        np.testing.assert_array_equal(group["0"][t], want)
    resin = dict(group.attrs["resin"])  # one tile for all: the parts share their chunks
    assert resin["tile"] != [8, 8, 8] and all("tile" not in p for p in resin["parts"])


def test_a_stop_while_parts_move_into_the_store_resumes(fast_model, series, monkeypatch):
    path, data = series
    out = path.parent / "m.zarr"
    moves = {"n": 0}
    real = Path.replace

    def flaky(self, target):  # the fourth chunk file moved from a part into the store
        if "/parts/" in str(self) and "/parts/" not in str(target):
            moves["n"] += 1
            if moves["n"] == 4:
                raise _Stop
        return real(self, target)

    with Enhancer(fast_model, device="cpu", tile=(8, 16, 16), block=(8, 20, 24)) as enh:
        monkeypatch.setattr(Path, "replace", flaky)
        with pytest.raises(_Stop):
            enh.run_series(path, out)
        monkeypatch.setattr(Path, "replace", real)
        assert moves["n"] == 4
        assert not out.exists() and (Path(f"{out}.partial") / "zarr.json").exists()
        with pytest.raises(OutputExistsError):
            enh.run_series(path, out)
        reports = enh.run_series(path, out, resume=True)
        assert reports == []  # every part was complete: nothing ran again
        array = zarr.open_array(out, mode="r")
        for t in range(3):
            np.testing.assert_array_equal(array[t], enh.enhance(data[t]))
        assert sorted(p.name for p in path.parent.iterdir()) == ["m.zarr", "series.tif"]


def test_resume_refuses_other_settings_before_running_any_part(fast_model, series):
    path, _ = series
    out = path.parent / "f.ome.zarr"
    _stop_in_the_second(fast_model, path, out)
    with Enhancer(fast_model, device="cpu", tile=(8, 16, 16), block=(8, 20, 24),
                  faces="zeros") as enh:
        with pytest.raises(ResumeError, match="started with another faces; resume with"):
            enh.run_series(path, out, resume=True)
    assert (Path(f"{out}.partial") / "parts" / "f_t1.ome.zarr.partial").exists()


def test_a_part_stopped_before_its_record_is_run_again(fast_model, series, monkeypatch):
    from resin.runtime import runstate

    path, data = series
    out = path.parent / "r.ome.zarr"
    real = runstate.RunRecord.create
    calls = {"n": 0}

    def stop_at_the_second(self, n_blocks):  # part 1's store exists, its record not yet
        calls["n"] += 1
        if calls["n"] == 2:
            raise _Stop
        return real(self, n_blocks)

    monkeypatch.setattr(runstate.RunRecord, "create", stop_at_the_second)
    with Enhancer(fast_model, device="cpu", tile=(8, 16, 16)) as enh:
        with pytest.raises(_Stop):
            enh.run_series(path, out)
        monkeypatch.setattr(runstate.RunRecord, "create", real)
        part1 = Path(f"{out}.partial") / "parts" / "r_t1.ome.zarr.partial"
        assert part1.exists() and not (part1 / ".resin-run" / "plan.json").exists()
        reports = enh.run_series(path, out, resume=True)
        assert len(reports) == 2  # parts 1 and 2; part 0 was kept
        group = zarr.open_group(out, mode="r")
        for t in range(3):
            np.testing.assert_array_equal(group["0"][t], enh.enhance(data[t]))


def test_what_a_stop_while_staging_was_made_leaves_is_overwritten(cli, fast_model, series):
    path, _ = series
    out = path.parent / "run.v2.ome.zarr"  # a dot in the name: --mip names still differ
    (path.parent / "run.v2.ome.zarr.partial" / "parts").mkdir(parents=True)
    args = ["resin-run", "--engine", str(fast_model), str(path), "--time", "all", "-o",
            str(out), "--device", "cpu", *TILE, "--mip", str(path.parent / "m")]
    line = assert_one_line_error(cli(*args, "--resume"))
    assert "resin-series.json" in line and "--overwrite" in line
    proc = cli(*args, "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert (path.parent / "m" / "run_t2_mip_z.tif").exists()
    ms = zarr.open_group(out, mode="r").attrs["ome"]["multiscales"][0]
    assert ms["name"] == "run"


def test_a_resume_whose_job_another_run_finished_is_one_error(fast_model, series):
    from resin.runtime.series import plan_series, run_series

    path, _ = series
    out = path.parent / "g.ome.zarr"
    _stop_in_the_second(fast_model, path, out)
    with Enhancer(fast_model, device="cpu", tile=(8, 16, 16), block=(8, 20, 24)) as enh:
        plan = plan_series(enh, path, out, resume=True)
        shutil.rmtree(f"{out}.partial")  # another run took it over and finished meanwhile
        with pytest.raises(ResumeError, match="g.ome.zarr.partial is gone: another run"):
            run_series(enh, path, out, resume=True, plan=plan)


def test_a_series_of_one_is_counted_in_the_singular(cli, fast_model, series):
    """"1 time points", "enhanced 1 volumes" before."""
    path, data = series
    one = path.parent / "one.tif"
    tifffile.imwrite(one, data[:1], imagej=True, metadata={"axes": "TZYX"})
    proc = cli("resin-run", "--engine", str(fast_model), str(one), "--time", "all",
               "--device", "cpu", *TILE)
    assert proc.returncode == 0, proc.stderr
    assert "enhanced 1 volume in" in proc.stderr, proc.stderr
    assert "1 time points" not in proc.stderr and "volumes" not in proc.stderr, proc.stderr
