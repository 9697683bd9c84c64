"""TensorRT engine build from the exported ONNX, the ``<plan>.json`` sidecar, compatibility.

A serialized plan runs only on the TensorRT version and GPU it was built for (unless built
version- or hardware-compatible), so the sidecar records both next to the model's metadata
record, and :func:`check_plan_compatible` turns a mismatch into one clear ModelError before
TensorRT would fail on it with a cryptic one. The cheap checks (tile profile, TensorRT's
2**31-element tensor limit) run before tensorrt is imported, so bad flags are a UsageError
even on a machine without TensorRT. Written against the TensorRT 10/11 Python API.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from resin.export._onnx import check_tile
from resin.export.metadata import read_onnx_metadata

from resin import _log
from resin._atomic import atomic_write
from resin._cache import file_sha256
from resin._optional import require
from resin._tensorrt_log import tensorrt_logger
from resin.errors import BackendError, ModelError, OutputExistsError, UsageError
from resin.io._common import make_parent
from resin.tensorrt_plan import AMPERE as _AMPERE
from resin.tensorrt_plan import current_gpu as _current_gpu
from resin.tensorrt_plan import parse_version as _parse_version
from resin.tensorrt_plan import sidecar_path as _sidecar_path

#: TensorRT refuses any tensor with this many elements or more
TENSOR_LIMIT = 2**31
#: first TensorRT release that deprecates weak typing (the FP16 builder flag)
_WEAK_TYPING_DEPRECATED = (10, 12, 0)
#: hardware-compatible plans (AMPERE_PLUS) run on compute capability 8.0 and newer

Tile = tuple[int, int, int]


# --- cheap checks (no TensorRT needed) ----------------------------------------------------

def optimization_profile(tile: Sequence[int], size_multiple: int,
                         min_tile: Sequence[int] | None = None,
                         max_tile: Sequence[int] | None = None) -> dict[str, tuple[int, ...]]:
    """The ``"input"`` profile: ``{"min", "opt", "max"}``, each ``(1, 1, Z, Y, X)``.

    ``opt`` is ``tile``; ``min`` defaults to one size multiple per side, ``max`` to ``tile``.
    """
    opt = check_tile(tile, size_multiple, "--tile")
    lo = check_tile(min_tile, size_multiple, "--min-tile") if min_tile is not None \
        else (size_multiple,) * 3
    hi = check_tile(max_tile, size_multiple, "--max-tile") if max_tile is not None else opt
    if any(a > b for a, b in zip(lo, opt, strict=True)):
        raise UsageError(f"--min-tile {_fmt(lo)} must not exceed --tile {_fmt(opt)} on any axis; "
                         "pass a smaller --min-tile")
    if any(a < b for a, b in zip(hi, opt, strict=True)):
        raise UsageError(f"--max-tile {_fmt(hi)} must be at least --tile {_fmt(opt)} on every "
                         "axis; pass a larger --max-tile or a smaller --tile")
    return {"min": (1, 1, *lo), "opt": (1, 1, *opt), "max": (1, 1, *hi)}


def _largest_activation(features: Sequence[int], grid: Tile, in_channels: int) -> int:
    """Elements of the largest tensor of the generator's U-Net (batch 1) on ``grid`` voxels.

    Mirrors :class:`resin.models.Generator`: per level two convolutions to ``f_i`` channels,
    max-pool by 2 (floor); on the way up a trilinear upsample of ``f_i`` channels to the
    skip's grid, a convolution to ``f_{i-1}``, the concatenation (``2 f_{i-1}``), two convs.
    """
    grids = [grid]
    for _ in features[1:]:
        grids.append((grids[-1][0] // 2, grids[-1][1] // 2, grids[-1][2] // 2))
    voxels = [math.prod(g) for g in grids]
    sizes = [in_channels * voxels[0]]
    sizes += [f * v for f, v in zip(features, voxels, strict=True)]
    for i in range(1, len(features)):
        sizes.append(features[i] * voxels[i - 1])        # upsampled, before its conv
        sizes.append(2 * features[i - 1] * voxels[i - 1])  # concatenated with the skip
    return max(sizes)


def check_tensor_limit(features: Sequence[int], max_tile: Sequence[int],
                       scale: Sequence[float] = (1.0, 1.0, 1.0), *, in_channels: int = 1,
                       size_multiple: int | None = None, what: str = "--max-tile") -> int:
    """Largest activation (elements) of the U-Net at ``max_tile``; UsageError at 2**31 or more.

    With a scale above 1 the activations are counted on the output grid (tile x scale), an
    upper bound whether a model upsamples first or last. The error names the largest cube,
    and the largest z for the given y and x, that fit.
    """
    feats = [int(f) for f in features]
    if not feats or any(f <= 0 for f in feats):
        raise ModelError(f"the generator's features {list(features)} are not positive channel "
                         "counts; re-export the model with `resin export`")
    m = int(size_multiple or 2 ** (len(feats) - 1))
    z, y, x = (int(v) for v in max_tile)

    def largest(t: Tile) -> int:
        grid = tuple(math.ceil(side * float(s)) for side, s in zip(t, scale, strict=True))
        return _largest_activation(feats, grid, in_channels)  # type: ignore[arg-type]

    biggest = largest((z, y, x))
    if biggest < TENSOR_LIMIT:
        return biggest
    cube = _largest_side(lambda n: largest((n, n, n)) < TENSOR_LIMIT, m, max(z, y, x))
    z_fit = _largest_side(lambda n: largest((n, y, x)) < TENSOR_LIMIT, m, z)
    fits = []
    if cube:
        fits.append(f"{what} {cube} {cube} {cube}")
    if z_fit:
        fits.append(f"{what} {z_fit} {y} {x}")
    advice = " or ".join(fits) if fits else "a smaller tile"
    raise UsageError(
        f"{what} {z} {y} {x} needs a tensor of {biggest:,} elements, over TensorRT's limit of "
        f"2**31; use at most {advice}"
    )


def _largest_side(fits: Any, step: int, upper: int) -> int:
    """Largest multiple of ``step`` in [step, upper] for which ``fits`` holds (0 if none)."""
    lo, hi = 0, upper // step  # fits(lo * step) is assumed, fits(>hi * step) not asked
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid * step):
            lo = mid
        else:
            hi = mid - 1
    return lo * step


# --- the build ----------------------------------------------------------------------------

def check_build_flags(workspace_gib: float, optimization_level: int) -> None:
    """The builder settings that need no model: workspace and optimization level."""
    if not workspace_gib > 0:
        raise UsageError(f"--workspace {workspace_gib} GiB must be positive")
    if not 0 <= int(optimization_level) <= 5:
        raise UsageError(f"--optimization-level {optimization_level} must be between 0 and 5")


def build_engine(
    onnx_path: str | os.PathLike,
    plan_path: str | os.PathLike,
    *,
    tile: Sequence[int],
    min_tile: Sequence[int] | None = None,
    max_tile: Sequence[int] | None = None,
    workspace_gib: float = 4.0,
    timing_cache: str | os.PathLike | None = None,
    fp16: bool = False,
    optimization_level: int = 3,
    version_compatible: bool = False,
    hardware_compatible: bool = False,
    allow_host_code: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Build a TensorRT plan from a resin ONNX; write it and its ``<plan>.json`` sidecar.

    Returns the sidecar: the ONNX's metadata record plus a ``"tensorrt"`` object (version,
    GPU, profile, flags, build time, the ONNX's and the plan's SHA-256). Both files appear
    atomically. A version-compatible plan carries TensorRT's lean runtime, host code that
    runs in whatever process loads the plan, so it needs ``allow_host_code``.
    """
    onnx_path, plan_path = Path(onnx_path), Path(plan_path)
    sidecar_path = _sidecar_path(plan_path)
    for target in (plan_path, sidecar_path):
        if target.exists() and not overwrite:
            raise OutputExistsError(f"{target} already exists; pass --overwrite to replace it")
    check_build_flags(workspace_gib, optimization_level)
    check_host_code_flags(version_compatible, allow_host_code)
    meta = read_onnx_metadata(onnx_path)
    profile = optimization_profile(tile, meta.size_multiple, min_tile, max_tile)
    gen = meta.generator or {}
    if gen.get("features"):
        largest = check_tensor_limit(gen["features"], profile["max"][2:], meta.scale,
                                     in_channels=int(gen.get("in_channels", 1)),
                                     size_multiple=meta.size_multiple,
                                     what="--max-tile" if max_tile is not None else "--tile")
        _log.debug(f"largest activation at the maximum tile: {largest:,} elements")
    else:
        _log.debug("no generator architecture in the metadata; tensor-size check skipped")

    trt = require("tensorrt", "building a TensorRT engine", extra="gpu")
    version = _parse_version(trt.__version__)
    gpu_name, cc = _current_gpu()
    if hardware_compatible and cc < _AMPERE:
        raise UsageError(f"--hardware-compatible builds for Ampere or newer GPUs, but this "
                         f"machine has {gpu_name} (sm_{cc[0]}{cc[1]}); build without it")
    onnx_fp16 = meta.input_dtype == "float16"
    creation = trt.NetworkDefinitionCreationFlag
    strongly_typed = onnx_fp16 and hasattr(creation, "STRONGLY_TYPED")
    fp16_flag = (fp16 or onnx_fp16) and not strongly_typed
    if fp16_flag and not _fp16_flag_usable(trt, version):
        raise UsageError(f"TensorRT {trt.__version__} builds fp16 engines only from an fp16 "
                         "ONNX (strong typing); export the ONNX with --fp16 and build from it")

    logger = tensorrt_logger(trt)
    builder = trt.Builder(logger)
    flags = 0
    if version[0] < 10:  # explicit batch is the only mode (and the flag deprecated) from 10
        flags |= 1 << int(creation.EXPLICIT_BATCH)
    if strongly_typed:
        flags |= 1 << int(creation.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [_parser_error(parser.get_error(i)) for i in range(parser.num_errors)]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        first = errors[0] if errors else "no details"
        raise ModelError(f"{onnx_path}: TensorRT {trt.__version__} could not parse the ONNX "
                         f"model: {first}{more}; re-export it with `resin export`")
    inputs = [network.get_input(i).name for i in range(network.num_inputs)]
    if inputs != ["input"]:
        raise ModelError(f"{onnx_path}: expected one input tensor 'input', got {inputs}; "
                         "re-export it with `resin export`")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * 2**30))
    config.builder_optimization_level = int(optimization_level)
    opt_profile = builder.create_optimization_profile()
    opt_profile.set_shape("input", profile["min"], profile["opt"], profile["max"])
    if config.add_optimization_profile(opt_profile) < 0:
        raise UsageError(f"TensorRT refused the tile profile min {_fmt(profile['min'][2:])}, "
                         f"opt {_fmt(profile['opt'][2:])}, max {_fmt(profile['max'][2:])}; "
                         "check --min-tile, --tile and --max-tile")
    if fp16_flag:
        config.set_flag(trt.BuilderFlag.FP16)
    if version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if hardware_compatible:
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS
    cache_path = Path(timing_cache) if timing_cache is not None else None
    if cache_path is not None:
        _load_timing_cache(config, cache_path)

    _log.log(f"building a TensorRT {trt.__version__} engine on {gpu_name} for tiles "
             f"{_fmt(profile['min'][2:])} .. {_fmt(profile['max'][2:])} (opt "
             f"{_fmt(profile['opt'][2:])}; this can take minutes) ...")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        why = logger.errors[-1] if logger.errors else "no details"
        raise BackendError(f"TensorRT could not build an engine from {onnx_path} ({why}); try a "
                           "smaller --max-tile or a larger --workspace")
    if cache_path is not None:
        atomic_write(cache_path, _buffer_writer(config.get_timing_cache().serialize()))

    sidecar = {
        **meta.model_dump(mode="json"),
        "tensorrt": {
            "version": str(trt.__version__),
            "gpu_name": gpu_name,
            "compute_capability": [cc[0], cc[1]],
            "profile": {k: list(v) for k, v in profile.items()},
            "fp16": bool(onnx_fp16 or fp16_flag),
            "version_compatible": bool(version_compatible),
            "hardware_compatible": bool(hardware_compatible),
            "host_code": bool(version_compatible),
            "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "onnx_sha256": file_sha256(onnx_path),
            "plan_sha256": hashlib.sha256(memoryview(serialized)).hexdigest(),
        },
    }
    make_parent(plan_path)
    # the sidecar lands first: a plan never appears without the record that describes it
    atomic_write(sidecar_path, json.dumps(sidecar, indent=2))
    atomic_write(plan_path, _buffer_writer(serialized))
    _log.log(f"wrote {plan_path} and {sidecar_path.name}")
    return sidecar


def check_host_code_flags(version_compatible: bool, allow_host_code: bool) -> None:
    """Host code in a plan only when asked for by name: a version-compatible plan embeds it."""
    if version_compatible and not allow_host_code:
        raise UsageError("--version-compatible puts TensorRT's lean runtime into the plan, host "
                         "code that runs in every process that loads it; pass "
                         "--allow-plan-host-code as well to build such a plan")
    if allow_host_code and not version_compatible:
        raise UsageError("--allow-plan-host-code only applies with --version-compatible")


def _fp16_flag_usable(trt: Any, version: tuple[int, int, int]) -> bool:
    """The FP16 builder flag exists and is not deprecated (weak typing: TensorRT < 10.12)."""
    return hasattr(trt.BuilderFlag, "FP16") and version < _WEAK_TYPING_DEPRECATED


def _parser_error(error: Any) -> str:
    text = error.desc() if hasattr(error, "desc") else str(error)
    return " ".join(str(text).split()).rstrip(".")


def _load_timing_cache(config: Any, path: Path) -> None:
    data = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(data)
    if config.set_timing_cache(cache, False):
        if data:
            _log.log(f"using the timing cache {path}")
        return
    # a cache from another GPU or TensorRT version: start a fresh one rather than fail
    _log.log(f"the timing cache {path} does not match this GPU or TensorRT; starting a new one")
    config.set_timing_cache(config.create_timing_cache(b""), False)


# --- small helpers ------------------------------------------------------------------------

def _buffer_writer(buffer: Any) -> Callable[[BinaryIO], None]:
    """Writes a TensorRT host-memory buffer to a file without copying it into bytes first."""
    def write(f: BinaryIO) -> None:
        f.write(memoryview(buffer))
    return write


def _fmt(zyx: Sequence[int]) -> str:
    return " ".join(str(int(v)) for v in zyx)
