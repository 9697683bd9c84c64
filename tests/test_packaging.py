"""The wheel must contain every package, and the runtime must not need torch/onnx/tensorrt,
nor napari or Qt (the napari plugin's extra)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_every_package_folder_is_listed():
    tool = _pyproject()["tool"]["setuptools"]
    listed = set(tool["packages"])
    dirs = tool["package-dir"]
    found = set()
    for name, folder in dirs.items():
        root = REPO / folder
        for init in root.rglob("__init__.py"):
            rel = init.parent.relative_to(root)
            if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
                continue
            parts = [name, *rel.parts] if rel.parts else [name]
            found.add(".".join(parts))
    missing = sorted(found - listed)
    assert not missing, f"folders with __init__.py missing from [tool.setuptools] packages: {missing}"
    for name in listed:
        assert name == "resin" or name.startswith("resin."), name


def _requirements(specs: list[str]) -> dict[str, Requirement]:
    return {canonicalize_name(r.name): r for r in map(Requirement, specs)}


def test_one_onnxruntime_build_per_install():
    """onnxruntime and onnxruntime-gpu install into the same folder: an environment may hold
    only one, so the base install has neither and only the `cpu` and `gpu` extras bring one."""
    project = _pyproject()["project"]
    builds = {"onnxruntime", "onnxruntime-gpu"}
    assert not builds & set(_requirements(project["dependencies"]))
    brings = {extra: builds & set(_requirements(specs))
              for extra, specs in project["optional-dependencies"].items()}
    assert brings.pop("cpu") == {"onnxruntime"} and brings.pop("gpu") == {"onnxruntime-gpu"}
    assert not any(brings.values()), brings
    # make test (and so CI) installs the CPU build, which export's parity check needs
    install = re.search(r"pip install -q -e '\.\[([a-z,]+)\]'", (REPO / "Makefile").read_text())
    assert install and "cpu" in install.group(1).split(",") and "gpu" not in install.group(1)


def test_gpu_extra_is_one_cuda_major():
    """numba-cuda alone brings no NVVM; its cu12/cu13 extra does, and TensorRT must match."""
    gpu = _requirements(_pyproject()["project"]["optional-dependencies"]["gpu"])
    (cuda,) = gpu["numba-cuda"].extras
    assert cuda in ("cu12", "cu13")
    assert f"tensorrt-{cuda}" in gpu and "tensorrt" not in gpu
    if cuda == "cu12":  # onnxruntime-gpu on PyPI is built for CUDA 12 from 1.19 on
        assert gpu["onnxruntime-gpu"].specifier.contains("1.19.0")
        assert not gpu["onnxruntime-gpu"].specifier.contains("1.18.9")


def test_no_tests_package():
    assert not (REPO / "tests" / "__init__.py").exists()


_BLOCK = """
import importlib, pkgutil, sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'onnx', 'tensorrt', 'onnxscript', 'napari', 'qtpy',
                                  'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'vispy'):
            raise ImportError(f'{name} is blocked in this test')
        return None
sys.meta_path.insert(0, _Block())
import resin.runtime, resin.kernels, resin.io, resin.errors, resin.metadata, resin.cli
import resin.runtime.cli, resin.napari
for pkg in (resin.runtime, resin.kernels):
    for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):
        importlib.import_module(info.name)
bad = [m for m in ('torch', 'onnx', 'tensorrt', 'napari', 'qtpy') if m in sys.modules]
assert not bad, bad
print('ok')
"""


def test_runtime_imports_without_torch_onnx_tensorrt_or_qt():
    proc = subprocess.run([sys.executable, "-c", _BLOCK], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("ok")


def test_help_works_without_torch():
    for module in ("resin.cli", "resin.runtime.cli"):
        code = _BLOCK.split("import resin.runtime,")[0] + (
            f"from {module} import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        )
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, proc.stderr
        assert "usage:" in proc.stdout
