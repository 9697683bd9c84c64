"""TIFF (plain, ImageJ, OME-TIFF): reader and atomic writer.

Uncompressed contiguous TIFFs are memory-mapped, so a region read touches only the pages
it needs and the volume is never loaded; compressed (or scattered) TIFFs are decoded one
z plane (page) at a time. Writers memory-map an uncompressed ``<name>.partial`` file and
rename it to ``<name>`` on a clean ``close()``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from resin import _log
from resin.errors import OutputExistsError, ResumeError, UsageError, VolumeError
from resin.io._common import (
    Region,
    VoxelSize,
    check_channel,
    check_shape,
    check_time,
    check_voxel_size,
    check_write_dtype,
    check_write_region,
    chosen,
    make_parent,
    normalize_region,
    one_line,
    read_dtype,
    um_per_unit,
)

#: private TIFF tag holding JSON ``{"shape": [z, y, x], "attrs": {...}}`` from the writer
ATTRS_TAG = 65432
#: above this many bytes a TIFF is written as OME BigTIFF (ImageJ TIFFs stop at 4 GiB)
IMAGEJ_MAX_BYTES = 2**32 - 2**25


class _Collect(logging.Filter):
    """Swallows tifffile's log records on threads inside :func:`_quiet_tifffile` and keeps
    their messages; other threads' records pass untouched (installed once, thread-safe)."""

    def __init__(self) -> None:
        super().__init__()
        self.local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        messages = getattr(self.local, "messages", None)
        if messages is None:
            return True
        if record.levelno >= logging.WARNING:
            messages.append(record.getMessage())
        return False


_COLLECT = _Collect()
logging.getLogger("tifffile").addFilter(_COLLECT)


@contextmanager
def _quiet_tifffile() -> Iterator[list[str]]:
    """tifffile logs warnings about damaged files; resin collects them (to report a damaged
    file as one VolumeError) instead of letting them reach stderr."""
    outer = getattr(_COLLECT.local, "messages", None)
    messages: list[str] = []
    _COLLECT.local.messages = messages
    try:
        yield messages
    finally:
        _COLLECT.local.messages = outer


#: tifffile warnings that mean pages are missing or unreadable
_DAMAGE = ("invalid page offset", "failed to reshape", "truncat", "corrupt", "beyond")


class TiffReader:
    """A 3D TIFF read by region (memory-mapped when uncompressed and contiguous)."""

    def __init__(self, path: str, channel: int | None = None, time: int | None = None) -> None:
        import tifffile

        self.path = path
        #: False for the ``.partial`` file of an unfinished run
        self.complete = not path.rstrip("/").endswith(".partial")
        self.attrs: dict[str, Any] = {}
        self._lock = threading.Lock()  # TiffFile's file handle is shared by page reads
        self._whole: np.ndarray | None = None
        if not Path(path).is_file():
            raise VolumeError(f"{path}: no such file" if not Path(path).exists()
                              else f"{path}: is not a file")
        try:
            with _quiet_tifffile() as warnings:
                self._tif = tifffile.TiffFile(path)
                series = self._tif.series[0]
                shape = tuple(int(s) for s in series.shape)
                axes = str(series.axes)
                stored = np.dtype(series.dtype)
                keyframe_shape = tuple(int(s) for s in series.keyframe.shape)
                pages = list(series.pages)
            damage = [m for m in warnings if any(d in m.lower() for d in _DAMAGE)]
            if damage:
                self._tif.close()
                detail = re.sub(r"^<[^>]*>\s*", "", damage[0])
                raise VolumeError(f"{path}: is truncated or corrupt ({detail})")
            for message in warnings:
                _log.debug(f"{path}: tifffile: {message}")
        except VolumeError:
            raise
        except Exception as exc:
            raise VolumeError(f"{path}: not a readable TIFF ({one_line(exc)})") from exc
        try:
            self._init(series, shape, axes, stored, keyframe_shape, pages, channel, time)
        except BaseException:
            self._tif.close()
            raise

    def _init(self, series: Any, shape: tuple[int, ...], axes: str, stored: np.dtype,
              keyframe_shape: tuple[int, ...], pages: list[Any], channel: int | None,
              time: int | None) -> None:
        path = self.path
        if 0 in shape:
            raise VolumeError(f"{path}: is empty (shape {shape})")
        record = self._resin_record()
        self.attrs = record.get("attrs", {}) if isinstance(record.get("attrs"), dict) else {}
        colour = [i for i, (a, n) in enumerate(zip(axes, shape, strict=True))
                  if a in "CS" and n > 1]
        if len(colour) > 1:
            raise VolumeError(f"{path}: has channels along two axes ({axes}, shape {shape}); "
                              "resin reads one channel axis")
        #: channels in the file (1 without a channel axis) and the one read (None: the only)
        self.channels = shape[colour[0]] if colour else 1
        self.channel = check_channel(path, self.channels, channel)
        # a T axis is time beside three others (a TYX stack is read as a volume, as before)
        others = [i for i, (a, n) in enumerate(zip(axes, shape, strict=True))
                  if i not in colour and (n > 1 or a in "YX")]
        series_t = [i for i in others if axes[i] == "T"] if len(others) > 3 else []
        #: time points in the file (1 unless it is a time series) and the one read
        self.time_points = shape[series_t[0]] if series_t else 1
        self.time = check_time(path, self.time_points, time)
        # index of the series array that gives the ZYX volume: the channel and time point
        # picked, other singleton axes dropped
        index: list[int | slice] = [slice(None)] * len(shape)
        kept: list[tuple[str, int]] = []
        positions: list[int | None] = []
        for i, (a, n) in enumerate(zip(axes, shape, strict=True)):
            if colour and i == colour[0]:
                index[i] = self.channel if self.channel is not None else 0
            elif series_t and i == series_t[0]:
                index[i] = self.time if self.time is not None else 0
            elif n == 1 and a not in "YX":
                index[i] = 0
            else:
                kept.append((a, n))
                positions.append(i)
        if len(kept) == 2 and record.get("shape") == [1, *(n for _, n in kept)]:
            kept.insert(0, ("Z", 1))  # a one-plane volume resin wrote, not a 2D image
            positions.insert(0, None)
        if len(kept) < 3:
            raise VolumeError(f"{path}: is {len(kept)}D (shape {shape}); resin needs a 3D ZYX "
                              "volume")
        if len(kept) > 3 or [a for a, _ in kept][1:] != ["Y", "X"]:
            raise VolumeError(f"{path}: has axes {axes} (shape {shape}); resin needs a 3D ZYX "
                              "volume")
        z, y, x = (n for _, n in kept)
        self.shape: tuple[int, int, int] = (z, y, x)
        self._index = tuple(index)
        self._z_axis = positions[0]
        self._series_shape = shape
        self.dtype: np.dtype = read_dtype(stored, path)
        self.voxel_size: VoxelSize | None = self._read_voxel_size()
        kind = "OME-TIFF" if self._tif.is_ome else "ImageJ TIFF" if self._tif.is_imagej else "TIFF"
        kind += chosen(self)
        self._memmap: np.ndarray | None = None
        self._pages: list[Any] | None = None
        n_page = len(keyframe_shape)
        leading = shape[:len(shape) - n_page]
        if series.dataoffset is not None:
            self._memmap = self._map(series, stored)
            self.format = f"{kind} (uncompressed, memory-mapped)"
        elif (tuple(shape[len(shape) - n_page:]) == tuple(keyframe_shape)
              and len(pages) == int(np.prod(leading, dtype=np.int64))
              and (self._z_axis is None or self._z_axis < len(leading))):
            self._pages = pages
            self._leading = leading
            compression = getattr(series.keyframe.compression, "name", "?").lower()
            if compression == "none":
                compression = "uncompressed"
            self.format = f"{kind} ({compression}, read plane by plane)"
        else:
            self.format = f"{kind} (read whole on first access)"
        self.chunks: tuple[int, int, int] = (1, y, x)

    def _page_of(self, z: int) -> tuple[int, tuple[int | slice, ...]]:
        """The series page holding plane ``z`` and the index of the plane within it."""
        lead = len(self._leading)
        where = [0 if isinstance(s, slice) else s for s in self._index[:lead]]
        if self._z_axis is not None:
            where[self._z_axis] = z
        page = int(np.ravel_multi_index(where, self._leading)) if lead else 0
        return page, self._index[lead:]

    def _resin_record(self) -> dict[str, Any]:
        """The JSON record resin's writer leaves in a private tag: shape and attrs."""
        tag = self._tif.pages.first.tags.get(ATTRS_TAG)
        if tag is None:
            return {}
        try:
            raw = tag.value
            if isinstance(raw, np.ndarray):  # tifffile hands back some ASCII tags as bytes
                raw = raw.astype(np.uint8).tobytes().rstrip(b"\0").decode("ascii")
            value = json.loads(raw)
        except (TypeError, ValueError, UnicodeDecodeError):
            return {}
        return value if isinstance(value, dict) else {}

    def _map(self, series: Any, stored: np.dtype) -> np.ndarray:
        dtype = np.dtype(self._tif.byteorder + stored.char)
        nbytes = int(np.prod(self._series_shape, dtype=np.int64)) * dtype.itemsize
        size = os.path.getsize(self.path)
        if int(series.dataoffset) + nbytes > size:
            raise VolumeError(
                f"{self.path}: is truncated ({size} bytes, the image data needs "
                f"{int(series.dataoffset) + nbytes}); the file was not written completely"
            )
        whole = np.memmap(self.path, dtype=dtype, mode="r", offset=int(series.dataoffset),
                          shape=self._series_shape)
        return whole[self._index].reshape(self.shape)

    def _read_voxel_size(self) -> VoxelSize | None:
        tif = self._tif
        try:
            if tif.is_ome and tif.ome_metadata:
                return _ome_voxel_size(tif.ome_metadata)
            if tif.is_imagej and tif.imagej_metadata is not None:
                meta = tif.imagej_metadata
                factor = um_per_unit(meta.get("unit"))
                spacing = meta.get("spacing")
                lateral = _lateral_size(tif.pages.first)
                if factor is None or spacing is None or lateral is None:
                    return None
                return check_voxel_size((float(spacing) * factor, lateral[0] * factor,
                                         lateral[1] * factor))
        except (UsageError, ValueError, TypeError, ET.ParseError) as exc:
            _log.debug(f"{self.path}: ignoring unreadable voxel size metadata ({exc})")
        return None

    def read(self, region: Region | None = None) -> np.ndarray:
        region = normalize_region(region, self.shape)
        zs, ys, xs = region
        try:
            if self._memmap is not None:
                data = np.array(self._memmap[region], dtype=self.dtype)
            elif self._pages is not None:
                data = np.empty((zs.stop - zs.start, ys.stop - ys.start, xs.stop - xs.start),
                                dtype=self.dtype)
                with self._lock, _quiet_tifffile():
                    for i, z in enumerate(range(zs.start, zs.stop)):
                        page, within = self._page_of(z)
                        plane = self._pages[page].asarray()
                        data[i] = plane.reshape(self._series_shape[len(self._leading):])[
                            within].reshape(self.shape[1:])[ys, xs]
            else:
                with self._lock, _quiet_tifffile():
                    if self._whole is None:
                        whole = np.asarray(self._tif.series[0].asarray())
                        self._whole = whole.reshape(self._series_shape)[self._index].reshape(
                            self.shape)
                data = np.array(self._whole[region], dtype=self.dtype)
        except VolumeError:
            raise
        except Exception as exc:
            raise VolumeError(f"{self.path}: could not read z {zs.start}:{zs.stop} "
                              f"({one_line(exc)}); the file may be truncated or corrupt") from exc
        return data

    def close(self) -> None:
        self._memmap = None
        self._pages = None
        self._whole = None
        self._tif.close()

    def __enter__(self) -> TiffReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _lateral_size(page: Any) -> tuple[float, float] | None:
    """(y, x) pixel size in the file's resolution unit, from the resolution tags."""
    xres = page.tags.get("XResolution")
    yres = page.tags.get("YResolution")
    if xres is None or yres is None:
        return None
    (xn, xd), (yn, yd) = xres.value, yres.value
    if not (xn and yn):
        return None
    return yd / yn, xd / xn


def _ome_voxel_size(xml: str) -> VoxelSize | None:
    root = ET.fromstring(xml)
    pixels = next((el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None:
        return None
    sizes = []
    for axis in "ZYX":
        value = pixels.get(f"PhysicalSize{axis}")
        factor = um_per_unit(pixels.get(f"PhysicalSize{axis}Unit", "µm"))
        if value is None or factor is None:
            return None
        sizes.append(float(value) * factor)
    return check_voxel_size(sizes)


class TiffWriter:
    """An uncompressed TIFF written region by region through a memory map of
    ``<path>.partial``, renamed to ``path`` on a clean :meth:`close`.

    ImageJ hyperstack (voxel size in um, readable by Fiji) up to 4 GiB; OME BigTIFF above
    that or when the name ends in ``.ome.tif(f)``. Disjoint regions may be written from
    different threads.
    """

    def __init__(self, path: str, shape: tuple[int, int, int], dtype: object,
                 voxel_size: VoxelSize | None = None, overwrite: bool = False,
                 attrs: dict[str, Any] | None = None, resume: bool = False) -> None:
        self.path = path
        self.partial_path = path + ".partial"
        self.shape = check_shape(shape)
        self.dtype: np.dtype = check_write_dtype(dtype)
        self.voxel_size = check_voxel_size(voxel_size)
        self.chunks: tuple[int, int, int] = (1, self.shape[1], self.shape[2])
        self.attrs = dict(attrs or {})
        try:
            attrs_json = json.dumps({"shape": list(self.shape), "attrs": self.attrs})
        except (TypeError, ValueError) as exc:
            raise UsageError(f"volume attrs must be JSON-serializable ({exc})") from exc
        partial, final = Path(self.partial_path), Path(path)
        self._closed = False
        if resume and partial.exists():
            self._check_space(int(np.prod(self.shape)) * self.dtype.itemsize
                              - partial.stat().st_blocks * 512)
            self._mm = self._reopen()
            return
        if resume and final.exists() and not overwrite:
            raise ResumeError(f"{path} is already complete (there is no {partial.name} to "
                              "resume); use --overwrite to write it again")
        if final.exists() and not overwrite:
            raise OutputExistsError(f"{path} already exists; use --overwrite to replace it")
        if final.is_dir():
            raise OutputExistsError(f"{path} is a directory; refusing to replace it")
        if partial.exists():
            if not overwrite:
                raise OutputExistsError(
                    f"an interrupted run left {partial}; use --resume to continue it or "
                    "--overwrite to start over")
            partial.unlink()
        make_parent(path)
        self._mm = self._create(attrs_json)

    def _create(self, attrs_json: str) -> np.ndarray:
        import tifffile

        vs = self.voxel_size
        nbytes = int(np.prod(self.shape)) * self.dtype.itemsize
        self._check_space(nbytes)
        kw: dict[str, Any] = {
            "extratags": [(ATTRS_TAG, 2, 0, attrs_json, True)],
            "photometric": "minisblack",
        }
        if self.path.lower().endswith((".ome.tif", ".ome.tiff")) or nbytes > IMAGEJ_MAX_BYTES:
            meta: dict[str, Any] = {"axes": "ZYX"}
            if vs is not None:
                for axis, size in zip("ZYX", vs, strict=True):
                    meta[f"PhysicalSize{axis}"] = size
                    meta[f"PhysicalSize{axis}Unit"] = "µm"
            kw.update(ome=True, bigtiff=True, metadata=meta)
        else:
            meta = {"axes": "ZYX"}
            if vs is not None:
                meta.update(spacing=vs[0], unit="um")
                kw["resolution"] = (1.0 / vs[2], 1.0 / vs[1])
            kw.update(imagej=True, metadata=meta)
        try:
            with _quiet_tifffile():
                mm = tifffile.memmap(self.partial_path, shape=self.shape, dtype=self.dtype, **kw)
        except OSError as exc:
            raise VolumeError(f"{self.path}: cannot create the output ({one_line(exc)})") from exc
        return np.asarray(mm).reshape(self.shape) if mm.shape != self.shape else mm

    def _check_space(self, needed: int) -> None:
        """The file is a sparse memory map: without the space, a write deep into the run
        would kill the process (SIGBUS) instead of raising. Refuse up front."""
        import shutil

        free = shutil.disk_usage(Path(self.partial_path).resolve().parent).free
        if needed + (64 << 20) > free:
            from resin.io._info import format_bytes

            raise VolumeError(f"{self.path}: needs {format_bytes(needed + (64 << 20))} on its "
                              f"disk, {format_bytes(free)} is free; free space or write "
                              "elsewhere")

    def _reopen(self) -> np.ndarray:
        try:
            reader = TiffReader(self.partial_path)
        except VolumeError as exc:
            raise ResumeError(f"cannot resume {self.path}: {exc}; use --overwrite to start "
                              "over") from exc
        try:
            ok = (reader.shape == self.shape and reader.dtype == self.dtype
                  and reader._memmap is not None)
            found = (reader.shape, str(reader.dtype))
        finally:
            reader.close()
        if not ok:
            raise ResumeError(f"{self.partial_path} holds a {found} volume, this run writes "
                              f"{(self.shape, str(self.dtype))}; use --overwrite to start over")
        import tifffile

        mm = tifffile.memmap(self.partial_path, mode="r+")
        return mm.reshape(self.shape)

    def write(self, region: Region, array: np.ndarray) -> None:
        if self._closed:
            raise UsageError(f"{self.path}: write after close")
        region, data = check_write_region(region, array, self.shape, self.dtype, self.path)
        self._mm[region] = data

    def flush(self, region: Region | None = None) -> None:
        """Write the memory map's dirty pages to disk (msync) before a marker claims them."""
        mm = self._mm
        target = mm if isinstance(mm, np.memmap) else getattr(mm, "base", None)
        if isinstance(target, np.memmap):
            target.flush()

    def _release(self) -> None:
        mm = self._mm
        if isinstance(mm, np.memmap) or isinstance(getattr(mm, "base", None), np.memmap):
            target = mm if isinstance(mm, np.memmap) else mm.base
            target.flush()  # type: ignore[union-attr]
        del self._mm

    def close(self) -> None:
        """Flush and atomically move ``<path>.partial`` to ``path``."""
        if self._closed:
            return
        self._closed = True
        self._release()
        os.replace(self.partial_path, self.path)

    def abandon(self) -> None:
        """Flush and keep ``<path>.partial`` for a later ``resume=True`` (no rename)."""
        if self._closed:
            return
        self._closed = True
        self._release()

    def __enter__(self) -> TiffWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object, /) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abandon()
