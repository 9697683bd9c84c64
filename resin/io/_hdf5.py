"""HDF5 volumes, read only: a plain dataset, an Imaris 5.5 file (``.ims``) or a
BigDataViewer file (BigStitcher's ``.h5``).

Microscopes and their software write these: Imaris and light-sheet pipelines keep
terabyte volumes in them. resin reads them region by region and writes its output as
TIFF or Zarr. ``file.h5/group/data`` opens that dataset of the file; ``file.h5`` alone
opens an Imaris or BigDataViewer layout at full resolution (its channels and time points
chosen with ``channel`` / ``time``, as for the other formats), or the file's only volume.
h5py serialises calls into the HDF5 library, so reads from several threads are safe.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from resin.errors import UsageError, VolumeError
from resin.io._common import (
    Region,
    VoxelSize,
    check_channel,
    check_time,
    check_voxel_size,
    chosen,
    normalize_region,
    one_line,
    read_dtype,
    um_per_unit,
)
from resin.io._zarr import _Axes, _plain_axes

SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5", ".ims")
_IMARIS_LEVEL = "DataSet/ResolutionLevel 0"
_BDV_TIME = re.compile(r"t(\d{5})$")
_BDV_SETUP = re.compile(r"s(\d+)$")


def split_path(path: str) -> tuple[str, str]:
    """(the HDF5 file, the dataset path inside it; '' for none) of ``file.h5[/inner]``: the
    longest prefix with an HDF5 suffix that is a file, else (nothing exists yet) the
    shortest such prefix that is not a folder; ``(path, '')`` when there is none."""
    parts = Path(path.rstrip("/")).parts
    heads = [(i, Path(*parts[:i])) for i in range(1, len(parts) + 1)
             if parts[i - 1].lower().endswith(SUFFIXES)]
    for i, head in reversed(heads):
        if head.is_file():
            return str(head), "/".join(parts[i:])
    for i, head in heads:
        if not head.exists():
            return str(head), "/".join(parts[i:])
    return path, ""


def is_hdf5(path: str) -> bool:
    file, _ = split_path(path)
    return file.lower().endswith(SUFFIXES) and not Path(file).is_dir()


def _text(value: Any) -> str:
    """An Imaris attribute (an array of one-byte strings) or a plain one, as text."""
    if isinstance(value, np.ndarray) and value.dtype.kind == "S":
        return b"".join(value.ravel().tolist()).decode("latin-1")
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return str(value)


def _numbered(group: Any, prefix: str) -> list[str]:
    """Members named ``prefix N`` in N order; their count is what Imaris files hold."""
    found = [(int(k[len(prefix):]), k) for k in group.keys()
             if k.startswith(prefix) and k[len(prefix):].isdigit()]
    return [k for _, k in sorted(found)]


class Hdf5Reader:
    """One 3-D volume (one channel, one time point) of an HDF5 file, read by region."""

    def __init__(self, path: str, channel: int | None = None, time: int | None = None) -> None:
        from resin._optional import require

        h5py = require("h5py", "HDF5 and Imaris volumes", extra="hdf5")
        self.path = path
        self.file, inner = split_path(path)
        if not Path(self.file).is_file():
            raise VolumeError(f"{self.file}: no such file")
        try:
            # no file lock: an input is only read, and cluster file systems often have none
            self._h5 = h5py.File(self.file, "r", locking=False)
        except Exception as exc:
            raise VolumeError(f"{self.file}: not a readable HDF5 file ({one_line(exc)}); it may "
                              "be truncated or corrupt") from exc
        self.attrs: dict[str, Any] = {}
        self.voxel_size: VoxelSize | None = None
        self.complete = True
        self._crop: tuple[int, int, int] | None = None
        #: the dtype the stored bits mean, where the file says another (BigDataViewer)
        self._view: np.dtype | None = None
        try:
            self._open(h5py, inner, channel, time)
        except VolumeError:
            self._h5.close()
            raise
        except Exception as exc:
            self._h5.close()
            raise VolumeError(f"{path}: unreadable HDF5 layout ({one_line(exc)})") from exc
        self.dtype: np.dtype = read_dtype(self._view or np.dtype(self._data.dtype), path)
        self.shape: tuple[int, int, int] = self._crop or self._axes.shape
        chunks = self._data.chunks
        self.chunks: tuple[int, int, int] = (
            self._axes.pick(tuple(chunks)) if chunks else (1, self.shape[1], self.shape[2]))
        self.channels: int = self._axes.channels
        self.channel: int | None = self._axes.channel
        self.time_points: int = self._axes.time_points
        self.time: int | None = self._axes.time
        self.format += chosen(self)

    # -- layouts ----------------------------------------------------------------------
    def _open(self, h5py: Any, inner: str, channel: int | None, time: int | None) -> None:
        f = self._h5
        if inner:
            if inner not in f:
                raise VolumeError(f"{self.path}: the file has no '{inner}'{self._hint()}")
            node = f[inner]
            if isinstance(node, h5py.Dataset):
                return self._open_dataset(node, channel, time)
            f = node  # a group: an Imaris or BigDataViewer layout below it, or one volume
        if _IMARIS_LEVEL in f:
            return self._open_imaris(f, channel, time)
        if any(_BDV_TIME.match(k) for k in f.keys()) and any(_BDV_SETUP.match(k) for k in f.keys()):
            return self._open_bdv(f, channel, time)
        volumes = _volumes(f)
        if len(volumes) == 1:
            return self._open_dataset(f[volumes[0]], channel, time)
        if not volumes:
            raise VolumeError(f"{self.path}: holds no dataset of 3 or more dimensions; resin "
                              "needs a 3D ZYX volume")
        raise VolumeError(f"{self.path}: holds {len(volumes)} volumes; name one after the "
                          f"file's path: {self._names(volumes)}")

    def _hint(self) -> str:
        volumes = _volumes(self._h5)
        return f"; its volumes: {self._names(volumes)}" if volumes else ""

    def _names(self, volumes: list[str]) -> str:
        shown = ", ".join(f"{self.file}/{v}" for v in volumes[:5])
        return shown + (f" and {len(volumes) - 5} more" if len(volumes) > 5 else "")

    def _open_dataset(self, ds: Any, channel: int | None, time: int | None) -> None:
        """A dataset of 3 to 5 dimensions: named by its dimension scales' labels, else
        (t, c,) z, y, x; voxel size from ``element_size_um`` (ilastik, Fiji) or
        ``voxel_size`` [+ ``voxel_size_unit``] (resin's own Zarr convention)."""
        labels = [str(d.label) for d in ds.dims]
        if not all(labels) and "axistags" in ds.attrs:  # ilastik / vigra: JSON axis keys
            labels = _axistags(ds.attrs["axistags"], ds.ndim) or labels
        self._axes = _plain_axes(self.path, tuple(ds.shape), labels if all(labels) else None,
                                 channel, time)
        self._data = ds
        self.format = f"HDF5 dataset {ds.name}"
        attrs = ds.attrs
        if "element_size_um" in attrs:
            self.voxel_size = _voxel(attrs["element_size_um"], 1.0)
        elif "voxel_size" in attrs:
            unit = _text(attrs["voxel_size_unit"]) if "voxel_size_unit" in attrs else "micrometer"
            self.voxel_size = _voxel(attrs["voxel_size"], um_per_unit(unit))

    def _open_imaris(self, f: Any, channel: int | None, time: int | None) -> None:
        """Imaris 5.5: DataSet/ResolutionLevel 0/TimePoint T/Channel C/Data, stored padded
        to its chunks; the image's size and extents are in DataSetInfo/Image."""
        level = f[_IMARIS_LEVEL]
        times = _numbered(level, "TimePoint ")
        if not times:
            raise VolumeError(f"{self.path}: an Imaris file without time points")
        channels = _numbered(level[times[0]], "Channel ")
        if not channels:
            raise VolumeError(f"{self.path}: an Imaris file without channels")
        t = check_time(self.path, len(times), time)
        c = check_channel(self.path, len(channels), channel)
        ds = level[times[t or 0]][channels[c or 0]]["Data"]
        self._use(ds, "Imaris", len(channels), c, len(times), t)
        version = _text(f.attrs.get("ImarisVersion", "5.5")).strip("\0") or "5.5"
        self.format = f"Imaris {version} (HDF5)"
        info = f.get("DataSetInfo/Image")
        if info is None:
            return
        a = info.attrs
        try:
            size = tuple(int(_text(a[k])) for k in ("Z", "Y", "X"))
        except (KeyError, ValueError):
            return
        if all(0 < n <= s for n, s in zip(size, ds.shape, strict=True)):
            self._crop = (size[0], size[1], size[2])
        try:
            ext = [float(_text(a[f"ExtMax{i}"])) - float(_text(a[f"ExtMin{i}"])) for i in (2, 1, 0)]
        except (KeyError, ValueError):
            return
        factor = um_per_unit(_text(a["Unit"]).strip("\0")) if "Unit" in a else 1.0
        self.voxel_size = _voxel([e / n for e, n in zip(ext, size, strict=True)], factor)

    def _open_bdv(self, f: Any, channel: int | None, time: int | None) -> None:
        """BigDataViewer: t{T:05d}/s{S:02d}/0/cells, setups read as channels; the voxel
        size from the setup's ``voxelSize`` in the XML beside the file (``NAME.xml``), when
        there is one."""
        times = sorted(k for k in f.keys() if _BDV_TIME.match(k))
        setups = sorted((k for k in f.keys() if _BDV_SETUP.match(k)), key=lambda k: int(k[1:]))
        t = check_time(self.path, len(times), time)
        s = check_channel(self.path, len(setups), channel)
        key = f"{times[t or 0]}/{setups[s or 0]}/0/cells"
        if key not in f:
            raise VolumeError(f"{self.path}: a BigDataViewer file without '{key}'")
        ds = f[key]
        self._use(ds, "BigDataViewer", len(setups), s, len(times), t)
        if np.dtype(ds.dtype) == np.int16:  # BigDataViewer keeps uint16 data as int16
            self._view = np.dtype(np.uint16)
        self.format = "BigDataViewer (HDF5)"
        self.voxel_size = _bdv_voxel_size(Path(self.file).with_suffix(".xml"),
                                          int(setups[s or 0][1:]))

    def _use(self, ds: Any, layout: str, channels: int, channel: int | None, times: int,
             time: int | None) -> None:
        """Read the 3-D ``ds``: one channel and time point of a layout that stores each
        apart (the counts and the chosen ones are what the reader reports)."""
        if ds.ndim != 3:
            raise VolumeError(f"{self.path}: {layout} data of {ds.ndim} dimensions; expected 3")
        self._data = ds
        self._axes = _Axes(self.path, tuple(ds.shape), ["space"] * 3, ["z", "y", "x"])
        self._axes.channels, self._axes.channel = channels, channel
        self._axes.time_points, self._axes.time = times, time

    # -- reading ----------------------------------------------------------------------
    def read(self, region: Region | None = None) -> np.ndarray:
        region = normalize_region(region, self.shape)
        out = np.empty(tuple(s.stop - s.start for s in region), self.dtype)
        if out.size == 0:
            return out
        try:
            data = self._data[self._axes.index(region)]
        except Exception as exc:
            spans = ", ".join(f"{s.start}:{s.stop}" for s in region)
            raise VolumeError(f"{self.path}: could not read region [{spans}] "
                              f"({one_line(exc)}); the file may be truncated or corrupt") from exc
        out[...] = data if self._view is None else np.asarray(data).view(self._view)
        return out

    def close(self) -> None:
        self._h5.close()

    def __enter__(self) -> Hdf5Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _axistags(value: Any, ndim: int) -> list[str] | None:
    """Axis names of a vigra/ilastik ``axistags`` attribute (JSON ``{"axes": [{"key":
    "z"}, ...]}``); None when it does not name ``ndim`` axes."""
    import json

    try:
        keys = [str(a["key"]) for a in json.loads(_text(value))["axes"]]
    except (ValueError, KeyError, TypeError):
        return None
    return keys if len(keys) == ndim else None


def _volumes(group: Any) -> list[str]:
    """Paths of the datasets of 3 or more dimensions below ``group``."""
    import h5py

    found: list[str] = []
    group.visititems(lambda name, obj: found.append(name)
                     if isinstance(obj, h5py.Dataset) and obj.ndim >= 3 else None)
    return found


def _bdv_voxel_size(xml: Path, setup: int) -> VoxelSize | None:
    """``voxelSize`` of view setup ``setup`` in a BigDataViewer XML (``size`` is x y z);
    None when the file, the setup or a known unit is missing."""
    import xml.etree.ElementTree as ET

    if not xml.is_file():
        return None
    try:
        root = ET.parse(xml).getroot()
    except (ET.ParseError, OSError):
        return None
    for vs in root.iter("ViewSetup"):
        if (vs.findtext("id") or "").strip() != str(setup):
            continue
        size = (vs.findtext("voxelSize/size") or "").split()
        unit = (vs.findtext("voxelSize/unit") or "micrometer").strip()
        if len(size) != 3:
            return None
        return _voxel(size[::-1], um_per_unit(unit))
    return None


def _voxel(values: Any, factor: float | None) -> VoxelSize | None:
    if factor is None:
        return None
    try:
        v = [float(x) * factor for x in np.asarray(values, dtype=np.float64).ravel()]
    except (TypeError, ValueError):
        return None
    if len(v) != 3:
        return None
    try:
        return check_voxel_size(v)
    except UsageError:
        return None
