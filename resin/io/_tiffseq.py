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
from resin.io._common import (
    Region,
    VoxelSize,
    check_channel,
    check_time,
    normalize_region,
    one_line,
    read_dtype,
)

TIFF_SUFFIXES = (".tif", ".tiff")


def _natural(name: str) -> list[Any]:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def is_pattern(path: str) -> bool:
    """A glob pattern naming existing TIFF planes (``planes/*.tif``); a path that is a file
    itself (``cell[1].tif``), or matches nothing (a new output's name), is not one."""
    return (any(c in path for c in "*?[") and path.lower().endswith(TIFF_SUFFIXES)
            and not os.path.exists(path) and bool(glob.glob(path)))


def _is_plane(p: Path) -> bool:
    return p.suffix.lower() in TIFF_SUFFIXES and not p.name.startswith(".") and p.is_file()


def plane_files(path: str) -> list[str]:
    """The plane files of a folder or glob pattern, in z order (natural sort by name);
    hidden files (``.name``, as macOS leaves ``._name``) are not planes."""
    found = ([Path(f) for f in glob.glob(path)] if is_pattern(path)
             else list(Path(path).iterdir()))
    return sorted((str(f) for f in found if _is_plane(f)),
                  key=lambda f: _natural(os.path.basename(f)))


def holds_planes(path: str) -> bool:
    """True for a glob pattern naming TIFF files, or a folder that holds some."""
    if is_pattern(path):
        return True
    p = Path(path)
    return p.is_dir() and any(_is_plane(q) for q in p.iterdir())


def pattern_folder(path: str) -> str:
    """The folder of a glob pattern's planes (the path itself otherwise)."""
    return (os.path.dirname(path) or os.curdir) if is_pattern(path) else path


class TiffSequenceReader:
    """One 3-D volume from a sequence of 2-D TIFF planes, read by region."""

    channels = 1
    channel: int | None = None
    time_points = 1
    time: int | None = None

    def __init__(self, path: str, channel: int | None = None, time: int | None = None) -> None:

        self.path = path
        check_channel(path, 1, channel)
        check_time(path, 1, time)
        self.files = plane_files(path)
        if not self.files:
            raise VolumeError(f"{path}: no TIFF planes found")
        if len(self.files) < 2:
            raise VolumeError(f"{path}: holds one TIFF plane; resin needs a 3D ZYX volume "
                              "(a sequence of 2-D planes)")
        shape, stored = self._open_plane(self.files[0], 0, lambda page: (
            tuple(int(n) for n in page.shape), np.dtype(page.dtype)))
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

    def _open_plane(self, file: str, z: int, use: Any) -> Any:
        """``use(page)`` of plane ``z``'s one 2-D page. The page, not the file's series: a
        multi-file OME-TIFF (Bio-Formats, Micro-Manager) describes the whole stack in every
        file while each file holds one plane."""
        import tifffile

        from resin.io._tiff import _quiet_tifffile

        try:
            with _quiet_tifffile(), tifffile.TiffFile(file) as tif:
                pages = len(tif.pages)
                page = tif.pages[0]
                if pages != 1 or page.ndim != 2 or 0 in page.shape:
                    raise VolumeError(
                        f"{file}: holds {pages} page(s) of shape {tuple(page.shape)}; a folder "
                        "of planes needs one 2-D image per file")
                return use(page)
        except VolumeError:
            raise
        except Exception as exc:
            raise VolumeError(f"{file}: could not read plane {z} ({one_line(exc)}); the file "
                              "may be truncated or corrupt") from exc

    def _plane(self, z: int, ys: slice, xs: slice) -> np.ndarray:
        file = self.files[z]

        def read(page: Any) -> np.ndarray:
            if tuple(page.shape) != self._plane_shape or page.dtype != self._stored:
                raise VolumeError(
                    f"{file}: plane {z} is {tuple(page.shape)} {page.dtype}, the first "
                    f"plane {self._plane_shape} {self._stored}; every plane must match")
            if page.is_memmappable:  # uncompressed and contiguous: read only the rows
                plane = np.memmap(file, dtype=np.dtype(page.dtype).newbyteorder(
                    page.parent.byteorder), mode="r", offset=page.dataoffsets[0],
                    shape=self._plane_shape)
                return np.asarray(plane[ys, xs])
            return np.asarray(page.asarray())[ys, xs]

        return self._open_plane(file, z, read)

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

