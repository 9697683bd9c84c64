"""The reader (TIFF, OME-Zarr with every level), the demo sample and the Compare widget."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari", reason="the napari plugin needs pip install 'resin[napari]'")

from resin.io import write_volume  # noqa: E402
from resin.napari import _reader  # noqa: E402
from resin.napari._reader import (  # noqa: E402
    LazyVolume,
    SeriesVolume,
    get_reader,
    volume_layers,
)


def test_reader_opens_tiff_with_voxel_size_and_record(tmp_path, tiny_volume):
    path = tmp_path / "out.tif"
    write_volume(path, tiny_volume, voxel_size=(2.0, 0.5, 0.5),
                 attrs={"model_sha256": "abc", "normalization": {"low": 1.0, "high": 2.0}})
    assert get_reader(str(path)) is not None
    data, kwargs, kind = volume_layers(path)[0]
    assert kind == "image"
    np.testing.assert_array_equal(data, tiny_volume)
    assert kwargs["scale"] == (2.0, 0.5, 0.5)
    assert kwargs["name"] == "out"


def test_reader_opens_each_channel_as_a_layer_used_as_data(tmp_path, tiny_volume):
    import tifffile

    from resin.napari._layers import source_file

    path = tmp_path / "two.tif"
    data = np.stack([tiny_volume, tiny_volume // 2], axis=1)  # (Z, C, Y, X)
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "ZCYX", "spacing": 2.0,
                                                        "unit": "um"}, resolution=(2.0, 2.0))
    assert get_reader(str(path)) is not None
    layers = volume_layers(path)
    assert [kw["name"] for _, kw, _ in layers] == ["two_c0", "two_c1"]
    for c, (layer, kwargs, kind) in enumerate(layers):
        assert kind == "image" and kwargs["metadata"]["channel"] == c
        assert kwargs["scale"] == pytest.approx((2.0, 0.5, 0.5))
        np.testing.assert_array_equal(layer, data[:, c])

    class Layer:  # a channel layer is data: the widgets must not run the whole file
        metadata = layers[1][1]["metadata"]
        source = type("Source", (), {"path": str(path)})()

    assert source_file(Layer()) is None
    Layer.metadata = {}
    assert source_file(Layer()) == str(path)


def test_reader_opens_an_imaris_file_channel_by_channel(tmp_path, tiny_volume):
    pytest.importorskip("h5py")
    from _hdf5 import write_imaris

    data = np.stack([tiny_volume, tiny_volume // 2])[None]  # (T, C, Z, Y, X)
    write_imaris(tmp_path / "scan.ims", data, voxel=(2.0, 0.5, 0.5))
    assert get_reader(str(tmp_path / "scan.ims")) is not None
    layers = volume_layers(tmp_path / "scan.ims")
    assert [kw["name"] for _, kw, _ in layers] == ["scan_c0", "scan_c1"]
    for c, (layer, kwargs, _) in enumerate(layers):
        assert kwargs["scale"] == pytest.approx((2.0, 0.5, 0.5))
        np.testing.assert_array_equal(layer, data[0, c])


def test_reader_declines_what_resin_cannot_read(tmp_path):
    flat = tmp_path / "flat.tif"
    import tifffile

    tifffile.imwrite(flat, np.zeros((16, 16), np.uint16))
    assert get_reader(str(flat)) is None
    assert get_reader(str(tmp_path / "notes.txt")) is None
    assert get_reader([str(flat), str(flat)]) is None


def test_reader_opens_every_level_of_an_ome_zarr(tmp_path, rng):
    zarr = pytest.importorskip("zarr")
    full = rng.integers(0, 1000, size=(8, 32, 32), dtype=np.uint16)
    path = tmp_path / "pyramid.ome.zarr"
    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    datasets = []
    for level, factor in enumerate((1, 2, 4)):
        data = full[:, ::factor, ::factor]
        group.create_array(str(level), data=data, dimension_names=["z", "y", "x"])
        datasets.append({"path": str(level), "coordinateTransformations": [
            {"type": "scale", "scale": [2.0, 0.5 * factor, 0.5 * factor]}]})
    axes = [{"name": n, "type": "space", "unit": "micrometer"} for n in "zyx"]
    group.attrs["ome"] = {"version": "0.5", "multiscales": [{"axes": axes,
                                                             "datasets": datasets}]}
    data, kwargs, _ = volume_layers(path)[0]
    assert kwargs["multiscale"] is True
    assert [d.shape for d in data] == [(8, 32, 32), (8, 16, 16), (8, 8, 8)]
    assert kwargs["scale"] == (2.0, 0.5, 0.5)
    np.testing.assert_array_equal(data[2], full[:, ::4, ::4])


def test_large_volumes_stay_on_disk_and_slice_like_arrays(tmp_path, tiny_volume, monkeypatch):
    path = tmp_path / "big.ome.zarr"
    write_volume(path, tiny_volume)
    monkeypatch.setattr(_reader, "IN_MEMORY_BYTES", 1024)
    data, _, _ = volume_layers(path)[0]
    assert isinstance(data, LazyVolume)
    assert data.shape == tiny_volume.shape and data.dtype == tiny_volume.dtype
    for key in (3, (3,), (slice(2, 9, 3), 4), (Ellipsis, 5), (-1, slice(None), slice(1, 30, 7)),
                (slice(4, 4),), np.int64(2)):
        np.testing.assert_array_equal(data[key], tiny_volume[key])
    np.testing.assert_array_equal(np.asarray(data), tiny_volume)
    with pytest.raises(IndexError):
        data[16]


def test_demo_sample_is_the_demo_volume():
    from resin.runtime.demo import DEMO_SHAPE

    from resin.napari._sample import demo_raw, demo_truth

    (raw, kwargs, kind), = demo_raw()
    (truth, _, _), = demo_truth()
    assert raw.shape == truth.shape == DEMO_SHAPE and kind == "image"
    assert kwargs["scale"] == (1.0, 1.0, 1.0)
    assert raw.std() > 0 and not np.array_equal(raw, truth)


def test_open_sample_and_plugin_widgets_through_napari(viewer):
    viewer.open_sample("resin", "demo")
    assert viewer.layers[-1].name == "demo raw"
    for name in ("Enhance", "Compare", "Train"):
        _, widget = viewer.window.add_plugin_dock_widget("resin", name)
        assert widget is not None
        assert type(widget).__name__ == f"{name}Widget"
        getattr(widget, "shutdown", lambda: None)()


def test_compare_side_by_side_and_axial(viewer, tiny_volume):
    from resin.napari._compare_widget import CompareWidget

    viewer.add_image(tiny_volume, name="raw")
    viewer.add_image(tiny_volume * 2, name="other")
    viewer.add_image(tiny_volume + 1, name="raw (resin)", metadata={"resin": {"input": "raw"}})
    widget = CompareWidget(viewer)
    assert widget.enhanced_box.currentText() == "raw (resin)"
    assert widget.raw_box.currentText() == "raw"
    widget.side_button.setChecked(True)
    assert viewer.canvas.grid.enabled
    assert [x.visible for x in viewer.layers] == [True, False, True]
    assert tuple(viewer.canvas.grid.shape) == (1, 2)
    widget.axial_button.click()
    assert tuple(viewer.dims.order) == (1, 0, 2) and viewer.dims.displayed == (0, 2)
    assert tuple(viewer.canvas.grid.shape) == (2, 1)
    # raw (added first) on top, the enhanced layer below it
    assert viewer.canvas.grid.position(0, viewer.layers) == (0, 0)
    assert viewer.canvas.grid.position(2, viewer.layers) == (1, 0)
    widget.lateral_button.click()
    assert tuple(viewer.dims.order) == (0, 1, 2)
    widget.side_button.setChecked(False)
    assert not viewer.canvas.grid.enabled and all(x.visible for x in viewer.layers)


def test_an_upsampling_model_gives_finer_voxels_over_the_same_extent():
    from napari.layers import Image
    from resin.runtime.planner import plan_tiles

    from resin.napari._layers import result_layer_kwargs

    source = Image(np.zeros((8, 16, 16), np.uint16), scale=(4.0, 0.5, 0.5),
                   translate=(10.0, 0.0, 0.0))
    plan = plan_tiles((8, 16, 16), None, (2, 2, 2), 4, scale=(2, 1, 1))
    kwargs = result_layer_kwargs(source, plan, {"model": "m.onnx"}, "up")
    assert kwargs["scale"] == (2.0, 0.5, 0.5)
    assert kwargs["translate"] == (10.0, 0.0, 0.0)
    assert kwargs["metadata"] == {"resin": {"model": "m.onnx"}}


def test_a_time_series_tiff_opens_channel_by_channel_with_a_time_slider(tmp_path):
    import tifffile

    series = tmp_path / "series.tif"
    data = np.arange(2 * 4 * 2 * 8 * 8, dtype=np.uint16).reshape(2, 4, 2, 8, 8)  # TZCYX
    tifffile.imwrite(series, data, imagej=True, metadata={"axes": "TZCYX"})
    assert get_reader(str(series)) is not None
    layers = volume_layers(series)
    assert [kw["name"] for _, kw, _ in layers] == ["series_c0", "series_c1"]
    for c, (layer, _, _) in enumerate(layers):
        np.testing.assert_array_equal(layer, data[:, :, c])


def test_a_series_store_opens_with_a_time_slider(tmp_path, tiny_volume, monkeypatch):
    """resin-run --time all (--channel all) writes TZYX / TCZYX stores; napari shows the
    time points along a slider, each channel as a layer, every level, on disk when large."""
    from resin.io._zarr import ZarrWriter, assemble_parts

    shape = tiny_volume.shape
    data = np.stack([np.stack([tiny_volume // (t + 1 + c) for c in range(2)]) for t in range(3)])
    parts = []
    for t in range(3):
        for c in range(2):
            part = str(tmp_path / "s.ome.zarr.partial" / "parts" / f"t{t}c{c}.ome.zarr")
            with ZarrWriter(part, shape, np.uint16, voxel_size=(2.0, 0.5, 0.5),
                            chunks=(8, 16, 16), levels=2) as w:
                w.write(tuple(slice(0, n) for n in shape), data[t, c])
            parts.append(((t, c), part))
    store = tmp_path / "s.ome.zarr.partial"
    assemble_parts(str(store), parts, [("t", "time", 3), ("c", "channel", 2)], {"x": 1})
    out = tmp_path / "s.ome.zarr"
    store.rename(out)
    assert get_reader(str(out)) is not None
    layers = volume_layers(out)
    assert [kw["name"] for _, kw, _ in layers] == ["s_c0", "s_c1"]
    for c, (layer, kwargs, _) in enumerate(layers):
        assert kwargs["scale"] == pytest.approx((1.0, 2.0, 0.5, 0.5))
        np.testing.assert_array_equal(layer, data[:, c])
    tzyx = tmp_path / "tzyx.ome.zarr"
    parts = [((t,), str(tmp_path / "p" / f"t{t}.ome.zarr")) for t in range(3)]
    for (t,), part in parts:
        with ZarrWriter(part, shape, np.uint16, chunks=(8, 16, 16), levels=2) as w:
            w.write(tuple(slice(0, n) for n in shape), data[t, 0])
    tzyx.mkdir()
    assemble_parts(str(tzyx), parts, [("t", "time", 3)], {})
    monkeypatch.setattr(_reader, "IN_MEMORY_BYTES", 1024)
    monkeypatch.setattr(_reader, "OPEN_TIME_POINTS", 2)  # a long series: few files open
    (levels, kwargs, _), = volume_layers(tzyx)
    assert kwargs["multiscale"] and "scale" not in kwargs
    full, half = levels
    assert isinstance(full, SeriesVolume) and full.shape == (3, *shape)
    assert half.shape == (3, *(-(-n // 2) for n in shape))
    want = data[:, 0]
    for key in (1, (2, 3), (slice(None), 4), (Ellipsis, 5), (-1, slice(2, 9, 3)),
                (slice(1, 1),), (slice(0, 3, 2), -1, slice(None), slice(1, 30, 7))):
        np.testing.assert_array_equal(full[key], want[key])
    np.testing.assert_array_equal(np.asarray(full), want)
    with pytest.raises(IndexError):
        full[3]
    for t in (0, 1, 2, 1):
        np.testing.assert_array_equal(full[t, 3], want[t, 3])
    assert full.open_time_points == [2, 1]


def test_a_job_reads_a_time_point_on_a_reader_the_slider_cannot_close(tmp_path, monkeypatch):
    """The widgets' jobs read a lazy series' time point in their own thread; through the
    series' own readers, the slider moving on to other time points closed the job's file
    mid-read ("the file may be truncated or corrupt")."""
    import tifffile

    from resin.napari._layers import close_volume, time_point

    data = np.arange(4 * 6 * 8 * 8, dtype=np.uint16).reshape(4, 6, 8, 8)
    path = tmp_path / "movie.tif"
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "TZYX"})
    monkeypatch.setattr(_reader, "IN_MEMORY_BYTES", 0)
    monkeypatch.setattr(_reader, "OPEN_TIME_POINTS", 1)
    (series, _, _), = volume_layers(path)
    assert isinstance(series, SeriesVolume)
    job = time_point(series, 2)
    assert job.shape == (6, 8, 8) and series.open_time_points == [0]  # nothing read yet
    np.testing.assert_array_equal(job[0:3], data[2, 0:3])
    assert series.open_time_points == [0]  # the job's file is not among the slider's
    for t in (1, 3, 0):  # the slider moves on: the series keeps one time point open
        np.testing.assert_array_equal(series[t, 1], data[t, 1])
    assert series.open_time_points == [0]
    np.testing.assert_array_equal(job[3:6], data[2, 3:6])  # the job's reader still reads
    np.testing.assert_array_equal(np.asarray(job), data[2])
    close_volume(job)
    np.testing.assert_array_equal(job[5], data[2, 5])  # reopened if read again
    close_volume(job)
