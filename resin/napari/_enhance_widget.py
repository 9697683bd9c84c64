"""The Enhance widget: pick a layer and a model, see the planner's tiles, preview, run, stop."""

from __future__ import annotations

import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QLabel,
    QLineEdit,
    QPushButton,
    QWidget,
)

from resin import _log
from resin.errors import ResinError, UsageError
from resin.napari._enhance import (
    BACKENDS,
    DEVICES,
    ModelSettings,
    command_line,
    enhance_in_memory,
    enhance_region,
    enhance_series_in_memory,
    enhance_series_to_file,
    enhance_to_file,
    parse_tile,
    plan_for,
    plan_text,
    preview_region,
    run_record,
    series_record,
    volume_levels,
)
from resin.napari._jobs import Job, Snapshot
from resin.napari._layers import (
    close_volume,
    layer_series,
    result_layer_kwargs,
    source_file,
    time_point,
    volume_at_slider,
)
from resin.napari._qt import CommandRow, JobPanel, LayerPicker, column, form, row
from resin.napari._train import trained
from resin.runtime import Enhancer, default_output
from resin.runtime.planner import FACES

_BUNDLED = "bundled model"
_CHOOSE = "model file ..."


class EnhanceWidget(QWidget):
    """Enhance an image layer with a RESIN model (see docs/napari.md)."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self._enhancers: dict[ModelSettings, Enhancer] = {}
        self._cache_lock = threading.Lock()
        self._loader: Job | None = None
        self._out_voxels = 0

        self.layer_box = LayerPicker(napari_viewer)
        self.model_box = QComboBox()
        self.model_box.addItem(_BUNDLED, "")
        self.model_box.addItem(_CHOOSE, None)
        self.backend_box = QComboBox()
        self.backend_box.addItems(BACKENDS)
        self.device_box = QComboBox()
        self.device_box.addItems(DEVICES)
        self.tile_edit = QLineEdit("auto")
        self.tile_edit.setToolTip("tile in input voxels, halo included: Z Y X, or auto")
        self.faces_box = QComboBox()
        self.faces_box.addItems([*FACES, "8"])
        self.faces_box.setToolTip("repeat: pad each face by the halo, repeating it; zeros: the "
                                  "faces meet the network's zero padding and nothing outside "
                                  "the volume is computed (faster on small volumes); 8: repeat "
                                  "each face 8 voxels, zero padding beyond (resin-run --faces)")
        self.plan_label = QLabel("")
        self.plan_label.setWordWrap(True)
        self.to_file = QCheckBox("write to a file (streams from the layer's file)")
        self.output_edit = QLineEdit()
        self.output_edit.setPlaceholderText("<layer file>_resin.ome.zarr")
        self.resume_box = QCheckBox("--resume")
        self.resume_box.setToolTip("continue a stopped or interrupted run into the same file")
        self.overwrite_box = QCheckBox("--overwrite")
        self.preview_button = QPushButton("Preview")
        self.preview_button.setToolTip("enhance the region in view and a few planes around "
                                       "the slider")
        self.run_button = QPushButton("Run")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.panel = JobPanel()
        self.command_edit = CommandRow()

        column(self,
               form(("image layer", self.layer_box), ("model", self.model_box),
                    ("backend", self.backend_box), ("device", self.device_box),
                    ("tile", self.tile_edit), ("faces", self.faces_box),
                    ("plan", self.plan_label)),
               self.to_file, self.output_edit, row(self.resume_box, self.overwrite_box),
               row(self.preview_button, self.run_button, self.stop_button), self.panel,
               self.command_edit)

        self.layer_box.currentTextChanged.connect(self.refresh)
        self.model_box.activated.connect(self._model_chosen)
        for box in (self.backend_box, self.device_box, self.faces_box):
            box.currentTextChanged.connect(self.refresh)
        self.tile_edit.editingFinished.connect(self.refresh)
        self.output_edit.editingFinished.connect(self.refresh)
        for check in (self.to_file, self.resume_box):
            check.toggled.connect(self.refresh)
        self.preview_button.clicked.connect(self.preview)
        self.run_button.clicked.connect(self.run)
        self.stop_button.clicked.connect(self.panel.stop)
        trained.changed.connect(self.add_model)
        self.destroyed.connect(partial(_forget, self.layer_box, self.add_model))
        if trained.last is not None:
            self.add_model(trained.last, select=False)
        self.refresh()

    # -- settings ---------------------------------------------------------------------------
    def settings(self) -> ModelSettings:
        data = self.model_box.currentData()
        model = Path(data) if data else None
        return ModelSettings(model, self.backend_box.currentText(), self.device_box.currentText(),
                             parse_tile(self.tile_edit.text()), self.faces_box.currentText())

    def add_model(self, path: Path, select: bool = True) -> None:
        """Offer a model file (a trained one, or one picked by the user); select it."""
        path = Path(path)
        index = self.model_box.findData(str(path))
        if index < 0:
            label = f"trained: {path.name}" if path == trained.last else path.name
            index = self.model_box.count() - 1
            self.model_box.insertItem(index, label, str(path))
            self.model_box.setItemData(index, str(path), Qt.ItemDataRole.ToolTipRole)
        if select:
            self.model_box.setCurrentIndex(index)
            self.refresh()

    def _model_chosen(self, index: int) -> None:
        if self.model_box.itemData(index) is None:
            path, _ = QFileDialog.getOpenFileName(self, "RESIN model", "",
                                                  "RESIN models (*.onnx *.plan *.pt)")
            if path:
                self.add_model(Path(path))
            else:
                self.model_box.setCurrentIndex(0)
        self.refresh()

    def _output(self) -> str | None:
        if not self.to_file.isChecked():
            return None
        text = self.output_edit.text().strip()
        if text:
            return text
        source = source_file(self.layer_box.layer())
        return default_output(source) if source else None

    # -- the planner's choice and the command line -----------------------------------------
    def refresh(self, *_: Any) -> None:
        """Show the plan for the current layer and model, and the equivalent command."""
        if self.panel.busy:
            return
        layer = self.layer_box.layer()
        try:
            settings = self.settings()
            data = layer_series(layer, values=False)
        except ResinError as exc:
            self.plan_label.setText("")
            self.command_edit.setText("")
            self.panel.show_message(str(exc), error=True)
            return
        self.panel.show_message("")
        count = _time_points(data)
        volume = data if count is None else time_point(data, 0)
        source = source_file(layer)
        output = self._output()
        self.command_edit.setText(command_line(
            settings, source or f"{layer.name}.tif", output or (
                default_output(source) if source else f"{layer.name}_resin.ome.zarr"),
            resume=self.resume_box.isChecked(), series=count is not None))
        if source is None:
            self.command_edit.edit.setToolTip("save the layer as this file first (File > Save "
                                         "Selected Layers)")
        enh = self._enhancers.get(settings)
        if enh is None:
            self._load(settings)
            return
        try:
            plan = plan_for(enh, _zyx(volume), volume.dtype)
            self.plan_label.setText(plan_text(enh, plan, volume.dtype, output is not None,
                                              count))
            self._out_voxels = (count or 1) * int(np.prod(plan.out_shape))
        except ResinError as exc:
            self.plan_label.setText("")
            self.panel.show_message(str(exc), error=True)

    def _load(self, settings: ModelSettings) -> None:
        """Load the model in a job; the plan is shown when it is there."""
        if self._loader is not None and not self._loader.done:
            return
        self.plan_label.setText("loading the model ...")
        self._loader = Job(lambda job: self.enhancer(settings), "resin-load").start()
        _poll_until_done(self, self._loader, self._loaded)

    def _loaded(self, job: Job) -> None:
        if job.error is not None:
            self.plan_label.setText("")
            self.panel.show_message(job.error, error=True)
            return
        self.refresh()

    def enhancer(self, settings: ModelSettings) -> Enhancer:
        """The loaded model for these settings (any thread); the previous one is closed."""
        with self._cache_lock:
            enh = self._enhancers.get(settings)
            if enh is None:
                enh = settings.open()
                for old in self._enhancers.values():
                    old.close()
                self._enhancers = {settings: enh}
            return enh

    # -- running ------------------------------------------------------------------------------
    def _busy(self, busy: bool) -> None:
        for w in (self.layer_box, self.model_box, self.backend_box, self.device_box,
                  self.tile_edit, self.to_file, self.output_edit, self.resume_box,
                  self.overwrite_box, self.preview_button, self.run_button):
            w.setEnabled(not busy)
        self.stop_button.setEnabled(busy)

    def _tiles(self, snap: Snapshot) -> str:
        """``tile 3/8  37%  0.21 Mvoxel/s  ETA 12 s`` (voxels of output per second)."""
        text = f"tile {int(snap.done)}/{int(snap.total)}  {100 * snap.fraction:.0f}%"
        if snap.seconds > 0 and snap.done > 0 and self._out_voxels:
            text += f"  {snap.fraction * self._out_voxels / snap.seconds / 1e6:.2f} Mvoxel/s"
        if snap.eta is not None and snap.done < snap.total:
            text += f"  ETA {_log.duration(snap.eta)}"
        return text

    def run(self) -> None:
        """Enhance the layer (into a new layer, or into a file that then opens as a layer)."""
        layer = self.layer_box.layer()
        try:
            settings = self.settings()
            data = layer_series(layer)
            output = self._output()
            source = source_file(layer)
            if output is not None and ("{t}" in output or "{c}" in output):
                raise UsageError(f"{output}: the widget writes one output; put no {{t}} or "
                                 "{c} in it (resin-run -o with {t} writes one output per "
                                 "time point)")
            if self.to_file.isChecked() and source is None:
                raise UsageError(f"'{layer.name}' was not opened from a file, and a run to a "
                                 "file streams from one: save the layer first (File > Save "
                                 "Selected Layers) and open that file, or untick 'write to "
                                 "a file'")
        except ResinError as exc:
            self.panel.show_message(str(exc), error=True)
            return
        self.refresh()
        resume, overwrite = self.resume_box.isChecked(), self.overwrite_box.isChecked()

        count = _time_points(data)

        def work(job: Job) -> dict[str, Any]:
            enh = self.enhancer(settings)
            job.check()
            volume = data if count is None else time_point(data, 0)  # shape and dtype
            if output is not None and count is None:
                assert source is not None
                report = enhance_to_file(enh, source, output, job, resume=resume,
                                         overwrite=overwrite)
                return {"report": report}
            plan = plan_for(enh, _zyx(volume), volume.dtype)
            if output is not None:
                assert source is not None and count is not None
                return {"series": enhance_series_to_file(
                    enh, source, output, job, count, plan.n_tiles, resume=resume,
                    overwrite=overwrite)}
            t0 = time.perf_counter()
            if count is not None:
                result, used = enhance_series_in_memory(enh, data, job)
                record = series_record(enh, used, plan, layer.name)
            else:
                levels = volume_levels(enh, volume)
                result = enhance_in_memory(enh, volume, levels, job)
                record = run_record(enh, levels, plan, layer.name)
            return {"data": result, "record": record, "plan": plan,
                    "seconds": time.perf_counter() - t0, "lead": 0 if count is None else 1}

        self._busy(True)
        what = output if output is not None else "a new layer"
        self.panel.start(Job(work, "resin-enhance"), partial(self._finished, layer, output),
                         f"enhancing '{layer.name}' into {what} ...", self._tiles)

    def _finished(self, layer: Any, output: str | None, job: Job) -> None:
        self._busy(False)
        if job.stopped:
            kept = (f"; {output} keeps what was written: tick --resume and Run to continue"
                    if output is not None else "; nothing was added")
            self.panel.show_message(f"stopped{kept}")
            return
        if job.error is not None:
            self.panel.show_message(job.error, error=True)
            return
        result = job.result
        if output is not None:
            from resin.napari._reader import volume_layers

            series = result.get("series")
            written = series.output if series is not None else result["report"].output
            try:
                data, kwargs, _ = volume_layers(written)[0]
            except ResinError as exc:
                self.panel.show_message(f"wrote {written}, but cannot show it: {exc}",
                                        error=True)
                return
            kwargs["name"] = f"{layer.name} (resin)"
            new = self.viewer.add_image(data, **kwargs)
            if series is not None:
                ran = (f"{_log.count(series.parts, 'time point')} in "
                       f"{series.seconds:.1f} s "
                       f"({series.voxels / max(series.seconds, 1e-9) / 1e6:.2f} Mvoxel/s)")
                self.panel.show_message(f"wrote {series.output}: {ran}")
            else:
                report = result["report"]
                self.panel.show_message(
                    f"wrote {report.output} in {report.seconds:.1f} s "
                    f"({report.voxels_per_second / 1e6:.2f} Mvoxel/s)")
            new.metadata.setdefault("resin", {})["input"] = layer.name
            return
        kwargs = result_layer_kwargs(layer, result["plan"], result["record"],
                                     f"{layer.name} (resin)", lead=result["lead"])
        self.viewer.add_image(result["data"], **kwargs)
        n = int(np.prod(result["data"].shape))
        self.panel.show_message(f"enhanced {n} voxels in {result['seconds']:.1f} s "
                                f"({n / max(result['seconds'], 1e-9) / 1e6:.2f} Mvoxel/s)")

    def preview(self) -> None:
        """Enhance the region in view and a few planes around the slider, into a layer."""
        layer = self.layer_box.layer()
        try:
            settings = self.settings()
            volume, t = volume_at_slider(self.viewer, layer)
            point = np.asarray(layer.world_to_data(self.viewer.dims.point), dtype=float)
            region = self._region_in_view(layer, volume.shape, point)
        except ResinError as exc:
            self.panel.show_message(str(exc), error=True)
            return

        def work(job: Job) -> dict[str, Any]:
            enh = self.enhancer(settings)
            t0 = time.perf_counter()
            try:  # a series' time point is read on a reader of its own, closed here
                levels = volume_levels(enh, volume)
                job.check()
                plan = plan_for(enh, _zyx(volume), volume.dtype)
                out = enhance_region(enh, volume, region, levels)
            finally:
                close_volume(volume)
            record = {**run_record(enh, levels, plan, layer.name),
                      "region": [[r.start, r.stop] for r in region]}
            if t is not None:
                record["input_time"] = t
            return {"data": out, "record": record, "plan": plan,
                    "seconds": time.perf_counter() - t0}

        self._busy(True)
        size = "x".join(str(r.stop - r.start) for r in region)
        where = "" if t is None else f" at time point {t}"
        self.panel.start(Job(work, "resin-preview"),
                         partial(self._previewed, layer, region, t),
                         f"previewing {size} voxels of '{layer.name}'{where} ...")

    def _region_in_view(self, layer: Any, shape: tuple[int, ...], point: np.ndarray) -> Any:
        dims = self.viewer.dims
        if dims.ndisplay != 2:
            raise UsageError("Preview enhances what a 2-D view shows: switch the viewer to 2-D")
        lead = dims.ndim - 3
        displayed = tuple(a - lead for a in dims.displayed)
        if min(displayed) < 0:
            raise UsageError("Preview enhances a view of z, y and x: show two of them (the "
                             "time axis is on a slider)")
        corners = np.asarray(layer.corner_pixels, dtype=float)[:, -3:]
        if not np.any(corners[1] > corners[0]):  # not drawn yet: the whole plane
            corners = np.array([[0, 0, 0], [s - 1 for s in shape[-3:]]], dtype=float)
        elif layer.multiscale:  # napari gives them in the level drawn, not in level 0
            factor = np.asarray(layer.downsample_factors[layer.data_level], dtype=float)[-3:]
            corners = np.stack([corners[0] * factor, (corners[1] + 1) * factor - 1])
        return preview_region(tuple(shape[-3:]), displayed, corners, point[-3:])

    def _previewed(self, layer: Any, region: Any, t: int | None, job: Job) -> None:
        self._busy(False)
        if job.stopped or job.error is not None:
            self.panel.show_message(job.error or "preview stopped", error=job.error is not None)
            return
        result = job.result
        name = f"{layer.name} preview"
        lead = 0 if t is None else 1
        kwargs = result_layer_kwargs(layer, result["plan"], result["record"], name, lead=lead)
        step = np.asarray(layer.scale, dtype=float)[-3 - lead:]
        # a series' preview is the one time point it enhanced, shown at that time point
        starts = ([] if t is None else [t]) + [r.start for r in region]
        kwargs["translate"] = tuple(float(o + i * s)
                                    for o, i, s in zip(kwargs["translate"], starts, step,
                                                       strict=True))
        data = result["data"] if t is None else result["data"][np.newaxis]
        if name in self.viewer.layers:
            self.viewer.layers.remove(name)
        self.viewer.add_image(data, **kwargs)
        self.panel.bar.setValue(1000)
        where = "" if t is None else f" at time point {t}"
        self.panel.show_message(f"preview: {result['data'].shape[0]} planes{where} in "
                                f"{result['seconds']:.1f} s")

    def shutdown(self) -> None:
        """Stop any run and close the models (the widget is closing)."""
        self.panel.close_job()
        if self._loader is not None:
            self._loader.wait(30)
        with self._cache_lock:
            for enh in self._enhancers.values():
                enh.close()
            self._enhancers = {}

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        self.shutdown()
        super().closeEvent(event)


def _time_points(data: Any) -> int | None:
    """How many volumes a layer's (T, Z, Y, X) array holds; None for one ZYX volume."""
    return int(data.shape[0]) if len(data.shape) == 4 else None


def _zyx(volume: Any) -> tuple[int, int, int]:
    z, y, x = (int(s) for s in volume.shape)
    return z, y, x


def _forget(picker: LayerPicker, slot: Any, *_: Any) -> None:
    picker.disconnect_viewer()
    trained.changed.disconnect(slot)


def _poll_until_done(owner: QWidget, job: Job, done: Any) -> None:
    """Call ``done(job)`` in the GUI thread once the job has finished."""
    from qtpy.QtCore import QTimer

    timer = QTimer(owner)
    timer.setInterval(50)

    def tick() -> None:
        if job.done:
            timer.stop()
            timer.deleteLater()
            done(job)

    timer.timeout.connect(tick)
    timer.start()
