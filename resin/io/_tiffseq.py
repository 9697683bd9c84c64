"""A z stack stored as one 2-D TIFF per plane (a folder of planes, or a glob pattern), read
only, plane by plane. The voxel size is unknown (a single plane does not record the z spacing).

Light-sheet and other acquisition software often writes a volume so: ``Z0000.tif``,
``Z0001.tif``, ... The planes are ordered by their names with numbers compared as numbers
(``z2`` before ``z10``); every plane must have one shape and data type. A region read opens
only the planes it spans (memory-mapped when a plane is stored uncompressed).
"""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from resin.errors import VolumeError
from resin.io._common import Region, VoxelSize, normalize_region, one_line, read_dtype

TIFF_SUFFIXES = (".tif", ".tiff")


def _natural(name: str) -> list[Any]:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def is_pattern(path: str) -> bool:
    """A glob pattern naming TIFF planes (``planes/*.tif``)."""
    return any(c in path for c in "*?[") and path.lower().endswith(TIFF_SUFFIXES)


def plane_files(path: str) -> list[str]:
    """The plane files of a folder or glob pattern, in z order (natural sort by name)."""
    if is_pattern(path):
        files = glob.glob(path)
    else:
        files = [str(p) for p in Path(path).iterdir()
                 if p.suffix.lower() in TIFF_SUFFIXES and not p.name.startswith(".")]
    files = [f for f in files if os.path.isfile(f)]
    return sorted(files, key=lambda f: _natural(os.path.basename(f)))


def holds_planes(path: str) -> bool:
    """True for a glob pattern or a folder that holds TIFF files (not a Zarr store)."""
    if is_pattern(path):
        return True
    p = Path(path)
    return p.is_dir() and any(q.suffix.lower() in TIFF_SUFFIXES for q in p.iterdir())


class TiffSequenceReader:
    """One 3-D volume from a sequence of 2-D TIFF planes, read by region."""

    channels = 1
    channel: int | None = None
    time_points = 1
    time: int | None = None

    def __init__(self, path: str, channel: int | None = None, time: int | None = None) -> None:
        import tifffile

        from resin.io._common import check_channel, check_time

        self.path = path
        check_channel(path, 1, channel)
        check_time(path, 1, time)
        self.files = plane_files(path)
        if not self.files:
            raise VolumeError(f"{path}: no TIFF planes found")
        if len(self.files) < 2:
            raise VolumeError(f"{path}: holds one TIFF plane; resin needs a 3D ZYX volume "
                              "(a sequence of 2-D planes)")
        from resin.io._tiff import _quiet_tifffile

        try:
            with _quiet_tifffile(), tifffile.TiffFile(self.files[0]) as tif:
                series = tif.series[0]
                shape = tuple(int(s) for s in series.shape)
                stored = np.dtype(series.dtype)
        except Exception as exc:
            raise VolumeError(f"{self.files[0]}: not a readable TIFF ({one_line(exc)})") from exc
        if len(shape) != 2 or 0 in shape:
            raise VolumeError(f"{self.files[0]}: a plane of shape {shape}; a folder of planes "
                              "needs one 2-D image per file")
        #: a single plane does not record the z spacing: unknown
        self.voxel_size: VoxelSize | None = None
        self._plane_shape = shape
        self.dtype: np.dtype = read_dtype(stored, self.files[0])
        self._stored = stored
        self.shape: tuple[int, int, int] = (len(self.files), shape[0], shape[1])
        self.chunks: tuple[int, int, int] = (1, shape[0], shape[1])
        self.format = f"TIFF sequence of {len(self.files)} planes"
        self.attrs: dict[str, Any] = {}
        self.complete = True

    def _plane(self, z: int, ys: slice, xs: slice) -> np.ndarray:
        import tifffile

        from resin.io._tiff import _quiet_tifffile

        file = self.files[z]
        try:
            with _quiet_tifffile(), tifffile.TiffFile(file) as tif:
                series = tif.series[0]
                if tuple(series.shape) != self._plane_shape or series.dtype != self._stored:
                    raise VolumeError(
                        f"{file}: plane {z} is {tuple(series.shape)} {series.dtype}, the first "
                        f"plane {self._plane_shape} {self._stored}; every plane must match")
                offset = series.dataoffset
                if offset is not None:  # uncompressed and contiguous: read only the rows
                    plane = np.memmap(file, dtype=series.dtype.newbyteorder(
                        tif.byteorder), mode="r", offset=offset, shape=self._plane_shape)
                    return np.asarray(plane[ys, xs])
                return np.asarray(series.asarray())[ys, xs]
        except VolumeError:
            raise
        except Exception as exc:
            raise VolumeError(f"{file}: could not read plane {z} ({one_line(exc)}); the file "
                              "may be truncated or corrupt") from exc

    def read(self, region: Region | None = None) -> np.ndarray:
        region = normalize_region(region, self.shape)
        zs, ys, xs = region
        out = np.empty((zs.stop - zs.start, ys.stop - ys.start, xs.stop - xs.start), self.dtype)
        for i, z in enumerate(range(zs.start, zs.stop)):
            out[i] = self._plane(z, ys, xs)
        return out

    def close(self) -> None:
        pass

    def __enter__(self) -> TiffSequenceReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

