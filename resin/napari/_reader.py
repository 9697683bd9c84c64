"""napari reader for the volumes resin reads and writes: TIFF, Zarr, OME-Zarr (every level).

Volumes up to :data:`IN_MEMORY_BYTES` are read whole; larger ones stay on disk and are read
plane by plane as napari shows them (resin's own readers, so the same axes, data types and
voxel sizes as ``resin-run``). The ``resin`` record of an output (model, normalization,
tiles) becomes the layer's metadata.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from resin.errors import ChannelsError, ChooseOneError, TimePointsError, VolumeError

#: volumes up to this size are loaded into memory when opened
IN_MEMORY_BYTES = 512 * 2**20
#: time points of a series on disk (:class:`SeriesVolume`) whose files stay open
OPEN_TIME_POINTS = 4

LayerData = tuple[Any, dict[str, Any], str]


def get_reader(path: str | list[str]) -> Callable[[Any], list[LayerData]] | None:
    """npe2 reader contribution: a reader for a volume resin can open, else None."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    from resin.io import open_volume

    try:
        open_volume(path).close()
    except ChooseOneError:
        try:  # one layer per channel, time points along a slider, if one of them opens
            open_volume(path, 0, 0).close()
        except VolumeError:
            return None
    except VolumeError:
        return None
    return read


def read(path: str | list[str]) -> list[LayerData]:
    if isinstance(path, list):
        path = path[0]
    return volume_layers(path)


def volume_layers(path: str | os.PathLike[str]) -> list[LayerData]:
    """One image layer: the volume (every level of a multiscale OME-Zarr), its voxel size;
    a multi-channel file gives one layer per channel, named ``<name>_c<N>``, with
    ``metadata["channel"]`` (so the widgets treat it as data, not as the whole file)."""
    from resin.io import open_volume

    path = os.fspath(path)
    try:
        reader = open_volume(path)
    except ChannelsError as exc:
        return [_channel_layer(path, c) for c in range(exc.count)]
    except TimePointsError:
        reader = open_volume(path, None, 0)
    levels: list[Any] = [_level(reader, path)]
    for sub in _lower_levels(path):
        try:
            levels.append(_level(open_volume(os.path.join(path, sub), None,
                                             0 if reader.time is not None else None),
                                 os.path.join(path, sub)))
        except VolumeError:
            break  # napari still shows the levels that could be read
    name = Path(path.rstrip("/")).name.split(".")[0]
    kwargs: dict[str, Any] = {"name": name}
    if reader.voxel_size is not None:
        kwargs["scale"] = _scale(reader.voxel_size, levels[0])
    if reader.attrs:
        kwargs["metadata"] = {"resin": dict(reader.attrs)}
    if len(levels) > 1:
        kwargs["multiscale"] = True
        return [(levels, kwargs, "image")]
    return [(levels[0], kwargs, "image")]


def _channel_layer(path: str, channel: int) -> LayerData:
    from resin.io import open_volume

    try:
        reader = open_volume(path, channel)
    except TimePointsError:
        reader = open_volume(path, channel, 0)
    voxel_size = reader.voxel_size
    name = Path(path.rstrip("/")).name.split(".")[0]
    kwargs: dict[str, Any] = {"name": f"{name}_c{channel}", "blending": "additive",
                              "metadata": {"channel": channel, "channels": reader.channels}}
    data = _level(reader, path)
    if voxel_size is not None:
        kwargs["scale"] = _scale(voxel_size, data)
    return (data, kwargs, "image")


def _scale(voxel_size: Any, data: Any) -> tuple[float, ...]:
    """napari's scale for ``data``: the voxel size, and 1 per time point in front."""
    zyx = tuple(float(v) for v in voxel_size)
    return (1.0,) * (len(data.shape) - 3) + zyx


def _level(reader: Any, path: str) -> Any:
    """The reader's volume, or for a time series (the reader opened at time point 0) all
    of its time points as one (T, Z, Y, X) array: napari gives it a time slider."""
    count = int(reader.time_points) if reader.time is not None else 1
    nbytes = count * int(np.prod(reader.shape)) * np.dtype(reader.dtype).itemsize
    if count > 1:
        if nbytes > IN_MEMORY_BYTES:
            return SeriesVolume(path, reader, count)
        from resin.io import open_volume

        with reader:
            first = reader.read()
        rest = []
        for t in range(1, count):  # one file handle at a time
            with open_volume(path, reader.channel, t) as other:
                rest.append(other.read())
        return np.stack([first, *rest])
    if nbytes <= IN_MEMORY_BYTES:
        with reader:
            return reader.read()
    return LazyVolume(reader)


def _expand(key: Any, ndim: int) -> tuple[Any, ...]:
    """An index as a tuple of ``ndim`` entries (an Ellipsis or missing ones: whole axes)."""
    if not isinstance(key, tuple):
        key = (key,)
    if any(k is Ellipsis for k in key):
        i = next(i for i, k in enumerate(key) if k is Ellipsis)
        key = key[:i] + (slice(None),) * (ndim - len(key) + 1) + key[i + 1:]
    return key + (slice(None),) * (ndim - len(key))


def _lower_levels(path: str) -> list[str]:
    """Paths of an OME-Zarr image's levels after the first (none for anything else)."""
    if not os.path.isdir(path):
        return []
    try:
        import zarr

        node = zarr.open(path, mode="r")
        if not isinstance(node, zarr.Group):
            return []
        attrs: dict[str, Any] = dict(node.attrs)
        ome: Any = attrs.get("ome", attrs)
        datasets = ome["multiscales"][0]["datasets"]
        return [str(d["path"]) for d in datasets[1:]]
    except Exception:  # noqa: BLE001 - no levels to add; level 0 was read by resin.io
        return []


class LazyVolume:
    """A volume on disk as an array napari can slice: each index reads only its region."""

    def __init__(self, reader: Any) -> None:
        self._reader = reader
        self.shape = tuple(int(s) for s in reader.shape)
        self.dtype = np.dtype(reader.dtype)
        self.ndim = 3
        self.size = int(np.prod(self.shape))

    def __getitem__(self, key: Any) -> np.ndarray:
        key = _expand(key, 3)
        region, after = [], []
        for k, n in zip(key, self.shape, strict=True):
            if isinstance(k, slice):
                start, stop, step = k.indices(n)
                if step < 0:
                    raise IndexError("negative steps are not supported")
                region.append(slice(start, max(start, stop)))
                after.append(slice(None, None, step))
            else:
                i = int(k) + n if int(k) < 0 else int(k)
                if not 0 <= i < n:
                    raise IndexError(f"index {k} is out of bounds for an axis of {n}")
                region.append(slice(i, i + 1))
                after.append(0)  # type: ignore[arg-type]
        if any(r.stop <= r.start for r in region):
            empty = tuple(len(range(*k.indices(n))) for k, n in zip(key, self.shape, strict=True)
                          if isinstance(k, slice))
            return np.empty(empty, self.dtype)
        return self._reader.read(tuple(region))[tuple(after)]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        data = self._reader.read()
        return data if dtype is None else data.astype(dtype)

    def close(self) -> None:
        """Close the file (a :class:`SeriesVolume` closes the time points it lets go)."""
        self._reader.close()


class SeriesVolume:
    """The time points of a file as one (T, Z, Y, X) array napari can slice: each time
    point is opened when shown and read region by region as :class:`LazyVolume`; the
    :data:`OPEN_TIME_POINTS` last shown stay open (a long series would otherwise hold a
    file handle per time point)."""

    def __init__(self, path: str, first: Any, count: int) -> None:
        from collections import OrderedDict

        self._path = path
        self._channel = first.channel
        self._volumes: OrderedDict[int, LazyVolume] = OrderedDict({0: LazyVolume(first)})
        self.shape = (count, *(int(s) for s in first.shape))
        self.dtype = np.dtype(first.dtype)
        self.ndim = 4
        self.size = int(np.prod(self.shape))

    def _volume(self, t: int) -> LazyVolume:
        from resin.io import open_volume

        if t in self._volumes:
            self._volumes.move_to_end(t)
            return self._volumes[t]
        volume = self._volumes[t] = LazyVolume(open_volume(self._path, self._channel, t))
        while len(self._volumes) > OPEN_TIME_POINTS:
            _, old = self._volumes.popitem(last=False)
            old.close()
        return volume

    def open_time_point(self, t: int) -> LazyVolume:
        """Time point ``t`` on a reader of its own, outside the slider's open ones (the
        caller closes it): for work in another thread."""
        from resin.io import open_volume

        return LazyVolume(open_volume(self._path, self._channel, t))

    def __getitem__(self, key: Any) -> np.ndarray:
        first, *rest = _expand(key, 4)
        n = self.shape[0]
        if isinstance(first, slice):
            times = range(*first.indices(n))
            parts = [self._volume(t)[tuple(rest)] for t in times]
            if parts:
                return np.stack(parts)
            return self._volume(0)[tuple(rest)][np.newaxis][:0]
        t = int(first) + n if int(first) < 0 else int(first)
        if not 0 <= t < n:
            raise IndexError(f"index {first} is out of bounds for an axis of {n}")
        return self._volume(t)[tuple(rest)]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        data = np.stack([np.asarray(self._volume(t)) for t in range(self.shape[0])])
        return data if dtype is None else data.astype(dtype)

    @property
    def open_time_points(self) -> list[int]:
        """The time points whose files are open now, least recently shown first."""
        return list(self._volumes)
