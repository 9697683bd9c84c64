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


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item (``item.rep_setup``, ``rep_call``, ...).

    napari's ``make_napari_viewer`` fixture (0.9.2) reads ``request.node.rep_call`` at
    teardown, to skip its leak check after a failure. A test that skips or fails in setup
    (no X display for OpenGL, say) has no call phase, so that teardown raised
    AttributeError and ``make test`` reported errors on machines without Xvfb: the setup
    report stands in for the call's."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    if report.when == "setup" and not report.passed:
        item.rep_call = report
    return report
