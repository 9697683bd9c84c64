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

from resin.errors import ChannelsError, VolumeError

#: volumes up to this size are loaded into memory when opened
IN_MEMORY_BYTES = 512 * 2**20

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
    except ChannelsError:
        try:
            open_volume(path, 0).close()  # one layer per channel, if one channel opens
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
    levels: list[Any] = [_level(reader)]
    for sub in _lower_levels(path):
        try:
            levels.append(_level(open_volume(os.path.join(path, sub))))
        except VolumeError:
            break  # napari still shows the levels that could be read
    name = Path(path.rstrip("/")).name.split(".")[0]
    kwargs: dict[str, Any] = {"name": name}
    if reader.voxel_size is not None:
        kwargs["scale"] = tuple(float(v) for v in reader.voxel_size)
    if reader.attrs:
        kwargs["metadata"] = {"resin": dict(reader.attrs)}
    if len(levels) > 1:
        kwargs["multiscale"] = True
        return [(levels, kwargs, "image")]
    return [(levels[0], kwargs, "image")]


def _channel_layer(path: str, channel: int) -> LayerData:
    from resin.io import open_volume

    reader = open_volume(path, channel)
    voxel_size = reader.voxel_size
    name = Path(path.rstrip("/")).name.split(".")[0]
    kwargs: dict[str, Any] = {"name": f"{name}_c{channel}", "blending": "additive",
                              "metadata": {"channel": channel, "channels": reader.channels}}
    if voxel_size is not None:
        kwargs["scale"] = tuple(float(v) for v in voxel_size)
    return (_level(reader), kwargs, "image")


def _level(reader: Any) -> Any:
    nbytes = int(np.prod(reader.shape)) * np.dtype(reader.dtype).itemsize
    if nbytes <= IN_MEMORY_BYTES:
        with reader:
            return reader.read()
    return LazyVolume(reader)


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
        if not isinstance(key, tuple):
            key = (key,)
        if any(k is Ellipsis for k in key):
            i = next(i for i, k in enumerate(key) if k is Ellipsis)
            key = key[:i] + (slice(None),) * (3 - len(key) + 1) + key[i + 1:]
        key = key + (slice(None),) * (3 - len(key))
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
