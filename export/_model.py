"""``resin export``'s whole flow: checkpoint -> ONNX (parity-checked) -> TensorRT plan and/or
bioimage.io package. The CLI only parses flags and calls :func:`export_model`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resin import _log
from resin.errors import OutputExistsError, UsageError
from resin.io._common import check_folder
from resin.metadata import ModelMetadata, default_tile, degrader_path


@dataclass
class ExportResult:
    """What :func:`export_model` wrote."""

    onnx: Path
    metadata: ModelMetadata
    plan: Path | None = None
    plan_record: dict | None = None
    bioimageio: Path | None = None
    degrader: Path | None = None
    """D beside F (``STEM.degrader.onnx``); None when the checkpoint has no D."""
    files: list[Path] = field(default_factory=list)


def _sidecar(plan: Path | None) -> Path | None:
    return None if plan is None else Path(str(plan) + ".json")


def _refuse_existing(paths: Sequence[Path | None], overwrite: bool) -> None:
    """Fail before any work if an output exists (nothing is overwritten without --overwrite)."""
    for path in paths:
        if path is None or overwrite or not path.exists():
            continue
        if path.is_dir() and not any(path.iterdir()):
            continue
        raise OutputExistsError(f"{path} already exists; pass --overwrite to replace it")


def _check_profile(ckpt: dict, meta: ModelMetadata, tile: Sequence[int],
                   min_tile: Sequence[int] | None, max_tile: Sequence[int] | None) -> None:
    """The TensorRT profile and tensor-size limit, judged before the export writes anything."""
    from resin.export._tensorrt import check_tensor_limit, optimization_profile

    profile = optimization_profile(tile, meta.size_multiple, min_tile, max_tile)
    gen = ckpt["config"].get("generator", {})
    if gen.get("features"):
        check_tensor_limit(gen["features"], profile["max"][2:], meta.scale,
                           in_channels=int(gen.get("in_channels", 1)),
                           size_multiple=meta.size_multiple,
                           what="--max-tile" if max_tile is not None else "--tile")


def export_model(
    checkpoint: str | os.PathLike,
    onnx_out: str | os.PathLike | None = None,
    *,
    opset: int | None = None,
    fp16: bool = False,
    tile: Sequence[int] | None = None,
    static: bool = False,
    exporter: str = "auto",
    trt: bool = False,
    plan: str | os.PathLike | None = None,
    min_tile: Sequence[int] | None = None,
    max_tile: Sequence[int] | None = None,
    workspace_gib: float = 4.0,
    timing_cache: str | os.PathLike | None = None,
    optimization_level: int = 3,
    version_compatible: bool = False,
    hardware_compatible: bool = False,
    allow_plan_host_code: bool = False,
    bioimageio: str | os.PathLike | None = None,
    authors: Sequence[str] | None = None,
    overwrite: bool = False,
    halo_tolerance: float | None = None,
) -> ExportResult:
    """Export ``checkpoint``'s generator to ONNX, then optionally to TensorRT and bioimage.io.

    Every output path and ``opset`` are checked before any work starts; TensorRT's presence
    too (when ``trt``), so a machine without it fails in a second with exit 2, not after
    the export.
    ``tile`` is the TensorRT profile's opt shape (default: the runtime's default tile for
    this model's tolerant halo, measured at ``halo_tolerance`` of the output range) and, with ``static``, the ONNX model's fixed input shape.
    ``version_compatible`` needs ``allow_plan_host_code``: such a plan carries TensorRT's
    lean runtime, host code that runs in every process that loads the plan.
    """
    from resin.export._onnx import check_opset, export_onnx, partial_path

    from resin._optional import require

    checkpoint = Path(checkpoint)
    onnx_path = Path(onnx_out) if onnx_out is not None else checkpoint.with_suffix(".onnx")
    if onnx_path.suffix.lower() != ".onnx":
        raise UsageError(f"-o {onnx_path}: the ONNX model's name must end in .onnx")
    if static and tile is None:
        raise UsageError("--static needs --tile Z Y X (the fixed input shape)")
    if halo_tolerance is not None and not 0.0 < halo_tolerance < 1.0:
        raise UsageError(f"--halo-tolerance must be a fraction of the output range in (0, 1), "
                         f"got {halo_tolerance}")
    if not trt:
        for name, value in (("--plan", plan), ("--max-tile", max_tile), ("--min-tile", min_tile),
                            ("--timing-cache", timing_cache)):
            if value is not None:
                raise UsageError(f"{name} only applies with --trt")
    if not trt and (version_compatible or hardware_compatible or allow_plan_host_code):
        raise UsageError("--version-compatible, --hardware-compatible and --allow-plan-host-code "
                         "only apply with --trt")
    plan_path = None
    if trt:
        from resin.export._tensorrt import check_host_code_flags

        check_host_code_flags(version_compatible, allow_plan_host_code)
        plan_path = Path(plan) if plan is not None else onnx_path.with_suffix(".plan")
        if plan_path.resolve() == onnx_path.resolve():
            raise UsageError("--plan must differ from the ONNX output")
    bio_path = Path(bioimageio) if bioimageio is not None else None
    if bio_path is not None and fp16:
        raise UsageError("--bioimageio needs a float32 model (bioimage.io has no float16 "
                         "tensors); export the package without --fp16")
    if authors and bio_path is None:
        raise UsageError("--author only applies with --bioimageio")
    if static and (min_tile is not None or max_tile is not None):
        raise UsageError("--static takes exactly --tile; --min-tile and --max-tile do not apply")
    if static and bio_path is not None:
        raise UsageError("--bioimageio packages a dynamic-shape model; export it without --static")
    check_opset(opset, exporter)
    _refuse_existing([onnx_path, plan_path, _sidecar(plan_path), bio_path], overwrite)
    for out in (onnx_path, plan_path, bio_path):
        if out is not None:
            check_folder(Path(os.path.abspath(out)).parent)
    require("onnxruntime", "the parity check of every export", extra="cpu")
    from resin.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    from resin.export._degrader import has_degrader

    degrader_out = degrader_path(onnx_path) if has_degrader(ckpt) else None
    _refuse_existing([degrader_out], overwrite)
    halo: Any = None
    if static:
        min_tile = max_tile = tile  # a fixed-shape network: the profile is that one shape
    if trt:
        from resin.export._halo import HALO_TOLERANCE, Halos
        from resin.export._onnx import load_generator
        from resin.export._tensorrt import check_build_flags
        from resin.export.metadata import metadata_from_checkpoint

        check_build_flags(workspace_gib, optimization_level)
        # the halo decides the default tile, so measure it now (export reuses it) and check
        # the whole profile before anything is written
        _, generator = load_generator(ckpt)
        early = metadata_from_checkpoint(ckpt, generator, halo_tolerance=halo_tolerance)
        halo = Halos(early.receptive_field, early.halo, early.tiling_halo(),
                     early.halo_tolerance or HALO_TOLERANCE)
        if tile is None:
            tile = default_tile(early.tiling_halo(), early.size_multiple)
        _check_profile(ckpt, early, tile, min_tile, max_tile)
        require("tensorrt", "building a TensorRT engine (--trt)", extra="gpu")
    if bio_path is not None:
        require("bioimageio.spec", "writing a bioimage.io package (--bioimageio)", extra="export")

    degrader_tmp = None if degrader_out is None else partial_path(degrader_out)
    try:
        if degrader_tmp is not None:  # D first, so that a failed D leaves no F behind
            from resin.export._degrader import build_degrader_onnx
            from resin.export._onnx import load_generator
            from resin.export.metadata import weights_sha256

            _, generator = load_generator(ckpt)
            build_degrader_onnx(ckpt, degrader_tmp, weights_sha256(generator.state_dict()),
                                opset=opset, exporter=exporter)
        meta = export_onnx(ckpt, onnx_path, opset=opset, fp16=fp16,
                           static_tile=tile if static else None, exporter=exporter,
                           overwrite=overwrite, halo=halo, halo_tolerance=halo_tolerance)
        if degrader_tmp is not None and degrader_out is not None:
            os.replace(degrader_tmp, degrader_out)
            _log.log(f"wrote {degrader_out} (D, for resin-run --report)")
    finally:
        if degrader_tmp is not None:
            degrader_tmp.unlink(missing_ok=True)
    if degrader_out is None:
        _log.log("the checkpoint has no D (a slim copy?): no degrader beside the model, so "
                 "resin-run --report cannot measure its consistency")
    result = ExportResult(onnx=onnx_path, metadata=meta, degrader=degrader_out,
                          files=[onnx_path] + ([degrader_out] if degrader_out else []))
    if trt:
        from resin.export._tensorrt import build_engine

        assert plan_path is not None and tile is not None
        _log.log(f"building the TensorRT engine: opt tile {tuple(tile)}")
        result.plan_record = build_engine(
            onnx_path, plan_path, tile=tile, min_tile=min_tile, max_tile=max_tile,
            workspace_gib=workspace_gib, timing_cache=timing_cache, fp16=fp16,
            optimization_level=optimization_level, version_compatible=version_compatible,
            hardware_compatible=hardware_compatible, allow_host_code=allow_plan_host_code,
            overwrite=overwrite)
        result.plan = plan_path
        result.files += [plan_path, Path(str(plan_path) + ".json")]
    if bio_path is not None:
        from resin.export._bioimageio import write_bioimageio

        rdf = write_bioimageio(checkpoint, onnx_path, bio_path, plan=result.plan,
                               authors=authors, overwrite=overwrite)
        result.bioimageio = rdf
        result.files.append(rdf)
    return result
