"""Volume I/O: TIFF, Zarr v2/v3 and OME-Zarr 0.4/0.5 read and written, HDF5 (plain, Imaris,
BigDataViewer) and folders of TIFF planes read, region by region.

Contract used by every command (arrays are ZYX; voxel sizes are (z, y, x) micrometres):

- ``open_volume(path, channel=None, time=None) -> VolumeReader``: ``path, shape, dtype,
  voxel_size, chunks, format, attrs, channels, channel, time_points, time``,
  ``read(region)``, ``close()``; a context manager; never loads the whole volume. A
  multi-channel file or a time series is read one channel / time point at a time:
  ``channel`` / ``time`` picks it (ChannelsError / TimePointsError, VolumeErrors, without).
- ``read_volume(path, channel=None, time=None) -> ndarray`` (whole volume, for small data
  and tests).
- ``create_volume(path, shape, dtype, voxel_size=None, chunks=None, overwrite=False,
  attrs=None, shards=None, resume=False, levels=1) -> VolumeWriter`` with
  ``write(region, array)``, ``flush(region)``, ``close()``, ``abandon()`` (stop, keep the
  partial output for ``resume=True``; what leaving a ``with`` block by an exception does),
  ``chunks``; a context manager. Every output is built at ``<name>.partial`` and renamed
  on a clean close; ``.ome.zarr`` is OME-Zarr 0.5, other ``.zarr`` a plain Zarr v3 array.
- ``write_volume(path, array, voxel_size=None, overwrite=False, attrs=None)``.
- ``volume_format(path) -> "tiff" | "zarr" | "hdf5" | "tiffseq"``; ``output_format(path)``
  the same for an output, refusing the read-only formats: HDF5 (a plain dataset, Imaris
  ``.ims``, BigDataViewer) and a folder (or glob pattern) of 2-D TIFF planes.

Data types: uint8, uint16 and float32 are read and written as they are; int8, int16,
int32, uint32, float16 and float64 are read as float32; anything else (bool, int64,
complex, ...) is refused. 4D/5D data is read as ZYX: singleton axes squeezed, one channel
and time point of a file with several. Every bad input is a
:class:`resin.errors.VolumeError` (exit 2) with one sentence.

Threads: ``read`` may be called concurrently from several threads (a read-ahead thread
beside the main one); ``write`` may be called concurrently for regions that do not share
a writer chunk (``writer.chunks``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from resin.errors import VolumeError
from resin.io._common import (
    FLOAT32_DTYPES,
    NATIVE_DTYPES,
    Region,
    VoxelSize,
    size_on_disk,
)
from resin.io._info import format_bytes, format_info, volume_info

SUPPORTED_DTYPES = NATIVE_DTYPES


class VolumeReader(Protocol):
    path: str
    shape: tuple[int, int, int]
    channels: int
    channel: int | None
    time_points: int
    time: int | None
    dtype: np.dtype
    voxel_size: VoxelSize | None
    chunks: tuple[int, int, int]
    format: str
    attrs: dict[str, Any]

    def read(self, region: Region | None = None) -> np.ndarray: ...
    def close(self) -> None: ...
    def __enter__(self) -> VolumeReader: ...
    def __exit__(self, *exc: object) -> None: ...


class VolumeWriter(Protocol):
    path: str
    shape: tuple[int, int, int]
    dtype: np.dtype
    voxel_size: VoxelSize | None
    chunks: tuple[int, int, int]

    def write(self, region: Region, array: np.ndarray) -> None: ...
    def flush(self, region: Region) -> None: ...
    def close(self) -> None: ...
    def abandon(self) -> None: ...
    def __enter__(self) -> VolumeWriter: ...
    def __exit__(self, exc_type: object, exc: object, tb: object, /) -> None: ...


def volume_format(path: str | os.PathLike[str]) -> str:
    """'tiff', 'zarr', or (read only) 'hdf5' or 'tiffseq' (a folder of 2-D TIFF planes, or
    a glob pattern naming them) from the path's suffix (or an existing Zarr store's
    metadata); an unfinished output's ``.partial`` suffix is looked through."""
    from resin.io._hdf5 import is_hdf5
    from resin.io._tiffseq import holds_planes, is_pattern

    name = str(path).rstrip("/").lower().removesuffix(".partial")
    if is_pattern(str(path)):
        return "tiffseq"
    if name.endswith((".tif", ".tiff")):
        return "tiff"
    if name.endswith(".zarr") or ".zarr/" in name:
        return "zarr"
    p = Path(path)
    if p.is_dir() and any((p / m).exists() for m in ("zarr.json", ".zarray", ".zgroup")):
        return "zarr"
    if is_hdf5(str(path)):
        return "hdf5"
    if holds_planes(str(path)):
        return "tiffseq"
    raise VolumeError(f"{path}: unknown volume format; use a .tif/.tiff, .zarr/.ome.zarr or "
                      "(to read) .h5/.ims path, or a folder of 2-D TIFF planes")


def output_format(path: str | os.PathLike[str]) -> str:
    """:func:`volume_format` of an output: 'tiff' or 'zarr' (HDF5 and plane folders are
    read, not written)."""
    from resin.errors import UsageError

    if any(c in os.path.basename(str(path).rstrip("/")) for c in "*?"):
        raise UsageError(f"{path}: an output names one file or store, not a pattern")
    fmt = volume_format(path)
    if fmt in ("hdf5", "tiffseq"):
        what = "HDF5" if fmt == "hdf5" else "folders of TIFF planes"
        raise UsageError(f"{path}: resin reads {what} but writes TIFF or Zarr; name the output "
                         ".ome.zarr, .zarr or .tif")
    return fmt


def open_volume(path: str | os.PathLike[str], channel: int | None = None,
                time: int | None = None) -> VolumeReader:
    """Open a volume for region reads; raises VolumeError for anything resin cannot read.

    A file with several channels needs ``channel`` (0-based; ChannelsError without it), a
    time series ``time`` (TimePointsError without it); a file with one accepts 0 or None.
    """
    path = os.fspath(path)
    for name, value in (("channel", channel), ("time", time)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            from resin.errors import UsageError

            raise UsageError(f"{name} must be an int, got {value!r}")
    fmt = volume_format(path)
    if fmt == "tiff":
        from resin.io._tiff import TiffReader

        return TiffReader(path, channel, time)
    if fmt == "hdf5":
        from resin.io._hdf5 import Hdf5Reader

        return Hdf5Reader(path, channel, time)
    if fmt == "tiffseq":
        from resin.io._tiffseq import TiffSequenceReader

        return TiffSequenceReader(path, channel, time)
    from resin.io._zarr import ZarrReader

    return ZarrReader(path, channel, time)


def volume_label(reader: VolumeReader) -> str:
    """The reader's file name and, for a file with several, its time point and channel:
    ``stack.tif (time point 2, channel 1)``; for log lines."""
    chosen = [f"{what} {value}" for what, value in (
        ("time point", getattr(reader, "time", None)),
        ("channel", getattr(reader, "channel", None))) if value is not None]
    name = Path(str(reader.path).rstrip("/")).name
    file = getattr(reader, "file", None)  # a dataset inside an HDF5 file: file.h5/a/b
    if file is not None and str(reader.path) != file:
        name = Path(file).name + str(reader.path)[len(file):]
    return f"{name} ({', '.join(chosen)})" if chosen else name


def read_volume(path: str | os.PathLike[str], channel: int | None = None,
                time: int | None = None) -> np.ndarray:
    """The whole volume as a ZYX array (small volumes and tests; stream big ones)."""
    with open_volume(path, channel, time) as reader:
        return reader.read()


def create_volume(path: str | os.PathLike[str], shape: tuple[int, int, int], dtype: object,
                  voxel_size: VoxelSize | None = None,
                  chunks: tuple[int, int, int] | None = None, overwrite: bool = False,
                  attrs: dict[str, Any] | None = None,
                  shards: tuple[int, int, int] | None = None,
                  resume: bool = False, levels: int = 1) -> VolumeWriter:
    """Create an output volume to be written region by region.

    ``resume=True`` reopens a partial output of the same shape, dtype and chunks left by an
    interrupted run (``ResumeError`` if it does not match) and creates it when there is none.
    ``shards`` (Zarr only) groups chunks into shard files; ``chunks`` is ignored for TIFF,
    whose write unit is one z plane. ``levels > 1`` (OME-Zarr only) adds a multiscale
    pyramid of 2x, 4x, ... means, written with every (aligned) region.
    """
    path = os.fspath(path)
    if output_format(path) == "tiff":
        from resin.io._tiff import TiffWriter

        if shards is not None:
            from resin.errors import UsageError

            raise UsageError(f"{path}: sharding needs a .zarr/.ome.zarr output")
        return TiffWriter(path, shape, dtype, voxel_size=voxel_size, overwrite=overwrite,
                          attrs=attrs, resume=resume)
    from resin.io._zarr import ZarrWriter

    return ZarrWriter(path, shape, dtype, voxel_size=voxel_size, chunks=chunks,
                      overwrite=overwrite, attrs=attrs, shards=shards, resume=resume,
                      levels=levels)


def write_volume(path: str | os.PathLike[str], array: np.ndarray,
                 voxel_size: VoxelSize | None = None, overwrite: bool = False,
                 attrs: dict[str, Any] | None = None) -> None:
    """Write a whole in-memory ZYX array (TIFF atomically).

    Arrays of a dtype resin reads as float32 (float64, int16, ...) are stored as float32,
    the same rule as reading; other unsupported dtypes raise VolumeError.
    """
    array = np.asarray(array)
    if array.ndim != 3:
        raise VolumeError(f"{path}: can only write 3D ZYX arrays, got shape {array.shape}")
    if array.dtype in FLOAT32_DTYPES:
        array = array.astype(np.float32)
    with create_volume(path, array.shape, array.dtype, voxel_size=voxel_size,  # type: ignore[arg-type]
                       overwrite=overwrite, attrs=attrs) as writer:
        writer.write((slice(None), slice(None), slice(None)), array)


__all__ = [
    "FLOAT32_DTYPES",
    "NATIVE_DTYPES",
    "SUPPORTED_DTYPES",
    "Region",
    "VolumeReader",
    "VolumeWriter",
    "VoxelSize",
    "create_volume",
    "format_bytes",
    "format_info",
    "open_volume",
    "output_format",
    "read_volume",
    "size_on_disk",
    "volume_format",
    "volume_label",
    "volume_info",
    "write_volume",
]
