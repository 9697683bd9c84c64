"""napari plugin tests: Qt offscreen, OpenGL through a virtual X display.

Qt's offscreen platform draws no window, but napari's canvas needs an OpenGL context,
which Qt's offscreen platform takes from an X display when there is one. Without a
DISPLAY, one Xvfb (``apt-get install xvfb``) is started for the session; without either,
the tests that need a viewer skip. Without napari (the ``napari`` extra) or pytest-qt, the
modules that need them skip (``pytest.importorskip``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def _die_with_parent() -> None:
    # Xlib ends the process that loses its X server, so the server must outlive the tests'
    # QApplication: it ends when pytest does, not when the session's fixtures are torn down
    import ctypes
    import signal

    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _start_xvfb() -> subprocess.Popen | None:
    if os.environ.get("DISPLAY") or not shutil.which("Xvfb") or sys.platform != "linux":
        return None
    read, write = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "1600x1000x24",
                             "-nolisten", "tcp"], pass_fds=(write,), preexec_fn=_die_with_parent,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    with os.fdopen(read) as f:
        number = f.readline().strip()
    if not number:
        proc.kill()
        return None
    os.environ["DISPLAY"] = f":{number}"
    return proc


@pytest.fixture(scope="session", autouse=True)
def _display():
    """An X display for OpenGL (before the QApplication exists)."""
    _start_xvfb()
    return os.environ.get("DISPLAY")


@pytest.fixture
def viewer(make_napari_viewer, _display):
    if not _display:
        pytest.skip("no X display for OpenGL: install xvfb (apt-get install xvfb)")
    return make_napari_viewer()


@pytest.fixture
def demo_volume():
    from resin.napari._sample import demo_raw

    return demo_raw()[0][0]
