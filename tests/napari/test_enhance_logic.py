"""The Enhance widget's logic without Qt: regions in view, tiles, command lines, jobs."""

from __future__ import annotations

import shlex
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from resin.runtime.cli import build_parser

from resin.errors import UsageError, VolumeError
from resin.napari._enhance import ModelSettings, command_line, parse_tile, preview_region
from resin.napari._jobs import Job, Snapshot, Stopped


def test_preview_region_is_the_view_and_planes_around_the_slider():
    shape = (48, 128, 128)
    corners = np.array([[0, 10, 20], [0, 59, 99]])
    assert preview_region(shape, (1, 2), corners, (20.4, 0, 0), planes=4) == (
        slice(16, 25), slice(10, 60), slice(20, 100))
    # at the edges the planes are clipped; corners out of the volume too
    assert preview_region(shape, (1, 2), np.array([[0, -5, 0], [0, 500, 127]]), (1, 0, 0))[:2] \
        == (slice(0, 6), slice(0, 128))
    # the axial view: z and x displayed, y on the slider
    region = preview_region(shape, (0, 2), np.array([[5, 0, 0], [40, 0, 127]]), (0, 64, 0))
    assert region == (slice(5, 41), slice(60, 69), slice(0, 128))


def test_tile_text():
    assert parse_tile("auto") is None and parse_tile("") is None
    assert parse_tile("64 92 92") == (64, 92, 92) == parse_tile("64x92x92")
    for bad in ("64 92", "a b c", "0 8 8"):
        with pytest.raises(UsageError):
            parse_tile(bad)


def test_command_line_is_what_resin_run_parses():
    settings = ModelSettings(Path("/models/my model.onnx"), "onnxruntime", "cpu", (64, 92, 92))
    text = command_line(settings, "/data/raw vol.tif", "/data/out.ome.zarr", resume=True)
    args = shlex.split(text)
    assert args[0] == "resin-run"
    parsed = build_parser().parse_args(args[1:])
    assert parsed.engine == ["/models/my model.onnx"] and parsed.input == "/data/raw vol.tif"
    assert parsed.output == "/data/out.ome.zarr" and tuple(parsed.tile) == (64, 92, 92)
    assert (parsed.backend, parsed.device, parsed.resume) == ("onnxruntime", "cpu", True)
    assert command_line(ModelSettings(), "a.tif", None) == "resin-run a.tif"
    zeros = command_line(ModelSettings(faces="zeros"), "a.tif", None)
    assert zeros == "resin-run a.tif --faces zeros"
    assert build_parser().parse_args(shlex.split(zeros)[1:]).faces == "zeros"


def test_job_reports_progress_stops_and_keeps_errors_to_one_line():
    def work(job: Job) -> str:
        for i in range(1000):
            job.report(i, 1000, "voxels")
            time.sleep(0.001)
        return "done"

    job = Job(work).start()
    while job.snapshot is None:
        time.sleep(0.001)
    job.stop()
    assert job.wait(10) and job.stopped and job.result is None and job.error is None

    job = Job(lambda j: (_ for _ in ()).throw(VolumeError("'x' is 2-D"))).start()
    assert job.wait(10) and job.error == "'x' is 2-D" and not job.stopped

    job = Job(lambda j: 41 + 1).start()
    assert job.wait(10) and job.result == 42 and job.done

    with pytest.raises(Stopped):
        stopped = Job(lambda j: None)
        stopped.stop()
        stopped.check()


def test_snapshot_text():
    snap = Snapshot(done=250, total=1000, unit="voxels", seconds=5.0)
    assert snap.fraction == 0.25 and snap.rate == 50 and snap.eta == 15
    assert snap.text() == "25%  50.0 voxels/s  ETA 15 s"
    assert Snapshot(0, 10, "steps", 1.0).text() == "0%"


def test_train_layer_fits_the_preset_patch_to_a_thin_layer(tmp_path, tiny_volume):
    """The Train widget trains as `resin train` without --patch: the quick preset's 32^3
    patch on a 16-plane layer becomes a 12^3 cube (without the fit the run was refused)."""
    pytest.importorskip("torch")
    import json

    from resin.napari._train import TrainSettings, train_layer

    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({
        "generator": {"features": [4, 8]}, "degrader": {"kernel_size": 5},
        "discriminator": {"features": 2, "layers": 2}, "loss": {"ssim_window": 7},
        "data": {"validation_patches": 1}, "threads": 1}))
    model = tmp_path / "m.pt"
    settings = TrainSettings(model=model, preset="quick", steps=2, config_file=config,
                             device="cpu")
    layer = np.concatenate([tiny_volume, tiny_volume], axis=2)  # 16x32x64
    job = Job(lambda j: train_layer(settings, layer, None, j)).start()
    assert job.wait(240)
    assert job.error is None and job.result == model
    assert json.loads((tmp_path / "m.json").read_text())["data"]["patch_size"] == [12, 12, 12]
    # --retries: while the report warns, the run is trained again with the next seed
    import resin.report

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(resin.report, "LOST_LATERAL", -1.0)  # every report warns
        again = replace(settings, model=tmp_path / "r.pt", retries=1)
        job = Job(lambda j: train_layer(again, layer, None, j)).start()
        assert job.wait(240) and job.error is None
    seed = json.loads((tmp_path / "m.json").read_text())["seed"]
    assert json.loads((tmp_path / "r.json").read_text())["seed"] == seed + 1


class _Recorder:
    """A job's progress reports, stopping after ``stop_at`` tiles when given."""

    def __init__(self, stop_at: float | None = None) -> None:
        self.reports: list[tuple[float, float]] = []
        self.stop_at = stop_at

    def check(self) -> None:
        pass

    def report(self, done: float, total: float, unit: str) -> None:
        self.reports.append((done, total))
        if self.stop_at is not None and done >= self.stop_at:
            raise Stopped


def test_a_resumed_series_run_counts_the_kept_time_points(tmp_path, tiny_volume):
    """Resumed after a stop in its second time point, the run's progress used to count
    only what it ran itself and end at two thirds of the bar."""
    import tifffile
    from resin.runtime import Enhancer

    from resin.napari._enhance import enhance_series_to_file

    series = np.stack([np.concatenate([tiny_volume] * 3)[:40]] * 3)
    raw = tmp_path / "movie.tif"
    tifffile.imwrite(raw, series, imagej=True, metadata={"axes": "TZYX"})
    out = str(tmp_path / "movie_resin.ome.zarr")
    with Enhancer(tile=(64, 92, 92)) as enh:  # 10 tiles per time point
        with pytest.raises(Stopped):
            enhance_series_to_file(enh, str(raw), out, _Recorder(stop_at=15), 3, 10)
        job = _Recorder()
        run = enhance_series_to_file(enh, str(raw), out, job, 3, 10, resume=True)
    assert run.parts == 2 and Path(out).is_dir()
    assert job.reports[-1] == (30, 30)
    assert job.reports[0][0] >= 10  # the first time point, kept, is counted done
    assert all(a[0] <= b[0] for a, b in zip(job.reports, job.reports[1:], strict=False))


@pytest.mark.parametrize("big", [False, True])
def test_a_series_layer_is_written_whole_for_training(tmp_path, monkeypatch, big):
    """"every time point" on a layer: the (T, Z, Y, X) array becomes MODEL.raw.tif, which
    resin reads back time point by time point; an ImageJ TIFF, or an OME-TIFF past what
    ImageJ holds; a dtype ImageJ cannot hold as float32."""
    import resin.io._tiff as tiff
    from resin.io import open_volume
    from resin.napari._train import raw_input_for

    if big:
        monkeypatch.setattr(tiff, "IMAGEJ_MAX_BYTES", 0)
    series = np.random.default_rng(3).random((3, 6, 8, 10)) * 100  # float64
    path = raw_input_for(series, None, tmp_path / "m.pt")
    assert path == str(tmp_path / "m.raw.tif") and not list(tmp_path.glob("*.partial"))
    for t in range(3):
        with open_volume(path, None, t) as reader:
            assert reader.time_points == 3 and reader.dtype == np.float32
            np.testing.assert_array_equal(reader.read(), series[t].astype(np.float32))


def test_a_lazy_series_layer_is_written_through_readers_of_its_own(tmp_path):
    """A series read from a file (a channel of a TCZYX file, say) is written one time point
    at a time through readers the job opens and closes, never through the viewer's (which
    its slider closes as it moves)."""
    from resin.io import open_volume
    from resin.napari._train import raw_input_for

    data = np.random.default_rng(4).integers(0, 999, size=(3, 4, 5, 6)).astype(np.uint16)
    opened, closed = [], []

    class Reader:
        def __init__(self, t):
            self.t = t

        def __getitem__(self, key):
            return data[self.t][key]

        def close(self):
            closed.append(self.t)

    class LazySeries:
        shape, dtype = data.shape, data.dtype

        def __getitem__(self, key):
            raise AssertionError("read through the viewer's own readers")

        def open_time_point(self, t):
            opened.append(t)
            return Reader(t)

    path = raw_input_for(LazySeries(), None, tmp_path / "m.pt")
    assert opened == closed == [0, 1, 2]
    for t in range(3):
        with open_volume(path, None, t) as reader:
            np.testing.assert_array_equal(reader.read(), data[t])


def test_report_warnings_are_the_notes_of_the_finished_runs_report(tmp_path):
    from resin.napari._train import report_warnings

    model = tmp_path / "m.pt"
    assert report_warnings(model) == []
    (tmp_path / "m.report.json").write_text('{"notes": ["the output lost structure"]}')
    assert report_warnings(model) == ["the output lost structure"]
    (tmp_path / "m.report.json").write_text("not json")
    assert report_warnings(model) == []
