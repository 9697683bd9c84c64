"""Shared pieces of the volume readers and writers: dtype rules, units, regions, errors."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from resin.errors import (
    ChannelsError,
    ChooseOneError,
    OutputExistsError,
    TimePointsError,
    UsageError,
    VolumeError,
)

Region = tuple[slice, slice, slice]
VoxelSize = tuple[float, float, float]

#: dtypes read and written as they are
NATIVE_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))
#: dtypes read as float32: every value of these is exact in float32 except integers above
#: 2**24 (int32/uint32) and float64 precision/range, which a microscope never produces
FLOAT32_DTYPES = (
    np.dtype(np.int8), np.dtype(np.int16), np.dtype(np.int32), np.dtype(np.uint32),
    np.dtype(np.float16), np.dtype(np.float64),
)

#: micrometres per unit, for OME-NGFF (UDUNITS-2) names and the spellings ImageJ writes
_UM_PER_UNIT = {
    "angstrom": 1e-4, "attometer": 1e-12, "centimeter": 1e4, "decimeter": 1e5,
    "exameter": 1e24, "femtometer": 1e-9, "foot": 304800.0, "gigameter": 1e15,
    "hectometer": 1e8, "inch": 25400.0, "kilometer": 1e9, "megameter": 1e12, "meter": 1e6,
    "micrometer": 1.0, "mile": 1609344e3, "millimeter": 1e3, "nanometer": 1e-3,
    "parsec": 3.0856775814913673e22, "petameter": 1e21, "picometer": 1e-6,
    "terameter": 1e18, "yard": 914400.0, "yoctometer": 1e-18, "yottameter": 1e30,
    "zeptometer": 1e-15, "zettameter": 1e27,
    "um": 1.0, "µm": 1.0, "μm": 1.0, "micron": 1.0, "microns": 1.0, "nm": 1e-3, "mm": 1e3,
    "cm": 1e4, "m": 1e6, "å": 1e-4, "pm": 1e-6,
}


def um_per_unit(unit: str | None) -> float | None:
    """Micrometres in one ``unit``; None when the unit is unknown or not a length."""
    if unit is None:
        return None
    key = str(unit).strip().lower().replace("\\u00b5", "µ")
    return _UM_PER_UNIT.get(key)


def read_dtype(source: np.dtype, path: str) -> np.dtype:
    """The dtype ``read`` returns for data stored as ``source``, or VolumeError."""
    native = source.newbyteorder("=") if source.byteorder not in ("=", "|") else source
    if native in NATIVE_DTYPES:
        return native
    if native in FLOAT32_DTYPES:
        return np.dtype(np.float32)
    raise VolumeError(
        f"{path}: unsupported data type {source}; resin reads uint8, uint16 and float32 "
        "(int8/int16/int32/uint32/float16/float64 are read as float32): convert it first"
    )


def check_write_dtype(dtype: object) -> np.dtype:
    try:
        dt = np.dtype(dtype)  # type: ignore[call-overload]
    except TypeError as exc:
        raise UsageError(f"not a data type: {dtype!r}") from exc
    if dt not in NATIVE_DTYPES:
        raise VolumeError(f"cannot write {dt} volumes; resin writes uint8, uint16 or float32")
    return dt


def check_shape(shape: object) -> tuple[int, int, int]:
    try:
        dims = tuple(int(s) for s in shape)  # type: ignore[attr-defined]
    except TypeError as exc:
        raise UsageError(f"a volume shape is three integers (z, y, x), got {shape!r}") from exc
    if len(dims) != 3 or min(dims) < 1:
        raise UsageError(f"a volume shape is three positive integers (z, y, x), got {shape!r}")
    return dims[0], dims[1], dims[2]


def check_voxel_size(voxel_size: object) -> VoxelSize | None:
    if voxel_size is None:
        return None
    try:
        values = tuple(float(v) for v in voxel_size)  # type: ignore[attr-defined]
    except (TypeError, ValueError) as exc:
        raise UsageError(f"voxel_size is three numbers (z, y, x) in um, got {voxel_size!r}") from exc
    if len(values) != 3 or not all(np.isfinite(v) and v > 0 for v in values):
        raise UsageError(f"voxel_size is three positive numbers (z, y, x) in um, got {voxel_size!r}")
    return values[0], values[1], values[2]


def check_chunks(chunks: object, shape: tuple[int, int, int],
                 default: tuple[int, int, int]) -> tuple[int, int, int]:
    if chunks is None:
        chunks = default
    dims = check_shape(chunks)
    z, y, x = (min(c, s) for c, s in zip(dims, shape, strict=True))
    return z, y, x


def normalize_region(region: Region | None, shape: tuple[int, ...]) -> Region:
    """Three unit-step slices with concrete bounds inside ``shape``."""
    if region is None:
        return (slice(0, shape[0]), slice(0, shape[1]), slice(0, shape[2]))
    if not isinstance(region, tuple) or len(region) != 3 or not all(
        isinstance(s, slice) for s in region
    ):
        raise UsageError(f"a region is a tuple of three slices (z, y, x), got {region!r}")
    out = []
    for s, n in zip(region, shape, strict=True):
        start, stop, step = s.indices(n)
        if step != 1:
            raise UsageError(f"region slices must have step 1, got {region!r}")
        out.append(slice(start, max(start, stop)))
    return (out[0], out[1], out[2])


def region_shape(region: Region) -> tuple[int, int, int]:
    z, y, x = (int(s.stop) - int(s.start) for s in region)
    return z, y, x


def check_write_region(region: Region, array: np.ndarray, shape: tuple[int, int, int],
                       dtype: np.dtype, path: str) -> tuple[Region, np.ndarray]:
    """Validate a ``write(region, array)`` call; returns the region and the array to store."""
    if not isinstance(region, tuple) or len(region) != 3:
        raise UsageError(f"a region is a tuple of three slices (z, y, x), got {region!r}")
    for s, n in zip(region, shape, strict=True):
        if not isinstance(s, slice) or s.step not in (None, 1):
            raise UsageError(f"a region is three unit-step slices, got {region!r}")
        start = 0 if s.start is None else s.start
        stop = n if s.stop is None else s.stop
        if not 0 <= start <= stop <= n:
            raise UsageError(f"region {region!r} lies outside the volume of shape {shape}")
    region = normalize_region(region, shape)
    array = np.asarray(array)
    if array.shape != region_shape(region):
        raise UsageError(
            f"{path}: cannot write an array of shape {array.shape} into a region of shape "
            f"{region_shape(region)}"
        )
    if array.dtype != dtype:
        if not np.can_cast(array.dtype, dtype, casting="same_kind"):
            raise UsageError(f"{path}: cannot store {array.dtype} data in a {dtype} volume")
        array = array.astype(dtype)
    return region, array


def make_folder(folder: str | os.PathLike[str]) -> None:
    """Create an output folder (and its parents); one that cannot be made (a path through
    a file, no permission) is a usage error, not a traceback."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{folder}: cannot create the output folder "
                         f"({exc.strerror or exc})") from None


def check_folder(folder: str | os.PathLike[str]) -> None:
    """Refuse, before any work, an output folder that cannot be made or written into: a
    file stands where it or a folder above it would be, or the nearest existing folder is
    not writable (a read-only disk; :func:`make_folder` says the rest when it makes it)."""
    p = Path(folder)
    above = next((q for q in (p, *p.parents) if q.exists()), None)
    if above is None:
        return
    if not above.is_dir():
        raise UsageError(f"{folder}: cannot create the output folder ({above} is not a folder)")
    effective = os.access in os.supports_effective_ids  # the ids a write would use
    if not os.access(above, os.W_OK | os.X_OK, effective_ids=effective):
        what = "cannot write into" if above == p else "cannot create"
        raise UsageError(f"{folder}: {what} the output folder ({above} is not writable); "
                         "write elsewhere")


def missing_folders(folder: str | os.PathLike[str]) -> list[Path]:
    """The folders that making ``folder`` creates, innermost first, as absolute paths (a
    link counts as existing, even a dangling one): what a failed run that made them may
    remove again."""
    missing = []
    for p in (q := Path(os.path.abspath(folder)), *q.parents):
        if p.exists() or p.is_symlink():
            break
        missing.append(p)
    return missing


def make_parent(path: str | os.PathLike[str]) -> None:
    """Create the folder an output goes into (:func:`make_folder`)."""
    make_folder(Path(os.fspath(path).rstrip("/")).parent)


def prepare_output(path: str, overwrite: bool) -> None:
    """Refuse an existing output unless ``overwrite``; then remove it (only volumes)."""
    p = Path(path)
    if not (p.exists() or p.is_symlink()):
        return
    if not overwrite:
        raise OutputExistsError(f"{path} already exists; use --overwrite to replace it")
    if p.is_dir() and not p.is_symlink():
        if not any((p / name).exists() for name in ("zarr.json", ".zarray", ".zgroup")):
            raise OutputExistsError(
                f"{path} is a directory that is not a Zarr store; refusing to delete it"
            )
        shutil.rmtree(p)
    else:
        os.remove(p)


def size_on_disk(path: str) -> int:
    """Bytes used by a file or, for a directory store, all files under it."""
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    total = 0
    for root, _dirs, files in os.walk(p):
        for name in files:
            try:
                total += (Path(root) / name).stat().st_size
            except OSError:
                pass
    return total


def check_choice(path: str, count: int, value: int | None,
                 error: type[ChooseOneError]) -> int | None:
    """The channel (time point) to read from a file with ``count`` of them: ``value`` itself
    when there are several (``error`` when None), None when there is one (only 0 exists);
    VolumeError when it is out of range."""
    if value is not None and not 0 <= value < count:
        noun = error.noun.removesuffix("s")
        has = f"one {noun} (0)" if count == 1 else f"{count} {error.noun} (0 to {count - 1})"
        raise VolumeError(f"{path}: has no {noun} {value}; it has {has}")
    if count > 1 and value is None:
        raise error(path, count)
    return value if count > 1 else None


def chosen(reader: object) -> str:
    """What a format line adds for the time point and channel a reader reads, if the file
    has several: ", time point 2 of 40, channel 1 of 3"."""
    out = ""
    for noun, value, count in (("time point", "time", "time_points"),
                               ("channel", "channel", "channels")):
        if getattr(reader, value) is not None:
            out += f", {noun} {getattr(reader, value)} of {getattr(reader, count)}"
    return out


def check_channel(path: str, channels: int, channel: int | None) -> int | None:
    return check_choice(path, channels, channel, ChannelsError)


def check_time(path: str, time_points: int, time: int | None) -> int | None:
    return check_choice(path, time_points, time, TimePointsError)


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
