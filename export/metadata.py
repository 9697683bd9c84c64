"""Build and read the model artifact's metadata record (:class:`resin.metadata.ModelMetadata`).

No torch or onnx at import: the runtime may import these helpers on a base install.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resin.errors import ModelError
from resin.metadata import (
    METADATA_KEY,
    ModelMetadata,
    NormalizationRecord,
    axial_vector_from_angle,
)

if TYPE_CHECKING:
    from resin.export._halo import Halos


def weights_sha256(state_dict: dict[str, Any]) -> str:
    """SHA-256 over the weights: name, dtype, shape and bytes of every tensor, in name order."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(repr(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _triple(value: Any, name: str) -> tuple[float, float, float]:
    try:
        z, y, x = (float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"checkpoint {name} must be three numbers (z, y, x), got {value!r}") from exc
    return (z, y, x)


def metadata_from_checkpoint(
    ckpt: dict[str, Any],
    generator: Any,
    *,
    dtype: str = "float32",
    halo: Halos | None = None,
    halo_tolerance: float | None = None,
) -> ModelMetadata:
    """The metadata record of ``generator`` (rebuilt from ``ckpt``), with its exact and
    tolerant halos (:func:`resin.export.measure_halos`, at ``halo_tolerance``).

    ``halo`` may pass already measured halos to skip the measurement.
    """
    from resin.export._halo import HALO_TOLERANCE, measure_halos

    norm = ckpt.get("normalization")
    if not isinstance(norm, dict):
        raise ModelError("checkpoint has no normalization record; re-save it with `resin train`")
    try:
        normalization = NormalizationRecord.model_validate(norm)
    except Exception as exc:
        raise ModelError(f"checkpoint normalization record is invalid ({exc})") from exc
    size_multiple = int(getattr(generator, "size_multiple", 1))
    if halo is None:
        halo = measure_halos(generator, size_multiple, halo_tolerance or HALO_TOLERANCE,
                             (normalization.low_percentile, normalization.high_percentile))
    angle = float(ckpt.get("axial_angle_deg", 0.0) or 0.0)
    voxel = ckpt.get("voxel_size")
    gen_cfg = ckpt.get("config", {}).get("generator")
    if gen_cfg is None and hasattr(generator, "config"):
        gen_cfg = generator.config.model_dump()
    return ModelMetadata(
        scale=_triple(ckpt.get("scale", (1.0, 1.0, 1.0)), "scale"),
        axial_angle_deg=angle,
        axial_vector=axial_vector_from_angle(angle),
        receptive_field=halo.receptive_field,
        halo=halo.halo,
        halo_tolerant=halo.halo_tolerant,
        halo_tolerance=halo.halo_tolerance,
        size_multiple=size_multiple,
        min_tile=(size_multiple,) * 3,
        input_dtype=dtype,
        output_dtype=dtype,
        voxel_size=None if voxel is None else _triple(voxel, "voxel_size"),
        normalization=normalization,
        weights_sha256=weights_sha256(generator.state_dict()),
        generator=dict(gen_cfg) if gen_cfg is not None else None,
    )


def read_onnx_metadata(path: str | os.PathLike) -> ModelMetadata:
    """The record stored in an ONNX file, read with onnxruntime as the runtime does."""
    from resin._optional import require

    ort = require("onnxruntime", "reading an ONNX model's metadata", extra="cpu")
    path = Path(path)
    check_external_data(path)
    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ModelError(f"{path}: not a loadable ONNX model ({type(exc).__name__})") from exc
    text = sess.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    if text is None:
        raise ModelError(f"{path}: ONNX model has no resin metadata; export it with `resin export`")
    return ModelMetadata.from_json(text, source=str(path))


def check_external_data(path: str | os.PathLike) -> None:
    """Refuse an ONNX whose external-data paths leave the model's folder.

    A crafted model could otherwise make the loader read any file on the machine
    (``../../etc/...`` or an absolute path) into its weights.
    """
    from resin._optional import require

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such ONNX file")
    onnx = require("onnx", "checking an ONNX model's external data", extra="export")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ModelError(f"{path}: not a readable ONNX model ({type(exc).__name__})") from exc
    folder = path.resolve().parent
    tensors = list(model.graph.initializer)
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                tensors.append(attr.t)
    for tensor in tensors:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), None)
        if not location:
            raise ModelError(f"{path}: tensor {tensor.name!r} has external data without a location")
        target = (folder / location).resolve()
        if Path(location).is_absolute() or not target.is_relative_to(folder):
            raise ModelError(
                f"{path}: tensor {tensor.name!r} points outside the model's folder "
                f"({location!r}); refusing to load it"
            )
        if not target.is_file():
            raise ModelError(f"{path}: external data file {location!r} is missing")
