"""Qt pieces the widgets share: a job panel (bar, status line, timer), an image-layer picker."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QApplication,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLayout,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from resin.napari._jobs import Job, Snapshot

#: how often a running job's progress is shown (ms)
POLL_MS = 100


class JobPanel(QWidget):
    """A progress bar and a status line following one :class:`Job` at a time."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setTextVisible(True)
        self.bar.setFormat("")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.bar)
        layout.addWidget(self.status)
        self.job: Job | None = None
        self._on_done: Callable[[Job], None] | None = None
        self._on_tick: Callable[[], None] | None = None
        self._describe: Callable[[Snapshot], str] = Snapshot.text
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._poll)

    @property
    def busy(self) -> bool:
        return self.job is not None

    def start(self, job: Job, on_done: Callable[[Job], None], status: str,
              describe: Callable[[Snapshot], str] | None = None,
              on_tick: Callable[[], None] | None = None) -> None:
        self.job = job
        self._on_done = on_done
        self._on_tick = on_tick
        self._describe = describe or Snapshot.text
        self.bar.setValue(0)
        self.bar.setFormat("")
        self.show_message(status)
        job.start()
        self._timer.start()

    def stop(self) -> None:
        if self.job is not None:
            self.job.stop()
            self.show_message("stopping at the next tile row or step ...")

    def show_message(self, text: str, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet("color: #e05252;" if error else "")

    def _poll(self) -> None:
        job = self.job
        if job is None:
            self._timer.stop()
            return
        snap = job.snapshot
        if snap is not None:
            self.bar.setValue(int(round(1000 * snap.fraction)))
            self.bar.setFormat(self._describe(snap))
        if self._on_tick is not None:
            self._on_tick()
        if job.done:
            self._timer.stop()
            self.job = None
            if self._on_done is not None:
                self._on_done(job)

    def close_job(self, timeout: float = 30.0) -> None:
        """Stop a running job and wait for it (the widget is going away)."""
        job = self.job
        if job is not None:
            job.stop()
            job.wait(timeout)
            self._timer.stop()
            self.job = None


class LayerPicker(QComboBox):
    """The viewer's image layers, kept in step with the layer list."""

    def __init__(self, viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._viewer = viewer
        events = viewer.layers.events
        for event in (events.inserted, events.removed, events.reordered):
            event.connect(self.refresh)
        self.refresh()

    def refresh(self, *_: Any) -> None:
        from napari.layers import Image

        current = self.currentText()
        self.blockSignals(True)
        self.clear()
        names = [layer.name for layer in self._viewer.layers if isinstance(layer, Image)]
        self.addItems(names)
        if current in names:
            self.setCurrentText(current)
        elif self._viewer.layers.selection.active is not None and \
                self._viewer.layers.selection.active.name in names:
            self.setCurrentText(self._viewer.layers.selection.active.name)
        self.blockSignals(False)
        if self.currentText() != current:
            self.currentTextChanged.emit(self.currentText())

    def layer(self) -> Any:
        name = self.currentText()
        return self._viewer.layers[name] if name in self._viewer.layers else None

    def disconnect_viewer(self) -> None:
        events = self._viewer.layers.events
        for event in (events.inserted, events.removed, events.reordered):
            event.disconnect(self.refresh)


class CommandRow(QWidget):
    """The command line that does what the widget would, read-only, with a Copy button."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.edit = QLineEdit()
        self.edit.setReadOnly(True)
        self.copy_button = QPushButton("Copy")
        self.copy_button.clicked.connect(self.copy)
        row = QHBoxLayout()
        row.addWidget(self.edit)
        row.addWidget(self.copy_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("the same run in a terminal:"))
        layout.addLayout(row)

    def text(self) -> str:
        return self.edit.text()

    def setText(self, text: str) -> None:  # noqa: N802 - Qt's spelling, as QLineEdit's
        self.edit.setText(text)

    def copy(self) -> None:
        clipboard = QApplication.clipboard()
        if clipboard is not None:
            clipboard.setText(self.edit.text())


def form(*rows: tuple[str, QWidget]) -> QFormLayout:
    """A form of labelled fields."""
    layout = QFormLayout()
    for label, widget in rows:
        layout.addRow(label, widget)
    return layout


def row(*widgets: QWidget) -> QHBoxLayout:
    """Widgets side by side."""
    layout = QHBoxLayout()
    for widget in widgets:
        layout.addWidget(widget)
    return layout


def column(owner: QWidget, *items: QWidget | QLayout) -> QVBoxLayout:
    """``owner``'s layout: the items one below the other, then free space."""
    layout = QVBoxLayout(owner)
    for item in items:
        if isinstance(item, QLayout):
            layout.addLayout(item)
        else:
            layout.addWidget(item)
    layout.addStretch(1)
    return layout
