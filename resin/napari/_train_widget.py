"""The Train widget: ``resin train`` on a layer in a job, with its loss curves and previews."""

from __future__ import annotations

import math
import time
from functools import partial
from pathlib import Path
from typing import Any

from qtpy.QtCore import QPointF, Qt
from qtpy.QtGui import QColor, QPainter, QPen, QPixmap
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from resin.config import PRESETS
from resin.errors import ResinError, UsageError
from resin.napari._jobs import Job, Snapshot
from resin.napari._layers import layer_series, source_file, volume_at_slider
from resin.napari._qt import CommandRow, JobPanel, LayerPicker, column, form, row
from resin.napari._train import (
    PLOTTED,
    TrainSettings,
    default_model_path,
    latest_preview,
    read_losses,
    report_warnings,
    train_layer,
    trained,
)
from resin.train.outputs import Paths

_COLORS = ("#4e9af1", "#f1884e", "#5cc46b", "#d45bd4", "#e6d84a")
#: seconds between re-reading the loss file and the previews folder
_FILES_EVERY = 1.0


class LossPlot(QWidget):
    """The loss terms against the step, on one logarithmic axis."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.columns: dict[str, list[float]] = {}
        self.setMinimumHeight(150)

    def set_columns(self, columns: dict[str, list[float]]) -> None:
        self.columns = columns
        self.update()

    def paintEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        p = QPainter(self)
        try:
            self._paint(p)
        finally:
            p.end()

    def _paint(self, p: QPainter) -> None:
        p.fillRect(self.rect(), QColor("#262930"))
        p.setPen(QColor("#c8c8c8"))
        steps = self.columns.get("step", [])
        curves = {k: self.columns[k] for k in PLOTTED
                  if k in self.columns and len(self.columns[k]) == len(steps)}
        if len(steps) < 1 or not curves:
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "loss curves appear as training logs them")
            return
        logs = {k: [math.log10(v) if v > 0 else math.nan for v in vs] for k, vs in curves.items()}
        finite = [v for vs in logs.values() for v in vs if math.isfinite(v)]
        lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
        hi = hi if hi > lo else lo + 1.0
        left, top, right, bottom = 48, 22, self.width() - 8, self.height() - 22
        s0, s1 = steps[0], steps[-1] if steps[-1] > steps[0] else steps[0] + 1

        def at(step: float, value: float) -> QPointF:
            return QPointF(left + (right - left) * (step - s0) / (s1 - s0),
                           bottom - (bottom - top) * (value - lo) / (hi - lo))

        p.drawText(2, top + 10, f"{10 ** hi:.2g}")
        p.drawText(2, bottom, f"{10 ** lo:.2g}")
        p.drawText(left, self.height() - 6, f"step {int(s0)}")
        p.drawText(right - 70, self.height() - 6, f"step {int(steps[-1])}")
        p.drawLine(left, top, left, bottom)
        p.drawLine(left, bottom, right, bottom)
        for i, (name, values) in enumerate(logs.items()):
            pen = QPen(QColor(_COLORS[i % len(_COLORS)]))
            pen.setWidthF(1.5)
            p.setPen(pen)
            points = [at(s, v) for s, v in zip(steps, values, strict=True) if math.isfinite(v)]
            for a, b in zip(points, points[1:], strict=False):
                p.drawLine(a, b)
            if len(points) == 1:
                p.drawEllipse(points[0], 2.0, 2.0)
            p.drawText(left + 4 + 64 * i, top - 6, name)


class TrainWidget(QWidget):
    """Train a RESIN model on an image layer (see docs/napari.md)."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.layer_box = LayerPicker(napari_viewer)
        self.preset_box = QComboBox()
        self.preset_box.addItems(list(PRESETS))
        self.preset_box.setToolTip("quick: minutes on a CPU; long: the quick recipe, ~30 min on a CPU; "
                                       "default: paper size, for a GPU")
        self.steps_box = QSpinBox()
        self.steps_box.setRange(0, 10_000_000)
        self.steps_box.setSpecialValueText("the preset's")
        self.retries_box = QSpinBox()
        self.retries_box.setRange(0, 9)
        self.retries_box.setSpecialValueText("none")
        self.retries_box.setToolTip("when the end-of-training report warns of a run another "
                                    "seed may fix (structure lost, restored little), train "
                                    "again with the next seed, at most this many times "
                                    "(--retries); each run has the preset's time cap")
        self.config_edit = QLineEdit()
        self.config_edit.setPlaceholderText("optional JSON of TrainConfig fields (--config)")
        self.device_box = QComboBox()
        self.device_box.addItems(["auto", "cpu", "cuda"])
        self.model_edit = QLineEdit()
        self.every_time = QCheckBox("every time point (--time all)")
        self.every_time.setToolTip("a time series: one model from patches of all its time "
                                   "points, each normalized by its own levels; unchecked, the "
                                   "time point on the slider")
        self.start_button = QPushButton("Train")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.panel = JobPanel()
        self.plot = LossPlot()
        self.preview = QLabel("previews appear as training writes them")
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview.setMinimumHeight(120)
        self.command_edit = CommandRow()

        column(self,
               form(("image layer", self.layer_box), ("time points", self.every_time),
                    ("preset", self.preset_box),
                    ("steps", self.steps_box), ("retries", self.retries_box),
                    ("config", self.config_edit),
                    ("device", self.device_box), ("model", self.model_edit)),
               row(self.start_button, self.stop_button), self.panel, self.plot, self.preview,
               self.command_edit)

        self._preview_path: Path | None = None
        self._files_read = 0.0
        self._auto_model = ""
        self._series = False  # the picked layer is a time series (refresh)
        self.layer_box.currentTextChanged.connect(self.refresh)
        for edit in (self.config_edit, self.model_edit):
            edit.editingFinished.connect(self.refresh)
        self.preset_box.currentTextChanged.connect(self.refresh)
        self.steps_box.valueChanged.connect(self.refresh)
        self.retries_box.valueChanged.connect(self.refresh)
        self.device_box.currentTextChanged.connect(self.refresh)
        self.every_time.toggled.connect(self.refresh)
        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.panel.stop)
        # the command line names the time point on the slider (a time-series layer)
        napari_viewer.dims.events.current_step.connect(self.refresh)
        self.destroyed.connect(partial(_forget, self.layer_box, napari_viewer, self.refresh))
        self.refresh()

    def settings(self, time: int | str | None = None) -> TrainSettings:
        """The fields; ``time``: the time point of the layer's series file to train on, or
        ``"all"``."""
        config = self.config_edit.text().strip()
        return TrainSettings(model=Path(self.model_edit.text().strip()).expanduser(),
                             preset=self.preset_box.currentText(),
                             steps=self.steps_box.value() or None,
                             config_file=Path(config).expanduser() if config else None,
                             device=self.device_box.currentText(), time=time,
                             retries=self.retries_box.value())

    def refresh(self, *_: Any) -> None:
        """A fresh model path for a newly picked layer; the equivalent command line."""
        if self.panel.busy:
            return
        layer = self.layer_box.layer()
        if layer is not None and self.model_edit.text() in ("", self._auto_model):
            self._auto_model = str(default_model_path(layer.name))
            self.model_edit.setText(self._auto_model)
        try:
            self._series = layer is not None and len(layer_series(layer, values=False).shape) == 4
        except ResinError:
            self._series = False  # start() says what is wrong with the layer
        self.every_time.setEnabled(self._series)
        if layer is None:
            self.command_edit.setText("")
            return
        source = source_file(layer)
        t: int | str | None = "all"
        if not (self._series and self.every_time.isChecked()):
            try:
                _, t = volume_at_slider(self.viewer, layer, values=False)
            except ResinError:
                t = None  # start() says what is wrong with the layer
        self.command_edit.setText(self.settings(t if source or t == "all" else None).command_line(
            source or str(Path(f"{Path(self.model_edit.text()).with_suffix('')}.raw.tif"))))

    def start(self) -> None:
        layer = self.layer_box.layer()
        source = source_file(layer)
        try:
            # a time series trains on the time point shown, or with "every time point" on
            # all of them
            t: int | str | None
            if (self.every_time.isChecked()
                    and len(layer_series(layer, values=False).shape) == 4):
                volume, t = layer_series(layer), "all"
            else:
                volume, t = volume_at_slider(self.viewer, layer)
            # a series file is read at that time point; a layer's time point is written (a
            # whole series layer is written as one)
            settings = self.settings(t if source or t == "all" else None)
            if not self.model_edit.text().strip():
                raise UsageError("give the model file to write (MODEL.pt)")
            settings.config()  # a bad preset or config file is reported now
        except ResinError as exc:
            self.panel.show_message(str(exc), error=True)
            return
        self.refresh()
        self._preview_path = None
        self.plot.set_columns({})
        self._busy(True)
        t0 = time.perf_counter()
        self.panel.start(Job(partial(train_layer, settings, volume, source), "resin-train"),
                         partial(self._finished, settings.model, t0),
                         f"training on '{layer.name}'"
                         f"{_which(t)} into {settings.model} ...",
                         _steps, self._show_files)

    def _busy(self, busy: bool) -> None:
        for w in (self.layer_box, self.preset_box, self.steps_box, self.retries_box,
                  self.config_edit,
                  self.device_box, self.model_edit, self.start_button):
            w.setEnabled(not busy)
        self.every_time.setEnabled(not busy and self._series)
        self.stop_button.setEnabled(busy)

    def _show_files(self, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self._files_read < _FILES_EVERY:
            return
        self._files_read = now
        model = self.settings().model
        self.plot.set_columns(read_losses(model))
        png = latest_preview(model)
        if png is not None and png != self._preview_path:
            pixmap = QPixmap(str(png))
            if not pixmap.isNull():
                self._preview_path = png
                self.preview.setPixmap(pixmap.scaledToWidth(
                    max(120, min(self.width() - 20, 2 * pixmap.width())),
                    Qt.TransformationMode.SmoothTransformation))
                self.preview.setToolTip(f"{png.name}: top, lateral MIP raw | enhanced; bottom, "
                                        "x-z slice raw | enhanced")

    def _finished(self, model: Path, t0: float, job: Job) -> None:
        self._busy(False)
        self._show_files(force=True)
        if job.stopped:
            self.panel.show_message(
                f"stopped; {model.with_suffix('')}.last.pt keeps the last checkpoint "
                f"(resin train --resume continues)")
            return
        if job.error is not None:
            self.panel.show_message(job.error, error=True)
            return
        trained.add(Path(job.result))
        self.panel.bar.setValue(1000)
        warnings = report_warnings(model)
        self.panel.show_message(f"trained {job.result} in {time.perf_counter() - t0:.0f} s; "
                                "it is now a model in the Enhance widget"
                                + "".join(f"\nwarning: {w}" for w in warnings))
        self.panel.status.setToolTip(f"the end-of-training report: {Paths(model).report_json}")
        self._auto_model = ""
        self.model_edit.setText("")
        self.refresh()

    def shutdown(self) -> None:
        self.panel.close_job(timeout=120)

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        self.shutdown()
        super().closeEvent(event)


def _steps(snap: Snapshot) -> str:
    return f"step {int(snap.done)}/{int(snap.total)}  {snap.text()}"


def _forget(picker: LayerPicker, viewer: Any, slot: Any, *_: Any) -> None:
    picker.disconnect_viewer()
    viewer.dims.events.current_step.disconnect(slot)


def _which(t: int | str | None) -> str:
    """What the start message says about the time points trained on."""
    return "" if t is None else " (every time point)" if t == "all" else f" (time point {t})"
