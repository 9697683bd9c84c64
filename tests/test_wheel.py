"""Build the wheel and check that every module of every mapped folder lands under ``resin/``."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_contains_every_module(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(REPO)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("resin-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"resin"}, tops
    dirs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    expected = set()
    for name, folder in dirs.items():
        root = REPO / folder
        for py in root.rglob("*.py"):
            rel = py.relative_to(root)
            if any(p.startswith(".") or p == "__pycache__" for p in rel.parts):
                continue
            if not (py.parent / "__init__.py").exists():
                continue
            expected.add("/".join([*name.split("."), *rel.parts]))
    missing = sorted(expected - names)
    assert not missing, f"modules missing from the wheel: {missing}"
    assert "resin/py.typed" in names
    # the bundled default model: resin-run without --engine needs it in every install
    for name in ("default.onnx", "default.degrader.onnx", "default.pt", "MODEL_CARD.md"):
        assert f"resin/data/{name}" in names, name
    # the napari plugin's manifest, and the entry point napari finds it by
    assert "resin/napari/napari.yaml" in names
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[napari.manifest]" in text and "resin = resin.napari:napari.yaml" in text


def test_cli_usage_errors_are_one_line(cli):
    from conftest import assert_one_line_error

    assert_one_line_error(cli("resin", "no-such-command"))
    assert_one_line_error(cli("resin-run", "--no-such-flag"))
    proc = cli("resin", "--version")
    assert proc.returncode == 0 and "resin" in proc.stdout
