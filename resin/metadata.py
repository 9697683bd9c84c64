"""The model artifact's metadata record (docs/architecture.md, "The model artifact").

One JSON record travels with every exported model: ONNX ``metadata_props`` key
``resin``, and ``<plan>.json`` beside a TensorRT plan. Pure Python (no torch, no onnx):
the runtime reads it to plan tiles, normalize, and refuse incompatible models.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from resin._version import __version__
from resin.errors import ModelError

#: default core (kept part) of a tile per axis, before rounding to the size multiple
DEFAULT_CORE = (48, 96, 96)


def default_tile(halo: tuple[int, ...], size_multiple: int,
                 overlap: int = 0) -> tuple[int, int, int]:
    """A tile of about :data:`DEFAULT_CORE` plus the halo: the opt shape of a TensorRT
    plan's optimization profile, which ``resin-run`` feeds that plan without ``--tile`` or
    ``--memory`` (other engines get their tile from the memory budget), and the tile with
    ``--overlap``. Export and runtime share it here, in the torch-free artifact module,
    so that the engine is tuned for the tile the runtime feeds it without export importing
    the runtime.
    """
    m = int(size_multiple)
    z, y, x = (-(-(DEFAULT_CORE[i] + 2 * int(halo[i]) + overlap) // m) * m for i in range(3))
    return z, y, x


def grid_aligned_halo(tolerant: Sequence[int], exact: Sequence[int],
                      size_multiple: int) -> tuple[int, int, int]:
    """``tolerant`` raised per axis to the nearest value below ``exact`` by a multiple of
    ``size_multiple``. Tiles start on multiples of the size multiple from ``-halo``, so a
    halo that differs from the exact one by such a multiple keeps the pooling grid of
    one-tile inference; any other shifts the grid, and a max-pooling network's output
    changes with the grid's phase by far more than any truncation.
    """
    m = int(size_multiple)
    z, y, x = (int(h) - m * max(0, (int(h) - int(t)) // m)
               for t, h in zip(tolerant, exact, strict=True))
    return z, y, x


_R = TypeVar("_R", bound=BaseModel)

#: bump when a field changes meaning; the runtime refuses newer majors
FORMAT_VERSION = 1
METADATA_KEY = "resin"


class NormalizationRecord(BaseModel):
    """How intensities were normalized in training (re-computed per volume at inference)."""

    model_config = ConfigDict(extra="forbid")
    low_percentile: float = Field(ge=0.0, lt=50.0)
    """Lower percentile mapped to 0."""
    high_percentile: float = Field(gt=50.0, le=100.0)
    """Upper percentile mapped to 1."""
    train_low: float | None = None
    """The training volume's value at the low percentile."""
    train_high: float | None = None
    """The training volume's value at the high percentile."""


class ModelMetadata(BaseModel):
    """Everything the runtime needs to know about an exported generator."""

    model_config = ConfigDict(extra="allow")
    format_version: int = FORMAT_VERSION
    """Version of this record's layout."""
    resin_version: str = __version__
    """resin version that exported the model."""
    axes: str = "zyx"
    """Spatial axis order of the network input and output (N and C come first)."""
    scale: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Output voxels per input voxel along z, y, x."""
    axial_angle_deg: float = 0.0
    """Angle of the PSF's long axis from z, rotated in the z-x plane."""
    axial_vector: tuple[float, float, float] = (1.0, 0.0, 0.0)
    """Unit vector (z, y, x) of the PSF's long axis."""
    receptive_field: tuple[int, int, int] = Field(default=(1, 1, 1))
    """Receptive field (voxels) measured by impulse response."""
    halo: tuple[int, int, int] = Field(default=(0, 0, 0))
    """Context (voxels per side) a tile needs so its centre equals full-volume inference."""
    halo_tolerant: tuple[int, int, int] | None = None
    """Smallest context (voxels per side) whose truncation changes the output by at most
    ``halo_tolerance`` of the output range (None: not measured; tiles then use ``halo``)."""
    halo_tolerance: float | None = Field(default=None, gt=0.0, lt=1.0)
    """Largest change (fraction of the output range) ``halo_tolerant`` allows."""
    size_multiple: int = Field(default=4, ge=1)
    """Every input side must be a multiple of this."""
    min_tile: tuple[int, int, int] | None = None
    """Smallest input tile the model accepts (None: size_multiple)."""
    input_dtype: str = "float32"
    """Element type of the network input."""
    output_dtype: str = "float32"
    """Element type of the network output."""
    voxel_size: tuple[float, float, float] | None = None
    """Training data voxel size (z, y, x) in micrometres, if known."""
    normalization: NormalizationRecord
    """Percentile normalization used in training."""
    weights_sha256: str = ""
    """SHA-256 of the generator's weights (hex)."""
    generator: dict | None = None
    """The generator's architecture config."""

    @field_validator("axes")
    @classmethod
    def _zyx(cls, v: str) -> str:
        if v != "zyx":
            raise ValueError(f"axes must be 'zyx', got {v!r}")
        return v

    @field_validator("axial_vector")
    @classmethod
    def _unit(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        n = math.sqrt(sum(c * c for c in v))
        if not 0.99 < n < 1.01:
            raise ValueError("axial_vector must be a unit vector")
        return v

    def tiling_halo(self, exact: bool = False) -> tuple[int, int, int]:
        """The halo tiles get: the tolerant one where it was measured, else (or with
        ``exact``) the exact one."""
        if exact or self.halo_tolerant is None:
            return self.halo
        return grid_aligned_halo(self.halo_tolerant, self.halo, self.size_multiple)

    def tile_range(self) -> tuple[tuple[int, int, int], tuple[int, int, int],
                                  tuple[int, int, int]] | None:
        """(smallest, preferred, largest) input tile this model accepts, if it is bounded.

        A ``--static`` export takes exactly one shape; a TensorRT plan takes the range of
        its optimization profile (``tensorrt.profile`` in the sidecar) and runs fastest at
        its opt shape. None: any multiple of ``size_multiple``.
        """
        extra = self.model_extra or {}
        profile = (extra.get("tensorrt") or {}).get("profile")
        if profile:
            lo, opt, hi = (tuple(int(v) for v in profile[k][-3:]) for k in ("min", "opt", "max"))
            return lo, opt, hi  # type: ignore[return-value]
        static = (extra.get("export") or {}).get("static_tile")
        if static:
            t = tuple(int(v) for v in static)
            return t, t, t  # type: ignore[return-value]
        return None

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    @classmethod
    def from_json(cls, text: str, source: str = "model") -> ModelMetadata:
        """Parse and check a record; any problem is a :class:`ModelError` saying why."""
        return _parse_record(cls, text, source, "resin metadata")


def _parse_record(cls: type[_R], text: str, source: str, what: str) -> _R:
    """``text`` as a ``cls`` record; bad JSON, a newer format or a bad field is a
    :class:`ModelError` naming ``source`` and ``what``."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelError(f"{source}: {what} is not valid JSON ({exc.msg})") from exc
    if not isinstance(raw, dict):
        raise ModelError(f"{source}: {what} is not a JSON object")
    version = raw.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelError(
            f"{source}: {what} format {version!r} is newer than this resin "
            f"({__version__}, format {FORMAT_VERSION}) understands; upgrade resin"
        )
    try:
        return cls.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ModelError(f"{source}: {what} field {where!r}: {first['msg']}") from exc


def axial_vector_from_angle(angle_deg: float) -> tuple[float, float, float]:
    """Unit (z, y, x) vector of an axis rotated ``angle_deg`` from z towards x."""
    a = math.radians(angle_deg)
    return (math.cos(a), 0.0, math.sin(a))


#: ONNX ``metadata_props`` key of the degradation network D's record
DEGRADER_KEY = "resin-degrader"
#: D is exported beside F: ``MODEL.onnx`` -> ``MODEL.degrader.onnx``
DEGRADER_SUFFIX = ".degrader.onnx"


def degrader_path(model: str | os.PathLike) -> Path:
    """Where D lies beside the model ``model`` (``.onnx`` or ``.plan``): ``STEM.degrader.onnx``."""
    return Path(model).with_suffix(DEGRADER_SUFFIX)


def degrader_halo(config: dict | None) -> tuple[int, int, int]:
    """Voxels per side D reads around each output voxel, from its config (a
    :class:`resin.config.DegraderConfig` dict): ``kernel_size // 2`` for the 'kernel' kind,
    the sum of ``k // 2`` over its convolutions otherwise. Exact: D's padding is inside it,
    so a block with this much real context per side gives the whole volume's D there."""
    from resin.config import DegraderConfig

    cfg = DegraderConfig.model_validate(config or {})
    h = cfg.kernel_size // 2 if cfg.kind == "kernel" else sum(k // 2 for k in cfg.kernel_sizes)
    return (h, h, h)


class DegraderMetadata(BaseModel):
    """The record of D exported beside F (ONNX key :data:`DEGRADER_KEY`).

    D maps F's normalized output to the normalized input (both in units of the volume's
    levels at ``normalization``'s percentiles) on F's output grid: for a ``z_step`` K
    model, the input linearly interpolated by K along z (:func:`resin.data.lerp_planes`),
    as training compared them. Input ``"input"`` and output ``"output"``: float32
    ``[N, 1, Z, Y, X]``, any size.
    """

    model_config = ConfigDict(extra="allow")
    format_version: int = FORMAT_VERSION
    resin_version: str = __version__
    generator_sha256: str
    """``weights_sha256`` of the F this D was trained with; the runtime uses D only with it."""
    weights_sha256: str
    """SHA-256 of D's weights (the same rule as F's)."""
    kind: str
    """D's kind (resin.config.DegraderConfig.kind)."""
    receptive_field: tuple[int, int, int]
    halo: tuple[int, int, int]
    """Real context per side (voxels) a block needs for D to equal the whole volume's D."""
    z_step: int = Field(default=1, ge=1)
    normalization: NormalizationRecord

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    @classmethod
    def from_json(cls, text: str, source: str = "degrader") -> DegraderMetadata:
        """Parse and check; any problem is a :class:`ModelError` saying why."""
        return _parse_record(cls, text, source, "D's record")
