"""Screenshots of each widget on the demo volume, for docs/napari.md.

Runs only when asked, with a real X platform on a virtual display (offscreen Qt draws the
canvas once and not again after the view changes):

    RESIN_SCREENSHOTS=docs/images QT_QPA_PLATFORM=xcb xvfb-run -s "-screen 0 1600x1000x24" \\
        .venv/bin/python -m pytest tests/napari/test_screenshots.py

It trains for a minute or two on the demo volume; what the pictures show is tested on
small volumes by the other tests of this folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari", reason="the napari plugin needs pip install 'resin[napari]'")
pytest.importorskip("pytestqt", reason="the napari tests need pytest-qt (the dev extra)")

#: window size of the pictures (logical pixels)
WINDOW = (1360, 820)
#: a short training run of a small network for the Train widget's picture: a few loss
#: points and two previews
SHORT_TRAINING = {"steps": 24, "log_every": 2, "validate_every": 12, "preview_every": 12,
                  "checkpoint_every": 12, "time_limit_minutes": None,
                  "generator": {"features": [4, 8], "multiplicative": True},
                  "discriminator": {"features": 4, "layers": 2},
                  "degrader": {"kernel_size": 7},
                  "data": {"patch_size": [16, 32, 32], "batch_size": 1,
                           "validation_patches": 1}}


def _save(viewer, qtbot, folder: Path, name: str) -> Path:
    from qtpy.QtGui import QImage

    qtbot.wait(500)  # slicing and drawing after the last change
    path = folder / f"napari-{name}.png"
    rgba = np.ascontiguousarray(viewer.screenshot(canvas_only=False, flash=False))
    h, w = rgba.shape[:2]
    image = QImage(rgba.data, w, h, 4 * w, QImage.Format.Format_RGBA8888)
    image = image.convertToFormat(QImage.Format.Format_RGB888)
    assert image.save(str(path), "PNG", 9)
    return path


def _dock(viewer, qtbot, name: str):
    _, widget = viewer.window.add_plugin_dock_widget("resin", name)
    qtbot.wait(50)
    return widget


def _wait(qtbot, widget, timeout=300000):
    qtbot.waitUntil(lambda: not widget.panel.busy, timeout=timeout)


def test_screenshots_of_each_widget(make_napari_viewer, qtbot, tmp_path, _display):
    if not os.environ.get("RESIN_SCREENSHOTS"):
        pytest.skip("pictures for the docs: set RESIN_SCREENSHOTS=docs/images")
    if not _display or os.environ.get("QT_QPA_PLATFORM") == "offscreen":
        pytest.skip("needs QT_QPA_PLATFORM=xcb on a (virtual) X display")
    pytest.importorskip("torch")
    folder = Path(os.environ["RESIN_SCREENSHOTS"])
    folder.mkdir(parents=True, exist_ok=True)
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(*WINDOW)
    viewer.open_sample("resin", "demo")
    viewer.dims.set_point(0, 24)
    shots = []

    enhance = _dock(viewer, qtbot, "Enhance")
    qtbot.waitUntil(lambda: "plus the network" in enhance.plan_label.text(), timeout=30000)
    enhance.run_button.click()
    _wait(qtbot, enhance)
    shots.append(_save(viewer, qtbot, folder, "enhance"))

    viewer.layers["demo raw (resin)"].visible = False
    viewer.layers.selection.active = viewer.layers["demo raw"]
    viewer.camera.zoom *= 2.5
    viewer.camera.center = (24, 80, 100)
    qtbot.wait(300)
    enhance.preview_button.click()
    _wait(qtbot, enhance)
    shots.append(_save(viewer, qtbot, folder, "preview"))
    viewer.layers.remove("demo raw preview")
    viewer.layers["demo raw (resin)"].visible = True
    enhance.shutdown()
    viewer.window.remove_dock_widget("all")

    compare = _dock(viewer, qtbot, "Compare")
    compare.side_button.setChecked(True)
    compare.axial_button.click()
    raw = viewer.layers["demo raw"].data
    busiest_y = int(np.argmax((raw > np.percentile(raw, 99.5)).sum(axis=(0, 2))))
    viewer.dims.set_point(1, busiest_y)
    shots.append(_save(viewer, qtbot, folder, "compare"))
    compare.side_button.setChecked(False)
    compare.lateral_button.click()
    viewer.window.remove_dock_widget("all")

    train = _dock(viewer, qtbot, "Train")
    config = tmp_path / "short.json"
    config.write_text(json.dumps(SHORT_TRAINING))
    train.layer_box.setCurrentText("demo raw")
    train.config_edit.setText(str(config))
    train.model_edit.setText(str(tmp_path / "demo.pt"))
    train.refresh()
    train.start_button.click()
    _wait(qtbot, train)
    assert train.panel.status.text().startswith("trained"), train.panel.status.text()
    shots.append(_save(viewer, qtbot, folder, "train"))
    train.shutdown()

    for path in shots:
        assert 10_000 < path.stat().st_size < 200_000, path
