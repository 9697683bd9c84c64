"""The Compare widget: raw and enhanced side by side, laterally or along the axial x-z plane.

Side by side is napari's grid mode: one canvas split in cells that share one camera, so
panning or zooming one pans and zooms both. The axial view turns the dimensions so that z
runs down the screen against x, with y on the slider: there the axial blur, and so what
the model changed, is plain to see.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import (
    QLabel,
    QPushButton,
    QWidget,
)

from resin.napari._qt import LayerPicker, column, form, row


class CompareWidget(QWidget):
    """Raw and enhanced side by side with linked cameras; lateral or axial (x-z) views."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.raw_box = LayerPicker(napari_viewer)
        self.enhanced_box = LayerPicker(napari_viewer)
        self.side_button = QPushButton("Side by side")
        self.side_button.setCheckable(True)
        self.lateral_button = QPushButton("Lateral (y-x)")
        self.axial_button = QPushButton("Axial (x-z)")
        self.note = QLabel("")
        self.note.setWordWrap(True)
        column(self, form(("raw", self.raw_box), ("enhanced", self.enhanced_box)),
               self.side_button, row(self.lateral_button, self.axial_button), self.note)
        self.enhanced_box.currentTextChanged.connect(self._pair)
        self.side_button.toggled.connect(self.side_by_side)
        self.lateral_button.clicked.connect(lambda: self.view("lateral"))
        self.axial_button.clicked.connect(lambda: self.view("axial"))
        self.destroyed.connect(self.raw_box.disconnect_viewer)
        self.destroyed.connect(self.enhanced_box.disconnect_viewer)
        self.pick_latest()

    def pick_latest(self) -> None:
        """Select the newest enhanced layer and the layer it was made from."""
        for layer in reversed(self.viewer.layers):
            if isinstance(layer.metadata.get("resin"), dict) and \
                    layer.metadata["resin"].get("input") and layer.name != \
                    layer.metadata["resin"]["input"]:
                self.enhanced_box.setCurrentText(layer.name)
                self._pair()
                return

    def _pair(self, *_: Any) -> None:
        layer = self.enhanced_box.layer()
        record = getattr(layer, "metadata", {}).get("resin") if layer is not None else None
        source = record.get("input") if isinstance(record, dict) else None
        if source and source in self.viewer.layers:
            self.raw_box.setCurrentText(source)

    def _pair_layers(self) -> list[Any]:
        return [x for x in (self.raw_box.layer(), self.enhanced_box.layer()) if x is not None]

    def side_by_side(self, on: bool) -> None:
        """Grid mode with only the two layers visible (their cells share the camera)."""
        shown = self._pair_layers()
        if on and len(shown) < 2:
            self.note.setText("pick a raw and an enhanced image layer")
            self.side_button.setChecked(False)
            return
        for layer in self.viewer.layers:
            layer.visible = (layer in shown) if on else True
        self.viewer.canvas.grid.enabled = on
        if on:
            self._grid_shape()
            self.viewer.canvas.grid.stride = 1
            self.note.setText("linked: panning or zooming one pans and zooms both")
        else:
            self.note.setText("")
        self.viewer.reset_view()

    def _grid_shape(self) -> None:
        # x-z planes are wide and flat: one above the other; y-x planes side by side
        axial = tuple(self.viewer.dims.order[-3:])[0] == self.viewer.dims.ndim - 2
        self.viewer.canvas.grid.shape = (2, 1) if axial else (1, 2)

    def view(self, which: str) -> None:
        """``lateral``: y-x planes, z on the slider; ``axial``: z-x planes, y on the slider."""
        dims = self.viewer.dims
        if dims.ndim < 3:
            self.note.setText("no 3-D layer to turn")
            return
        lead = tuple(range(dims.ndim - 3))
        z, y, x = (dims.ndim - 3, dims.ndim - 2, dims.ndim - 1)
        dims.ndisplay = 2
        dims.order = lead + ((y, z, x) if which == "axial" else (z, y, x))
        self._grid_shape()
        self.viewer.reset_view()
        self.note.setText("axial view: z runs down, x across; the slider moves through y"
                          if which == "axial" else "lateral view: the slider moves through z")
