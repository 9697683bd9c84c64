"""A TensorRT plan's sidecar record (``<plan>.json``) and the rules for running a plan.

Part of the model artifact, like :mod:`resin.metadata`, and torch-free: export writes the
record and the runtime checks it before deserializing, both through this module (the
runtime needs neither torch nor ``resin.export`` to load a plan).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from resin._cache import file_sha256
from resin._optional import require
from resin.errors import BackendError, ModelError
from resin.metadata import ModelMetadata

#: (name, compute capability) of a GPU
Gpu = tuple[str, tuple[int, int]]
#: hardware-compatible plans run on compute capability 8.0 (Ampere) or newer
AMPERE = (8, 0)
REBUILD = "rebuild it with `resin export MODEL.pt --trt` on this machine"


def read_plan_sidecar(plan_path: str | os.PathLike) -> dict[str, Any]:
    """The ``<plan>.json`` record beside a plan, with its ``"tensorrt"`` build record checked."""
    plan_path = Path(plan_path)
    path = sidecar_path(plan_path)
    rebuild = "rebuild the plan with `resin export MODEL.pt --trt`"
    if not path.is_file():
        raise ModelError(f"{plan_path}: no {path.name} beside the plan; {rebuild}")
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: the plan's sidecar is not readable JSON; {rebuild}") from exc
    info = record.get("tensorrt") if isinstance(record, dict) else None
    if not isinstance(info, dict):
        raise ModelError(f"{path}: the plan's sidecar has no \"tensorrt\" build record; {rebuild}")
    cc = info.get("compute_capability")
    ok = (isinstance(info.get("version"), str)
          and isinstance(cc, list) and len(cc) == 2 and all(isinstance(v, int) for v in cc)
          and all(isinstance(info.get(k, False), bool)
                  for k in ("version_compatible", "hardware_compatible", "host_code")))
    if not ok:
        raise ModelError(f"{path}: the plan's \"tensorrt\" build record is incomplete (version, "
                         f"compute_capability); {rebuild}")
    if not re.fullmatch(r"[0-9a-f]{64}", str(info.get("plan_sha256", ""))):
        raise ModelError(f"{path}: the plan's build record has no plan_sha256 to check the plan "
                         f"against (an older resin built it); {rebuild}")
    return record  # type: ignore[no-any-return]


def plan_has_host_code(info: dict[str, Any]) -> bool:
    """Whether a plan carries host code (TensorRT's lean runtime), from its sidecar's
    ``"tensorrt"`` build record; one without ``host_code`` predates the flag, and its
    version-compatible plans have it."""
    return bool(info.get("host_code", info.get("version_compatible", False)))


def check_plan_compatible(plan_path: str | os.PathLike, *, trt_version: str | None = None,
                          gpu: Gpu | None = None,
                          plan_bytes: bytes | None = None) -> ModelMetadata:
    """ModelError unless the plan can run with this TensorRT on this GPU; returns its record.

    The plan's bytes (``plan_bytes``, the ones about to be deserialized, else the file's)
    must match the SHA-256 in the sidecar, so a plan never runs under another plan's record.
    Default: the same TensorRT major.minor.patch and the same compute capability. A plan
    built version-compatible runs on the same or a newer TensorRT of the same major; one
    built hardware-compatible (AMPERE_PLUS) on any GPU of compute capability 8.0 or newer.
    """
    record = read_plan_sidecar(plan_path)
    sidecar = sidecar_path(Path(plan_path))
    meta = ModelMetadata.from_json(json.dumps(record), source=str(sidecar))
    info = record["tensorrt"]
    digest = (hashlib.sha256(plan_bytes).hexdigest() if plan_bytes is not None
              else file_sha256(plan_path))
    if digest != info["plan_sha256"]:
        raise ModelError(f"{plan_path}: the plan's bytes do not match the SHA-256 in "
                         f"{sidecar.name} (one of the two was replaced or damaged); {REBUILD}")
    if trt_version is None:
        trt_version = str(require("tensorrt", "checking a TensorRT plan", extra="gpu").__version__)
    name, cc = gpu if gpu is not None else current_gpu()
    cc = (int(cc[0]), int(cc[1]))
    built, here = parse_version(info["version"]), parse_version(trt_version)
    built_cc = (int(info["compute_capability"][0]), int(info["compute_capability"][1]))
    built_on = (f"{plan_path}: built with TensorRT {info['version']} on "
                f"{info.get('gpu_name', 'an unknown GPU')} (sm_{built_cc[0]}{built_cc[1]})")
    if info.get("version_compatible"):
        if here[0] != built[0] or here < built:
            raise ModelError(
                f"{built_on} as version-compatible, which runs on TensorRT "
                f"{'.'.join(map(str, built))} or a newer {built[0]}.x, but this machine has "
                f"TensorRT {trt_version}; install such a TensorRT or {REBUILD}")
    elif here != built:
        raise ModelError(f"{built_on}, but this machine has TensorRT {trt_version}; {REBUILD} "
                         "(or build it with --version-compatible)")
    if info.get("hardware_compatible"):
        if cc < AMPERE:
            raise ModelError(
                f"{built_on} as hardware-compatible for Ampere or newer GPUs, but this machine "
                f"has {name} (sm_{cc[0]}{cc[1]}); {REBUILD} without --hardware-compatible")
    elif cc != built_cc:
        raise ModelError(f"{built_on}, but this machine has {name} (sm_{cc[0]}{cc[1]}); "
                         f"{REBUILD} (or build it with --hardware-compatible)")
    return meta


def current_gpu() -> Gpu:
    """(name, compute capability) of the current CUDA device; the one place that asks CUDA."""
    cuda = require("numba.cuda", "querying the GPU for TensorRT", extra="gpu")
    if not cuda.is_available():
        raise BackendError("no CUDA GPU is available; TensorRT plans are built and run on a "
                           "CUDA GPU")
    device = cuda.get_current_device()
    name = device.name.decode() if isinstance(device.name, bytes) else str(device.name)
    major, minor = (int(v) for v in device.compute_capability)
    return name, (major, minor)


def parse_version(text: str) -> tuple[int, int, int]:
    """(major, minor, patch) of a TensorRT version string such as ``10.3.0.26``."""
    parts = [int(m.group()) if (m := re.match(r"\d+", p)) else 0 for p in str(text).split(".")]
    if not parts or not re.match(r"\d", str(text)):
        raise ModelError(f"cannot read the TensorRT version {text!r}; rebuild the plan with "
                         "`resin export MODEL.pt --trt`")
    parts += [0] * (3 - len(parts))
    return (parts[0], parts[1], parts[2])


def sidecar_path(plan_path: Path) -> Path:
    return Path(str(plan_path) + ".json")
