"""The Enhance and Train widgets in a real (offscreen) viewer."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari", reason="the napari plugin needs pip install 'resin[napari]'")
pytest.importorskip("pytestqt", reason="the napari tests need pytest-qt (the dev extra)")

from resin.runtime import Enhancer  # noqa: E402

from resin.napari._enhance_widget import EnhanceWidget  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from _tiny import tiny_config  # noqa: E402

#: a tile that splits a 40-plane volume into ten rows of the bundled model's tiles
SMALL_TILE = "64 92 92"


def _widget(viewer, qtbot, cls=EnhanceWidget):
    widget = cls(viewer)
    viewer.window.add_dock_widget(widget)
    qtbot.waitUntil(lambda: not widget.plan_label.text().startswith("loading"), timeout=30000) \
        if cls is EnhanceWidget else None
    return widget


def _wait(qtbot, widget, timeout=120000):
    qtbot.waitUntil(lambda: not widget.panel.busy, timeout=timeout)


def test_enhance_widget_gives_enhancers_result(viewer, qtbot, tiny_volume):
    layer = viewer.add_image(tiny_volume, name="tiny", scale=(2.0, 0.5, 0.5))
    widget = _widget(viewer, qtbot)
    assert widget.layer_box.currentText() == "tiny"
    from resin.runtime.runner import make_plan

    with Enhancer() as enh:  # the tile the runtime's planner picks for this layer
        tile = make_plan(enh.engine, tiny_volume.shape, enh.settings).tile
    assert f"tile {'x'.join(map(str, tile))}" in widget.plan_label.text()
    assert "plus the network" in widget.plan_label.text()
    widget.run_button.click()
    _wait(qtbot, widget)
    assert "enhanced" in widget.panel.status.text()
    result = viewer.layers["tiny (resin)"]
    with Enhancer() as enh:
        expected = enh.enhance(tiny_volume)
    np.testing.assert_array_equal(result.data, expected)
    np.testing.assert_allclose(result.scale, layer.scale)
    record = result.metadata["resin"]
    assert record["model"].endswith("default.onnx")
    assert record["normalization"]["low_percentile"] == 0.5
    assert record["input"] == "tiny" and record["faces"] == "repeat"
    # zero-padded faces: the plan says so and the result is Enhancer's in that mode
    widget.faces_box.setCurrentText("zeros")  # another Enhancer: loaded in the background
    qtbot.waitUntil(lambda: "faces zero-padded" in widget.plan_label.text(), timeout=60_000)
    widget.run_button.click()
    _wait(qtbot, widget)
    with Enhancer(faces="zeros") as enh:
        np.testing.assert_array_equal(viewer.layers[-1].data, enh.enhance(tiny_volume))
    assert viewer.layers[-1].metadata["resin"]["faces"] == "zeros"
    widget.shutdown()


def test_stop_mid_run_leaves_the_viewer_usable(viewer, qtbot, tiny_volume):
    volume = np.concatenate([tiny_volume] * 3)[:40]
    viewer.add_image(volume, name="deep")
    widget = _widget(viewer, qtbot)
    widget.tile_edit.setText(SMALL_TILE)
    widget.refresh()
    qtbot.waitUntil(lambda: "10 tiles in 10 rows" in widget.plan_label.text(), timeout=30000)
    widget.run_button.click()
    assert widget.stop_button.isEnabled() and not widget.run_button.isEnabled()
    qtbot.waitUntil(lambda: (widget.panel.job is None or (
        widget.panel.job.snapshot is not None and widget.panel.job.snapshot.done > 0)),
        timeout=60000)
    widget.stop_button.click()
    _wait(qtbot, widget)
    assert widget.panel.status.text().startswith("stopped")
    assert [x.name for x in viewer.layers] == ["deep"]
    assert widget.run_button.isEnabled() and not widget.stop_button.isEnabled()
    # the viewer and the widget still work: a new layer, a full run
    viewer.add_image(tiny_volume, name="after")
    widget.layer_box.setCurrentText("after")
    widget.tile_edit.setText("auto")
    widget.refresh()
    widget.run_button.click()
    _wait(qtbot, widget)
    assert "after (resin)" in viewer.layers
    widget.shutdown()


def test_stop_leaves_a_resumable_file(viewer, qtbot, tiny_volume, tmp_path):
    from resin.io import read_volume, write_volume

    volume = np.concatenate([tiny_volume] * 3)[:40]
    raw = tmp_path / "deep.tif"
    write_volume(raw, volume)
    viewer.open(str(raw), plugin="resin")
    widget = _widget(viewer, qtbot)
    out = tmp_path / "deep_out.ome.zarr"
    widget.to_file.setChecked(True)
    widget.output_edit.setText(str(out))
    widget.tile_edit.setText(SMALL_TILE)
    widget.refresh()
    assert shlex.split(widget.command_edit.text())[:4] == ["resin-run", str(raw), "-o", str(out)]
    widget.run_button.click()
    qtbot.waitUntil(lambda: (widget.panel.job is None or (
        widget.panel.job.snapshot is not None and widget.panel.job.snapshot.done > 0)),
        timeout=60000)
    widget.stop_button.click()
    _wait(qtbot, widget)
    assert "--resume" in widget.panel.status.text(), widget.panel.status.text()
    assert not out.exists() and list(tmp_path.glob("deep_out.ome.zarr.*"))  # kept, unfinished
    widget.resume_box.setChecked(True)
    assert widget.command_edit.text().endswith("--resume")
    widget.run_button.click()
    _wait(qtbot, widget)
    assert "wrote" in widget.panel.status.text(), widget.panel.status.text()
    with Enhancer(tile=(64, 92, 92)) as enh:
        expected = enh.enhance(volume)
    np.testing.assert_array_equal(read_volume(out), expected)
    np.testing.assert_array_equal(np.asarray(viewer.layers["deep (resin)"].data), expected)
    assert viewer.layers["deep (resin)"].metadata["resin"]["input"] == "deep"
    widget.shutdown()


@pytest.mark.parametrize("kind, words", [
    ("2d", "is 2-D"),
    ("rgb", "RGB"),
    ("nan", "NaN or infinite"),
    ("5d", "pick one channel"),
])
def test_a_bad_layer_gets_a_message_not_a_traceback(viewer, qtbot, kind, words):
    from napari.utils.notifications import notification_manager

    data = {
        "2d": np.ones((32, 32), np.uint16),
        "rgb": np.ones((8, 32, 32, 3), np.uint8),
        "nan": np.full((8, 32, 32), np.nan, np.float32),
        "5d": np.ones((2, 2, 8, 32, 32), np.uint16),
    }[kind]
    viewer.add_image(data, name="bad", rgb=kind == "rgb")
    before = len(notification_manager.records)
    widget = _widget(viewer, qtbot)
    widget.run_button.click()
    assert not widget.panel.busy
    assert words in widget.panel.status.text()
    assert "'bad'" in widget.panel.status.text()
    widget.preview_button.click()
    assert words in widget.panel.status.text()
    assert [x.name for x in viewer.layers] == ["bad"]
    assert len(notification_manager.records) == before
    widget.shutdown()


def _series(tiny_volume):
    """Two time points whose intensities differ (each gets its own normalization)."""
    return np.stack([tiny_volume, (tiny_volume // 2 + 50).astype(np.uint16)])


def test_a_time_series_layer_is_enhanced_time_point_by_time_point(viewer, qtbot,
                                                                   tiny_volume):
    series = _series(tiny_volume)
    layer = viewer.add_image(series, name="movie", scale=(3.0, 2.0, 0.5, 0.5))
    widget = _widget(viewer, qtbot)
    assert "per time point, 2 time points" in widget.plan_label.text()
    assert "--time all" in widget.command_edit.text()
    widget.run_button.click()
    _wait(qtbot, widget)
    assert "enhanced" in widget.panel.status.text(), widget.panel.status.text()
    result = viewer.layers["movie (resin)"]
    with Enhancer() as enh:
        expected = np.stack([enh.enhance(v) for v in series])
    np.testing.assert_array_equal(result.data, expected)
    np.testing.assert_allclose(result.scale, layer.scale)
    record = result.metadata["resin"]
    assert [p["time"] for p in record["parts"]] == [0, 1]
    lows = [p["normalization"]["low"] for p in record["parts"]]
    assert lows[0] != lows[1] and "normalization" not in record
    widget.shutdown()


def test_a_time_series_file_runs_into_one_store(viewer, qtbot, tiny_volume, tmp_path):
    import tifffile

    from resin.io import read_volume

    series = _series(tiny_volume)
    raw = tmp_path / "movie.tif"
    tifffile.imwrite(raw, series, imagej=True, metadata={"axes": "TZYX"})
    viewer.open(str(raw), plugin="resin")
    widget = _widget(viewer, qtbot)
    widget.to_file.setChecked(True)
    widget.refresh()
    out = tmp_path / "movie_resin.ome.zarr"
    assert shlex.split(widget.command_edit.text()) == [
        "resin-run", str(raw), "--time", "all", "-o", str(out)]
    widget.run_button.click()
    _wait(qtbot, widget)
    assert "2 time points" in widget.panel.status.text(), widget.panel.status.text()
    with Enhancer() as enh:
        expected = np.stack([enh.enhance(v) for v in series])
    np.testing.assert_array_equal(np.asarray(viewer.layers["movie (resin)"].data), expected)
    for t in range(2):
        np.testing.assert_array_equal(read_volume(out, time=t), expected[t])
    widget.shutdown()


def test_a_time_series_preview_is_the_time_point_on_the_slider(viewer, qtbot, tiny_volume):
    series = _series(tiny_volume)
    layer = viewer.add_image(series, name="movie", scale=(3.0, 1.0, 1.0, 1.0))
    viewer.dims.set_point(0, 3.0)  # time point 1 (world units of 3)
    viewer.dims.set_point(1, 8)
    widget = _widget(viewer, qtbot)
    widget.preview_button.click()
    _wait(qtbot, widget)
    assert "time point 1" in widget.panel.status.text(), widget.panel.status.text()
    preview = viewer.layers["movie preview"]
    assert preview.data.shape[0] == 1 and preview.translate[0] == 3.0
    region = [tuple(r) for r in preview.metadata["resin"]["region"]]
    assert region[0] == (4, 13) and preview.metadata["resin"]["input_time"] == 1
    with Enhancer() as enh:
        full = enh.enhance(series[1])
    window = full[4:13, region[1][0]:region[1][1], region[2][0]:region[2][1]].astype(float)
    span = float(full.max()) - float(full.min())
    assert np.abs(preview.data[0].astype(float) - window).max() <= 0.01 * span
    assert np.allclose(preview.translate[1:], [4.0, region[1][0], region[2][0]])
    del layer
    widget.shutdown()


def test_preview_enhances_the_region_in_view(viewer, qtbot, demo_volume):
    layer = viewer.add_image(demo_volume, name="demo")
    viewer.dims.set_point(0, 20)
    widget = _widget(viewer, qtbot)
    widget.preview_button.click()
    _wait(qtbot, widget)
    preview = viewer.layers["demo preview"]
    assert preview.data.shape[0] == 9
    assert preview.translate[0] == 16 * layer.scale[0]
    region = [tuple(r) for r in preview.metadata["resin"]["region"]]
    assert region[0] == (16, 25)
    with Enhancer() as enh:
        full = enh.enhance(demo_volume)
    window = full[16:25, region[1][0]:region[1][1], region[2][0]:region[2][1]].astype(float)
    span = float(full.max()) - float(full.min())
    assert np.abs(preview.data.astype(float) - window).max() <= 0.01 * span
    widget.shutdown()


def test_train_widget_runs_a_few_steps_and_offers_the_model(viewer, qtbot, tiny_volume,
                                                            tmp_path):
    pytest.importorskip("torch")
    from resin.napari._train import trained
    from resin.napari._train_widget import TrainWidget

    viewer.add_image(tiny_volume, name="tiny")
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(tiny_config().model_dump(mode="json")))
    enhance = _widget(viewer, qtbot)
    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget)
    model = tmp_path / "tiny_model.pt"
    widget.model_edit.setText(str(model))
    widget.config_edit.setText(str(config))
    widget.refresh()
    assert "--config" in widget.command_edit.text()
    widget.retries_box.setValue(2)  # resin train --retries, passed to the run
    assert widget.command_edit.text().endswith("--retries 2")
    assert widget.settings().retries == 2
    widget.retries_box.setValue(0)
    assert "--retries" not in widget.command_edit.text()
    widget.start_button.click()
    _wait(qtbot, widget, timeout=240000)
    assert widget.panel.status.text().startswith("trained"), widget.panel.status.text()
    assert model.exists()
    notes = json.loads(model.with_suffix(".report.json").read_text())["notes"]
    assert notes  # four steps: close to the identity, which the status line says too
    for note in notes:
        assert f"warning: {note}" in widget.panel.status.text()
    assert widget.plot.columns["step"][-1] == 4
    assert widget.preview.pixmap() is not None and not widget.preview.pixmap().isNull()
    assert trained.last == model
    assert enhance.model_box.currentData() == str(model)
    widget.shutdown()
    enhance.shutdown()


def _train_into(qtbot, widget, model: Path, config: Path, says: str,
                during=lambda: True) -> Path:
    """Train ``widget``'s layer into ``model`` with ``config``; the start message says
    ``says`` and ``during()`` holds while it runs; the run ends trained."""
    widget.model_edit.setText(str(model))
    widget.config_edit.setText(str(config))
    widget.start_button.click()
    assert says in widget.panel.status.text(), widget.panel.status.text()
    assert during()
    _wait(qtbot, widget, timeout=240000)
    assert widget.panel.status.text().startswith("trained"), widget.panel.status.text()
    return model


def test_train_widget_trains_on_the_time_point_on_the_slider(viewer, qtbot, tiny_volume,
                                                             tmp_path):
    """A time-series layer trains on the time point shown: a layer's is written beside the
    model; a series file's is read from the file (``resin train --time T``)."""
    pytest.importorskip("torch")
    import tifffile

    from resin.io import read_volume
    from resin.napari._train_widget import TrainWidget

    series = _series(tiny_volume)
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(tiny_config().model_dump(mode="json")))
    viewer.add_image(series, name="movie")
    viewer.dims.set_point(0, 1)
    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget)
    _train_into(qtbot, widget, tmp_path / "from_layer.pt", config, "(time point 1)")
    np.testing.assert_array_equal(read_volume(tmp_path / "from_layer.raw.tif"), series[1])
    assert "--time" not in widget.command_edit.text()

    raw = tmp_path / "movie.tif"
    tifffile.imwrite(raw, series, imagej=True, metadata={"axes": "TZYX"})
    viewer.layers.clear()
    viewer.open(str(raw), plugin="resin")
    viewer.dims.set_point(0, 1)
    model = tmp_path / "from_file.pt"
    widget.model_edit.setText(str(model))
    widget.refresh()
    assert shlex.split(widget.command_edit.text())[-2:] == ["--time", "1"]
    widget.start_button.click()
    _wait(qtbot, widget, timeout=240000)
    assert widget.panel.status.text().startswith("trained"), widget.panel.status.text()
    assert json.loads(model.with_suffix(".json").read_text())["data"]["time"] == 1
    assert not (tmp_path / "from_file.raw.tif").exists()
    widget.shutdown()


def test_the_plan_of_a_thin_stack_names_fewer_face_voxels(viewer, qtbot, tiny_volume):
    """A 16-plane layer padded by the bundled model's halo is mostly padding: the plan
    says what --faces 8 saves, and the faces box offers 8, which the command line takes."""
    viewer.add_image(tiny_volume, name="thin")
    widget = _widget(viewer, qtbot)
    assert "--faces 8" in widget.plan_label.text()
    widget.faces_box.setCurrentText("8")
    qtbot.waitUntil(lambda: "--faces 8" not in widget.plan_label.text(), timeout=60_000)
    assert shlex.split(widget.command_edit.text())[-2:] == ["--faces", "8"]
    widget.shutdown()


def test_series_widget_requests_that_cannot_work_get_one_line(viewer, qtbot, tiny_volume,
                                                              tmp_path):
    """An output with {t} (one store per time point, which the widget cannot show) and a
    slider past a shorter layer's time points are refused in the status line."""
    import tifffile

    series = _series(tiny_volume)
    raw = tmp_path / "movie.tif"
    tifffile.imwrite(raw, series, imagej=True, metadata={"axes": "TZYX"})
    viewer.open(str(raw), plugin="resin")
    viewer.add_image(np.stack([tiny_volume] * 5), name="longer")
    widget = _widget(viewer, qtbot)
    widget.layer_box.setCurrentText("movie")
    widget.to_file.setChecked(True)
    widget.output_edit.setText(str(tmp_path / "out_{t}.ome.zarr"))
    widget.run_button.click()
    assert not widget.panel.busy and "put no {t}" in widget.panel.status.text()
    viewer.dims.set_point(0, 4)  # time point 4: 'movie' has 2
    widget.preview_button.click()
    assert not widget.panel.busy
    assert "outside 'movie''s 2 time points" in widget.panel.status.text()
    assert not list(tmp_path.glob("out_*"))
    widget.shutdown()


def test_train_widget_trains_on_every_time_point(viewer, qtbot, tiny_volume, tmp_path):
    """"every time point": a series layer is written whole beside the model (TZYX) and a
    series file is read in place (``resin train --time all``); a single volume leaves the
    box disabled."""
    pytest.importorskip("torch")
    import tifffile

    from resin.napari._train_widget import TrainWidget

    series = _series(tiny_volume)
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(tiny_config().model_dump(mode="json")))
    viewer.add_image(tiny_volume, name="single")
    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert not widget.every_time.isEnabled()
    viewer.layers.clear()
    viewer.add_image(series, name="movie")
    widget.refresh()
    assert widget.every_time.isEnabled()
    widget.every_time.setChecked(True)
    viewer.dims.set_point(0, 7)  # past the series' time points: no matter for all of them
    model = _train_into(qtbot, widget, tmp_path / "from_layer.pt", config, "(every time point)",
                        during=lambda: not widget.every_time.isEnabled())
    assert widget.every_time.isEnabled()
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "from_layer.raw.tif"), series)
    assert json.loads(model.with_suffix(".json").read_text())["data"]["time"] == "all"

    raw = tmp_path / "movie.tif"
    tifffile.imwrite(raw, series, imagej=True, metadata={"axes": "TZYX"})
    viewer.layers.clear()
    viewer.open(str(raw), plugin="resin")
    widget.refresh()
    assert shlex.split(widget.command_edit.text())[-2:] == ["--time", "all"]
    widget.shutdown()


def test_train_command_follows_the_slider(viewer, qtbot, tiny_volume, tmp_path):
    import tifffile

    from resin.napari._train_widget import TrainWidget

    raw = tmp_path / "movie.tif"
    tifffile.imwrite(raw, _series(tiny_volume), imagej=True, metadata={"axes": "TZYX"})
    viewer.open(str(raw), plugin="resin")
    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert shlex.split(widget.command_edit.text())[-2:] == ["--time", "0"]
    viewer.dims.set_point(0, 1)
    assert shlex.split(widget.command_edit.text())[-2:] == ["--time", "1"]
    widget.shutdown()


def test_preview_region_of_a_multiscale_layer_is_in_full_resolution_voxels(viewer, qtbot,
                                                                            demo_volume):
    """napari gives a multiscale layer's corner pixels in the level it draws; the preview
    took them as full-resolution voxels (a zoomed-out view previewed a quarter of it)."""
    half = demo_volume[::2, ::2, ::2]
    layer = viewer.add_image([demo_volume, half], name="pyramid", multiscale=True)
    viewer.dims.set_point(0, 20)
    widget = _widget(viewer, qtbot)
    layer._data_level = 1  # drawn at the half-resolution level
    layer.corner_pixels = np.array([[0, 4, 8], [0, 19, 29]])
    point = np.asarray(layer.world_to_data(viewer.dims.point), dtype=float)
    region = widget._region_in_view(layer, demo_volume.shape, point)
    assert region[1:] == (slice(8, 40), slice(16, 60))
    assert region[0] == slice(16, 25)
    widget.shutdown()
