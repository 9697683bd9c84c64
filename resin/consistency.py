"""The consistency residual ``|D(F(y)) - y|`` of a finished run, for ``resin-run --report``.

D is found beside the model: ``MODEL.degrader.onnx`` (written by ``resin export``) for an
``.onnx`` or ``.plan`` model, run with ONNX Runtime on the CPU and used only when its record
names the same F (weights hash); a ``.pt`` checkpoint carries D itself (run with torch,
which a ``.pt`` model needs anyway). No torch, onnx or onnxruntime at import.

The residual is measured on the report's sampled block of the output (no more than
``side`` voxels per input axis): F(y) is read from the output with D's halo of real
context per side (clipped at the volume's faces, where D pads as it does on the whole
volume), so D there equals D run on the whole output; y is the input normalized with the
run's levels and, for a ``--z-step K`` model, interpolated by K along z as training did
(:func:`resin.data.lerp_planes`; the K - 1 planes after the last one repeat it, as the
runtime's face padding shows them to F). Both are in units of the run's normalized range, which
is what D was trained on. The output was cast to its dtype, so for an integer output
F(y) is known to half a grey level.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from resin.metadata import DEGRADER_KEY, DegraderMetadata, degrader_halo, degrader_path

if TYPE_CHECKING:
    from resin.io import VolumeReader


@dataclass
class LoadedDegrader:
    """D ready to run on a normalized (Z, Y, X) float32 block (same shape out)."""

    run: Callable[[np.ndarray], np.ndarray]
    halo: tuple[int, int, int]
    z_step: int
    source: str


def _onnx_degrader(path: Path, generator_sha256: str) -> LoadedDegrader | str:
    from resin._optional import require

    ort = require("onnxruntime", "running D for the consistency report", extra="cpu")
    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - a report must never fail a finished run
        return f"warning: {path} is not a loadable ONNX model ({type(exc).__name__}); " \
               "consistency not measured"
    text = sess.get_modelmeta().custom_metadata_map.get(DEGRADER_KEY)
    if text is None:
        return f"warning: {path} has no resin D record; consistency not measured"
    meta = DegraderMetadata.from_json(text, source=str(path))
    if meta.generator_sha256 != generator_sha256:
        return (f"warning: {path} was exported with another F (weights "
                f"{meta.generator_sha256[:12]}, the model's are {generator_sha256[:12]}); "
                "consistency not measured")

    def run(block: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(block, dtype=np.float32)[None, None]
        return sess.run(["output"], {"input": batch})[0][0, 0]

    return LoadedDegrader(run, meta.halo, meta.z_step, str(path))


def _checkpoint_degrader(path: Path) -> LoadedDegrader | str:
    from resin.checkpoint import build_degrader, load_checkpoint, z_step_of

    ckpt = load_checkpoint(path)
    if not ckpt.get("degrader"):
        return (f"{path} carries no D (a slim copy for inference): consistency |D(F(y)) - y| "
                "is measured at the end of `resin train` (MODEL.report.*)")
    import torch

    net = build_degrader(ckpt)

    def run(block: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            t = torch.from_numpy(np.ascontiguousarray(block, dtype=np.float32))[None, None]
            return net(t)[0, 0].numpy()

    return LoadedDegrader(run, degrader_halo(ckpt["config"].get("degrader")), z_step_of(ckpt),
                          str(path))


def open_degrader(model: str | os.PathLike, generator_sha256: str) -> LoadedDegrader | str:
    """D of ``model`` (F's weights hash ``generator_sha256``), or one line saying why there
    is none: no sidecar (an older export, a bioimage.io package, a plan elsewhere), a
    sidecar of another F, a checkpoint without D."""
    model = Path(model)
    if model.suffix.lower() == ".pt":
        return _checkpoint_degrader(model)
    side = degrader_path(model)
    if not side.is_file():
        return (f"no D beside the model ({side.name}; exports before D was exported, and "
                "bioimage.io packages, carry F only): consistency |D(F(y)) - y| is measured "
                "at the end of `resin train` (MODEL.report.*)")
    return _onnx_degrader(side, generator_sha256)


@dataclass
class Consistency:
    """What :func:`consistency_on_files` measured, on the output grid."""

    raw: np.ndarray
    """y, normalized (and z-interpolated for a z-step model)."""
    degraded: np.ndarray
    """D(F(y)) on the same block."""
    region: tuple[tuple[int, int], ...]
    """The output region (start, stop) per axis."""
    enhanced: np.ndarray | None = None
    """F(y) on the same block, normalized alike."""

    def record(self, source: str, halo: tuple[int, int, int]) -> dict[str, Any]:
        """The JSON-ready description the report carries."""
        return {"degrader": source, "region": [list(r) for r in self.region],
                "halo": list(halo),
                "units": "the run's normalized range (its levels at the model's percentiles)"}


def consistency_on_files(input: str | os.PathLike, output: str | os.PathLike,
                         degrader: LoadedDegrader, low: float, high: float,
                         region_in: tuple[slice, slice, slice],
                         region_out: tuple[slice, slice, slice],
                         channel: int | None = None, time: int | None = None) -> Consistency:
    """:func:`consistency_on_readers` on the two files (``channel`` / ``time`` of an input
    with several)."""
    from resin.io import open_volume

    with open_volume(input, channel, time) as src, open_volume(output) as dst:
        return consistency_on_readers(src, dst, degrader, low, high, region_in, region_out)


def consistency_on_readers(src: VolumeReader, dst: VolumeReader, degrader: LoadedDegrader,
                           low: float, high: float, region_in: tuple[slice, slice, slice],
                           region_out: tuple[slice, slice, slice]) -> Consistency:
    """y and D(F(y)) on ``region_out`` of the output ``dst`` (``region_in`` of the input
    ``src``), both normalized with the run's levels ``low``/``high``; reads only that
    region, D's halo around it and, for a z-step model, one more input plane."""
    from resin.data import lerp_planes
    from resin.errors import ModelError
    from resin.runtime.normalize import unit_range
    from resin.runtime.planner import face_indices

    k = int(degrader.z_step)
    top = max(float(high), float(low) + 1e-12)  # the run's levels; never an empty range
    want = (src.shape[0] * k, src.shape[1], src.shape[2])
    if tuple(dst.shape) != want:
        raise ModelError(f"the output's shape {tuple(dst.shape)} is not the input's on D's "
                         f"grid {want} (z-step {k})")
    oz, oy, ox = (slice(max(0, r.start - h), min(n, r.stop + h))
                  for r, h, n in zip(region_out, degrader.halo, dst.shape, strict=True))
    outer = (oz, oy, ox)
    x = unit_range(dst.read(outer), low, top)
    inner = tuple(slice(r.start - o.start, r.stop - o.start)
                  for r, o in zip(region_out, outer, strict=True))
    degraded = np.asarray(degrader.run(x), dtype=np.float32)[inner]
    # F saw the input at t = j / K; past the last plane, that plane (the runtime pads so)
    t = np.arange(region_out[0].start, region_out[0].stop) / k
    z_lo = int(np.floor(t[0]))
    count = int(np.floor(t[-1])) + (2 if k > 1 else 1) - z_lo
    planes = face_indices(z_lo, count, src.shape[0])
    a, b = int(planes.min()), int(planes.max()) + 1
    raw = np.asarray(src.read((slice(a, b), region_in[1], region_in[2])))[planes - a]
    y = unit_range(raw, low, top)  # as the runtime fed it to F
    if k > 1:
        y = lerp_planes(y, t - z_lo)
    return Consistency(y, degraded, tuple((r.start, r.stop) for r in region_out),
                       np.asarray(x[inner], dtype=np.float32))
