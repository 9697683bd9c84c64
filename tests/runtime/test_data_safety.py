"""resin-run never loses or mixes data: each test reproduces one way an earlier runtime did.

(The NaN-mid-run case, defect 3, is in test_pipeline.py; kill -9 then --resume in
test_cli.py.)
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error
from resin.runtime import Enhancer

from resin.io import read_volume, write_volume

TILE = ["--tile", "8", "16", "16"]


@pytest.fixture
def src(tmp_path, rng) -> Path:
    path = tmp_path / "in.tif"
    write_volume(path, rng.integers(0, 4000, size=(24, 20, 20)).astype(np.uint16))
    return path


def _run(cli, model, src, out, *extra):
    return cli("resin-run", "--engine", str(model), str(src), "-o", str(out), "--device",
               "cpu", *TILE, *extra)


class _Stop(Exception):
    pass


def _interrupt(model, src, out, after_tiles=10, **kw):
    """A run stopped after a few tiles (as Ctrl-C or a crash would stop it)."""
    def stop(p):
        if p.tiles_done >= after_tiles:
            raise _Stop

    with Enhancer(model, device="cpu", tile=(8, 16, 16), block=(4, 20, 20)) as enh:
        with pytest.raises(_Stop):
            enh.run(src, out, progress=stop, **kw)


# 1 ------------------------------------------------------------------------------------------
def test_resume_after_the_partial_output_was_deleted_is_refused(cli, fast_model, src,
                                                                tmp_path):
    out = tmp_path / "out.zarr"
    _interrupt(fast_model, src, out)
    partial = Path(str(out) + ".partial")
    assert partial.is_dir()
    import shutil

    shutil.move(partial, tmp_path / "moved.zarr")
    line = assert_one_line_error(_run(cli, fast_model, src, out, "--resume"))
    assert "missing" in line
    assert not out.exists() and not partial.exists()


# 2 ------------------------------------------------------------------------------------------
def test_output_inside_input_and_input_inside_output_are_refused(cli, fast_model, tmp_path,
                                                                 rng):
    vol = rng.integers(0, 4000, size=(8, 12, 12)).astype(np.uint16)
    src = tmp_path / "in.ome.zarr"
    write_volume(src, vol)
    before = read_volume(src)
    for out in (src / "0", src / "sub.zarr", src):
        line = assert_one_line_error(_run(cli, fast_model, src, out, "--overwrite"))
        assert "input" in line
    plain = tmp_path / "x.zarr"
    write_volume(plain, vol)
    inner = tmp_path / "g.zarr"
    import zarr

    g = zarr.open_group(inner, mode="w")
    g.create_array("0", data=vol, chunks=(8, 12, 12))
    line = assert_one_line_error(_run(cli, fast_model, f"{inner}/0", inner, "--overwrite"))
    assert "contains the input" in line
    np.testing.assert_array_equal(read_volume(src), before)
    np.testing.assert_array_equal(np.asarray(zarr.open_array(f"{inner}/0")), vol)


# 3 ------------------------------------------------------------------------------------------
def test_a_failed_overwrite_keeps_the_previous_output_and_the_finished_blocks(
        cli, fast_model, src, tmp_path):
    out = tmp_path / "out.tif"
    assert _run(cli, fast_model, src, out).returncode == 0
    previous = out.read_bytes()
    _interrupt(fast_model, src, out, overwrite=True)
    assert out.read_bytes() == previous
    done = list((tmp_path / "out.tif.resin-run" / "done").iterdir())
    assert done, "finished blocks were not kept"
    # and the run resumes to the same bytes as a fresh one
    assert _run(cli, fast_model, src, out, "--resume", "--block", "4", "20", "20"
                ).returncode == 0
    fresh = tmp_path / "fresh.tif"
    assert _run(cli, fast_model, src, fresh, "--block", "4", "20", "20").returncode == 0
    np.testing.assert_array_equal(read_volume(out), read_volume(fresh))


# 4 ------------------------------------------------------------------------------------------
def test_a_live_run_locks_its_output(cli, fast_model, src, tmp_path):
    out = tmp_path / "out.zarr"
    assert _run(cli, fast_model, src, out).returncode == 0
    before = read_volume(out)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = Path(str(out) + ".resin-lock")
        lock.write_text(json.dumps({"host": socket.gethostname(), "pid": sleeper.pid,
                                    "started": "now"}))
        line = assert_one_line_error(_run(cli, fast_model, src, out, "--overwrite"))
        assert "being written by another run" in line and str(sleeper.pid) in line
        np.testing.assert_array_equal(read_volume(out), before)
        assert lock.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    # the owner is gone: the lock is stale and is taken over
    proc = _run(cli, fast_model, src, out, "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert "stale lock" in proc.stderr and not lock.exists()


def test_a_tiff_run_while_another_holds_it_is_refused_not_an_internal_error(
        cli, fast_model, src, tmp_path):
    out = tmp_path / "out.tif"
    _interrupt(fast_model, src, out)
    lock = Path(str(out) + ".resin-lock")
    lock.write_text(json.dumps({"host": "another-host", "pid": 1, "started": "now"}))
    line = assert_one_line_error(_run(cli, fast_model, src, out, "--resume"))
    assert "another-host" in line


# 5 ------------------------------------------------------------------------------------------
def test_resume_after_the_input_changed_in_place_is_refused(cli, fast_model, src, tmp_path,
                                                             rng):
    out = tmp_path / "out.zarr"
    _interrupt(fast_model, src, out)
    vol = read_volume(src)
    vol[0, 0, 0] += 1  # same shape, dtype and (nearly) levels; the data differ
    write_volume(src, vol, overwrite=True)
    line = assert_one_line_error(_run(cli, fast_model, src, out, "--resume",
                                      "--block", "4", "20", "20"))
    assert "different input" in line


def test_resume_with_another_model_file_is_refused(cli, fast_model, src, tmp_path):
    out = tmp_path / "out.zarr"
    _interrupt(fast_model, src, out)
    other = tmp_path / "same-weights.onnx"
    other.write_bytes(fast_model.read_bytes() + b"")
    import onnx

    m = onnx.load(str(other))
    m.doc_string = "re-exported"  # same weights and metadata, another file
    onnx.save(m, str(other))
    line = assert_one_line_error(_run(cli, other, src, out, "--resume",
                                      "--block", "4", "20", "20"))
    assert "different model_sha256" in line


def test_the_plan_names_backend_and_precision(fast_model, src, tmp_path):
    out = tmp_path / "out.zarr"
    _interrupt(fast_model, src, out)
    plan = json.loads((Path(str(out) + ".partial") / ".resin-run" / "plan.json").read_text())
    assert plan["plan"]["backend"] == "onnxruntime" and plan["plan"]["precision"]
    assert plan["plan"]["input"]["size"] == src.stat().st_size


# 6 ------------------------------------------------------------------------------------------
def test_block_data_is_flushed_before_its_marker(fast_model, src, tmp_path, monkeypatch):
    from resin.runtime import runstate

    from resin.io import _zarr

    events: list[str] = []
    real_flush, real_mark = _zarr.ZarrWriter.flush, runstate.RunRecord.mark
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real_fsync(fd)

    def flush(self, region):
        events.append("flush")
        return real_flush(self, region)

    def mark(self, key):
        events.append("mark")
        return real_mark(self, key)

    monkeypatch.setattr(_zarr.ZarrWriter, "flush", flush)
    monkeypatch.setattr(runstate.RunRecord, "mark", mark)
    monkeypatch.setattr(os, "fsync", fsync)
    with Enhancer(fast_model, device="cpu", tile=(8, 16, 16), block=(4, 20, 20)) as enh:
        enh.run(src, tmp_path / "out.zarr")
    assert events and events[0] == "flush"
    assert all(events[i:i + 2] == ["flush", "mark"] for i in range(0, len(events), 2))
    chunk_files = [p for p in synced if "/c/" in p]
    assert len(chunk_files) >= len(events) // 2, "chunk files were not fsynced"


# 7 ------------------------------------------------------------------------------------------
def test_tiff_output_without_free_space_is_refused_up_front(cli, fast_model, src, tmp_path,
                                                             monkeypatch):
    import shutil
    from collections import namedtuple

    from resin.errors import VolumeError

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9, 1000))
    out = tmp_path / "out.tif"
    with Enhancer(fast_model, device="cpu", tile=(8, 16, 16)) as enh:
        with pytest.raises(VolumeError, match="free") as caught:
            enh.run(src, out)
    assert not list(tmp_path.glob("out.tif*"))
    # sizes people can read: 1000 bytes free is not "0.00 GiB"
    assert "1000 B is free" in str(caught.value) and "0.00 GiB" not in str(caught.value)


# 8 ------------------------------------------------------------------------------------------
def test_a_half_written_zarr_is_reported_incomplete_and_not_scored(cli, fast_model, src,
                                                                    tmp_path):
    out = tmp_path / "out.zarr"
    _interrupt(fast_model, src, out)
    partial = str(out) + ".partial"
    proc = cli("resin", "info", partial)
    assert proc.returncode == 0, proc.stderr
    assert "incomplete" in proc.stdout and "of 6 blocks" in proc.stdout
    line = assert_one_line_error(cli("resin", "eval", partial, str(src)))
    assert "incomplete" in line
    # a store copied away from its .partial name is still marked incomplete
    import shutil

    copy = tmp_path / "copy.zarr"
    shutil.copytree(partial, copy)
    assert "incomplete" in assert_one_line_error(cli("resin", "eval", str(copy), str(src)))


# 9 ------------------------------------------------------------------------------------------
class _NaNEngine:
    name, device = "fake", "cpu"

    def __init__(self) -> None:
        from resin.metadata import ModelMetadata, NormalizationRecord

        self.metadata = ModelMetadata(halo=(1, 1, 1), size_multiple=1, normalization=(
            NormalizationRecord(low_percentile=1, high_percentile=99)))
        self.calls = 0

    def infer(self, tile):
        self.calls += 1
        out = tile.copy()
        if self.calls == 3:
            out[0, 0, 2, 2, 2] = np.inf
        return out


def test_non_finite_network_output_is_an_error_naming_the_tile(rng):
    from resin.runtime.runner import TileSettings, enhance_array

    from resin.errors import InferenceError

    vol = rng.integers(0, 3000, size=(10, 12, 12)).astype(np.uint16)
    with pytest.raises(InferenceError, match=r"1 NaN/infinite values .*tile \(0, 0, 2\)") as e:
        enhance_array(_NaNEngine(), vol, TileSettings(tile=(6, 6, 6)))
    assert e.value.exit_code == 1


# 10 -----------------------------------------------------------------------------------------
def test_overlap_larger_than_half_the_core_is_refused(cli, fast_model, src, tmp_path):
    line = assert_one_line_error(_run(cli, fast_model, src, tmp_path / "o.zarr",
                                      "--overlap", "9"))
    assert "--overlap" in line
    assert not list(tmp_path.glob("o.zarr*"))


def test_mip_dir_is_checked_before_the_run(cli, fast_model, src, tmp_path):
    not_a_dir = tmp_path / "mips"
    not_a_dir.write_text("x")
    line = assert_one_line_error(_run(cli, fast_model, src, tmp_path / "o.zarr", "--mip",
                                      str(not_a_dir)))
    assert "is not a folder" in line and not list(tmp_path.glob("o.zarr*"))
    mips = tmp_path / "m"
    mips.mkdir()
    (mips / "o_mip_z.tif").write_bytes(b"mine")
    line = assert_one_line_error(_run(cli, fast_model, src, tmp_path / "o.zarr", "--mip",
                                      str(mips)))
    assert "o_mip_z.tif" in line and not list(tmp_path.glob("o.zarr*"))
    assert (mips / "o_mip_z.tif").read_bytes() == b"mine"


def test_small_files_are_never_written_through_a_symlink(tmp_path):
    from resin._png import write_png
    from resin.metrics import KEYS, write_json

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    for target, write in (
        (tmp_path / "m.json", lambda p: write_json({k: 1.0 for k in KEYS}, p)),
        (tmp_path / "p.png", lambda p: write_png(p, np.zeros((2, 2), np.uint8))),
        (tmp_path / "r.json", _save_report),
    ):
        # the old temporary names, and the target itself, planted as links to the victim
        for name in (target.name + ".partial", target.name + ".tmp"):
            (tmp_path / name).symlink_to(victim)
        write(target)
        assert victim.read_text() == "precious", target
        assert target.is_file() and not target.is_symlink()


def _save_report(path):
    from resin.report import make_report

    vol = np.random.default_rng(0).random((16, 16, 16)).astype(np.float32)
    make_report(vol, vol).save(path)


# QA sweep of 2026-12-06 ----------------------------------------------------------------------
def test_an_unfinished_output_is_not_taken_as_input(cli, fast_model, src, tmp_path):
    for name in ("out.tif", "out.zarr"):
        out = tmp_path / name
        _interrupt(fast_model, src, out)
        partial = Path(f"{out}.partial")
        assert partial.exists()
        line = assert_one_line_error(_run(cli, fast_model, partial, tmp_path / f"x_{name}"))
        assert "unfinished" in line and "--resume" in line
        assert not list(tmp_path.glob("x_*"))


def test_an_unfinished_zarr_renamed_is_still_not_taken_as_input(cli, fast_model, src,
                                                                tmp_path):
    out = tmp_path / "out.zarr"
    _interrupt(fast_model, src, out)
    renamed = tmp_path / "renamed.zarr"
    Path(f"{out}.partial").rename(renamed)  # its record says it is unfinished
    line = assert_one_line_error(_run(cli, fast_model, renamed, tmp_path / "x.zarr"))
    assert "unfinished" in line and not list(tmp_path.glob("x.zarr*"))


def test_an_output_named_like_an_unfinished_one_is_refused(cli, fast_model, src, tmp_path):
    line = assert_one_line_error(_run(cli, fast_model, src, tmp_path / "y.tif.partial"))
    assert ".partial" in line and not list(tmp_path.glob("y.tif*"))


def test_a_file_where_the_run_record_goes_is_kept_and_refused(cli, fast_model, src, tmp_path):
    mine = tmp_path / "col.tif.resin-run"
    mine.write_text("mine")
    line = assert_one_line_error(_run(cli, fast_model, src, tmp_path / "col.tif"))
    assert "run record" in line and mine.read_text() == "mine"
    assert sorted(p.name for p in tmp_path.glob("col.tif*")) == ["col.tif.resin-run"]


def test_an_output_that_overflows_float32_is_an_error_not_infinities(cli, fast_model, tmp_path,
                                                                      rng):
    from resin.errors import VolumeError

    src = tmp_path / "huge.tif"
    write_volume(src, (rng.random((24, 20, 20)) * 3e38).astype(np.float32))
    out = tmp_path / "o.tif"
    line = assert_one_line_error(_run(cli, fast_model, src, out))  # from its levels, up front
    assert "float32's limit" in line and not list(tmp_path.glob("o.tif*"))
    with Enhancer(fast_model, device="cpu", tile=(8, 16, 16)) as enh:
        with pytest.raises(VolumeError, match="float32's limit"):
            enh.enhance(read_volume(src))
    # what the levels miss (a few voxels far above them) the writer finds in every block
    from resin.runtime.pipeline import Writer

    class Sink:
        def write(self, region, data):
            raise AssertionError("infinite values were written")

    writer = Writer(Sink(), None)  # type: ignore[arg-type]
    writer.put((slice(0, 2), slice(0, 2), slice(0, 2)), np.full((2, 2, 2), np.inf, np.float32))
    with pytest.raises(VolumeError, match="overflows float32"):
        writer.close()


def test_flags_the_output_cannot_honour_are_refused(cli, fast_model, src, tmp_path):
    line = assert_one_line_error(_run(cli, fast_model, src, tmp_path / "o.tif", "--levels", "3"))
    assert "--levels" in line
    line = assert_one_line_error(_run(cli, fast_model, src, tmp_path / "o.tif", "--memory",
                                      "inf"))
    assert "--memory" in line
    assert not list(tmp_path.glob("o.tif*"))


def test_a_scheduler_that_is_not_an_address_is_one_line(cli, fast_model, src, tmp_path):
    pytest.importorskip("distributed")
    line = assert_one_line_error(_run(cli, fast_model, src, tmp_path / "o.zarr", "--scheduler",
                                      "garbage"))
    assert "garbage" in line


def test_an_empty_volume_is_called_empty(cli, fast_model, tmp_path):
    import tifffile

    src = tmp_path / "zero.tif"
    tifffile.imwrite(src, np.zeros((0, 32, 32), np.uint16))
    line = assert_one_line_error(_run(cli, fast_model, src, tmp_path / "o.tif"))
    assert "is empty (shape" in line


def test_output_folders_that_cannot_be_written_are_refused_up_front(tmp_path, monkeypatch):
    from resin.runtime.runstate import OutputLock

    from resin.errors import UsageError
    from resin.io._common import check_folder

    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == tmp_path
                        else real_access(p, mode, **kw))
    with pytest.raises(UsageError, match="not writable"):
        check_folder(tmp_path / "mips")  # --mip, export -o, demo --out: before any work
    with pytest.raises(UsageError, match="not writable"):
        check_folder(tmp_path)
    monkeypatch.undo()

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(UsageError, match="Read-only file system"):
        OutputLock(str(tmp_path / "o.tif")).acquire()


def test_blocks_far_smaller_than_the_tile_are_refused(cli, fast_model, src, tmp_path):
    line = assert_one_line_error(_run(cli, fast_model, src, tmp_path / "new" / "sub" / "o.tif",
                                      "--block", "1", "1", "1"))
    assert "--block 1x1x1" in line and "times over" in line
    assert not (tmp_path / "new").exists()  # refused after the lock: its folders go too


def test_resume_names_the_setting_that_changed_not_the_block_it_moved(tmp_path):
    from resin.runtime.runstate import RunRecord

    from resin.errors import ResumeError

    before = {"block": [32, 256, 256], "chunks": [32, 128, 128], "faces": "repeat",
              "input": "a"}
    RunRecord(tmp_path / "rec", before).create(4)
    after = {**before, "block": [32, 464, 464], "chunks": [32, 232, 232], "faces": "zeros"}
    with pytest.raises(ResumeError) as caught:
        RunRecord(tmp_path / "rec", after).check()
    said = str(caught.value).split("used a different ")[1]
    assert said.startswith('faces ("repeat", now "zeros"), block')


def test_contradictory_run_options_are_refused(cli, fast_model, src, tmp_path):
    line = assert_one_line_error(cli("resin-run", "--engine", str(fast_model), str(src), "-o",
                                     str(tmp_path / "o.tif"), "--tile", "8", "16", "16",
                                     "--memory", "1"))
    assert "--tile" in line and "--memory" in line
    pytest.importorskip("distributed")
    line = assert_one_line_error(_run(cli, fast_model, src, tmp_path / "o.zarr", "--workers",
                                      "0"))
    assert "--workers" in line
    assert not list(tmp_path.glob("o.*"))


def test_a_run_into_a_folder_it_cannot_write_is_refused_before_it_starts(fast_model, src,
                                                                         tmp_path, monkeypatch):
    from resin.errors import UsageError

    ro = tmp_path / "ro"
    ro.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == ro
                        else real_access(p, mode, **kw))
    with Enhancer(fast_model, device="cpu", tile=(8, 16, 16)) as enh:
        for out in (ro / "o.tif", ro / "o.zarr"):
            with pytest.raises(UsageError, match="not writable"):
                enh.run(src, out)
    assert not list(ro.iterdir())
