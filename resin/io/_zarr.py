"""Zarr v2/v3 arrays and OME-Zarr 0.4/0.5 images: reader and writer.

Reads go straight to the chunks a region touches. The zarr (v3) array API is safe for
concurrent reads from several threads, and for concurrent writes of regions that do not
share a chunk (a shard, when sharded): :attr:`ZarrWriter.chunks` is that write unit.
"""

from __future__ import annotations

import itertools
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from resin import _log
from resin._atomic import fsync_dir, fsync_file, replace_dir
from resin.errors import OutputExistsError, ResumeError, UsageError, VolumeError
from resin.io._common import (
    Region,
    VoxelSize,
    check_channel,
    check_chunks,
    check_shape,
    check_time,
    check_voxel_size,
    check_write_dtype,
    check_write_region,
    chosen,
    make_parent,
    normalize_region,
    one_line,
    prepare_output,
    read_dtype,
    um_per_unit,
)

#: default chunk shape of written Zarr volumes (8 MiB of uint16): big enough for fast
#: storage, small enough that the runtime's slab of pending output chunks stays modest
DEFAULT_CHUNKS = (64, 256, 256)

_SPACE_NAMES = ("z", "y", "x")


def _zarr() -> Any:
    import zarr

    return zarr


def _axis_kind(name: str | None, kind: str | None) -> str:
    if kind in ("space", "time", "channel"):
        return kind
    name = (name or "").lower()
    if name in _SPACE_NAMES:
        return "space"
    if name in ("t", "time"):
        return "time"
    if name in ("c", "channel", "channels"):
        return "channel"
    return kind or name or "unknown"


class _Axes:
    """Which dimensions of a stored array are z, y, x; the rest must be singletons."""

    def __init__(self, path: str, shape: tuple[int, ...], kinds: list[str],
                 names: list[str], channel: int | None = None,
                 time: int | None = None) -> None:
        spatial = [i for i, k in enumerate(kinds) if k == "space"]
        if len(spatial) < 3:
            raise VolumeError(
                f"{path}: is {len(spatial)}D (shape {shape}); resin needs a 3D ZYX volume"
            )
        if len(spatial) > 3:
            raise VolumeError(f"{path}: has {len(spatial)} spatial axes; resin needs 3 (z, y, x)")
        #: channels (time points) in the store, 1 without such an axis; the one read (None
        #: when there is one) and its axis
        self.channel_axis, self.channels = _choice_axis(path, shape, kinds, "channel")
        self.channel = check_channel(path, self.channels, channel)
        self.time_axis, self.time_points = _choice_axis(path, shape, kinds, "time")
        self.time = check_time(path, self.time_points, time)
        for i, kind in enumerate(kinds):
            if (kind == "space" or shape[i] == 1 or i == self.channel_axis
                    or i == self.time_axis):
                continue
            raise VolumeError(f"{path}: has {shape[i]} entries along axis '{names[i]}'; "
                              "resin processes one 3D volume: extract it first")
        self.spatial = spatial
        self.ndim = len(shape)
        z, y, x = (int(shape[i]) for i in spatial)
        self.shape = (z, y, x)

    def index(self, region: Region) -> tuple[int | slice, ...]:
        idx: list[int | slice] = [0] * self.ndim
        for axis, s in zip(self.spatial, region, strict=True):
            idx[axis] = s
        if self.channel_axis is not None and self.channel is not None:
            idx[self.channel_axis] = self.channel
        if self.time_axis is not None and self.time is not None:
            idx[self.time_axis] = self.time
        return tuple(idx)

    def pick(self, values: tuple[int, ...]) -> tuple[int, int, int]:
        z, y, x = (int(values[i]) for i in self.spatial)
        return z, y, x


def _choice_axis(path: str, shape: tuple[int, ...], kinds: list[str],
                 kind: str) -> tuple[int | None, int]:
    """The one axis of ``kind`` longer than 1 (None if there is none) and its length."""
    found = [i for i, k in enumerate(kinds) if k == kind and shape[i] > 1]
    if len(found) > 1:
        raise VolumeError(f"{path}: has {len(found)} {kind} axes; resin reads one")
    return (found[0], int(shape[found[0]])) if found else (None, 1)


def _plain_axes(path: str, shape: tuple[int, ...], names: list[str] | None,
                channel: int | None = None, time: int | None = None) -> _Axes:
    """Axes of an array without OME metadata: named if it has dimension names, else
    (t, c,) z, y, x with the leading axes read as time and channel."""
    ndim = len(shape)
    if ndim < 3:
        raise VolumeError(f"{path}: is {ndim}D (shape {shape}); resin needs a 3D ZYX volume")
    if ndim > 5:
        raise VolumeError(f"{path}: has {ndim} dimensions; resin reads 3D ZYX (or TCZYX with "
                          "one channel and time point)")
    if names and len(names) == ndim and all(names):
        kinds = [_axis_kind(n, None) for n in names]
        if kinds.count("space") == 3:
            return _Axes(path, shape, kinds, list(names), channel, time)
    default = {3: ["z", "y", "x"], 4: ["c", "z", "y", "x"], 5: ["t", "c", "z", "y", "x"]}[ndim]
    return _Axes(path, shape, [_axis_kind(n, None) for n in default], default, channel, time)


def _scale_of(transforms: Any) -> list[float] | None:
    if not isinstance(transforms, list):
        return None
    scale = None
    for t in transforms:
        if isinstance(t, dict) and t.get("type") == "scale" and isinstance(t.get("scale"), list):
            scale = [float(v) for v in t["scale"]]
    return scale


class ZarrReader:
    """A Zarr array or the full-resolution level of an OME-Zarr image, read by region."""

    def __init__(self, path: str, channel: int | None = None, time: int | None = None) -> None:
        zarr = _zarr()
        self.path = path
        self._channel = channel
        self._time = time
        if not Path(path).exists():
            raise VolumeError(f"{path}: no such file or directory")
        try:
            with warnings.catch_warnings():  # zarr warns about e.g. v2 codecs; errors are ours
                warnings.simplefilter("ignore")
                node = zarr.open(path, mode="r")
        except Exception as exc:
            raise VolumeError(f"{path}: not a readable Zarr array or OME-Zarr image "
                              f"({one_line(exc)})") from exc
        self.attrs: dict[str, Any] = {}
        self.voxel_size: VoxelSize | None = None
        try:
            if isinstance(node, zarr.Array):
                self._open_plain(node)
            else:
                self._open_group(node)
        except VolumeError:
            raise
        except Exception as exc:
            raise VolumeError(f"{path}: malformed Zarr/OME-Zarr metadata ({one_line(exc)})") from exc
        #: False for a store a run is still writing (or left unfinished)
        self.attrs = dict(self.attrs)
        self.complete = self.attrs.pop("complete", True) is not False and not path.rstrip(
            "/").endswith(".partial")
        self.dtype: np.dtype = read_dtype(np.dtype(self._array.dtype), path)
        self.shape: tuple[int, int, int] = self._axes.shape
        self.chunks: tuple[int, int, int] = self._axes.pick(tuple(self._array.chunks))
        self.channels: int = self._axes.channels
        self.channel: int | None = self._axes.channel
        self.time_points: int = self._axes.time_points
        self.time: int | None = self._axes.time
        self.format += chosen(self)

    def _open_plain(self, array: Any) -> None:
        self._array = array
        zfmt = array.metadata.zarr_format
        attrs = dict(array.attrs)
        names = None
        if zfmt == 3 and getattr(array.metadata, "dimension_names", None):
            names = [str(n) if n is not None else "" for n in array.metadata.dimension_names]
        elif isinstance(attrs.get("_ARRAY_DIMENSIONS"), list):
            names = [str(n) for n in attrs["_ARRAY_DIMENSIONS"]]
        self._axes = _plain_axes(self.path, tuple(array.shape), names, self._channel,
                                 self._time)
        self.format = f"Zarr v{zfmt} array"
        vs = attrs.get("voxel_size")
        factor = um_per_unit(attrs.get("voxel_size_unit", "micrometer"))
        if isinstance(vs, list) and len(vs) == 3 and factor is not None:
            try:
                self.voxel_size = check_voxel_size([float(v) * factor for v in vs])
            except UsageError:
                self.voxel_size = None
        if isinstance(attrs.get("resin"), dict):
            self.attrs = attrs["resin"]

    def _open_group(self, group: Any) -> None:
        attrs = dict(group.attrs)
        if "ome" in attrs and isinstance(attrs["ome"], dict):
            ome = attrs["ome"]
            version = str(ome.get("version", "0.5"))
        else:
            ome = attrs
            version = ""
        if "multiscales" not in ome and "bioformats2raw.layout" in ome and "0" in group:
            # bioformats2raw layout: the first image is the group "0"
            return self._open_group(group["0"])
        if "multiscales" not in ome:
            arrays = sorted(name for name, _ in group.arrays())
            hint = f"; point at one of its arrays: {', '.join(arrays[:5])}" if arrays else ""
            raise VolumeError(f"{self.path}: is a Zarr group without OME-Zarr multiscales "
                              f"metadata{hint}")
        ms = ome["multiscales"][0]
        version = version or str(ms.get("version", "0.4"))
        level = ms["datasets"][0]
        self._array = group[level["path"]]
        shape = tuple(int(s) for s in self._array.shape)
        raw_axes = ms.get("axes") or ["t", "c", "z", "y", "x"][-len(shape):]
        names, kinds, units = [], [], []
        for ax in raw_axes:
            if isinstance(ax, dict):
                names.append(str(ax.get("name", "")))
                kinds.append(_axis_kind(ax.get("name"), ax.get("type")))
                units.append(ax.get("unit"))
            else:
                names.append(str(ax))
                kinds.append(_axis_kind(str(ax), None))
                units.append(None)
        if len(names) != len(shape):
            raise VolumeError(f"{self.path}: OME-Zarr axes {names} do not match the array's "
                              f"{len(shape)} dimensions")
        self._axes = _Axes(self.path, shape, kinds, names, self._channel, self._time)
        self.format = f"OME-Zarr {version} (Zarr v{self._array.metadata.zarr_format})"
        scale = _scale_of(level.get("coordinateTransformations"))
        outer = _scale_of(ms.get("coordinateTransformations"))
        if scale is not None and outer is not None and len(outer) == len(scale):
            scale = [a * b for a, b in zip(scale, outer, strict=True)]
        self.voxel_size = self._voxel_size(scale, units)
        if isinstance(attrs.get("resin"), dict):
            self.attrs = attrs["resin"]

    def _voxel_size(self, scale: list[float] | None, units: list[Any]) -> VoxelSize | None:
        if scale is None or len(scale) != self._axes.ndim:
            return None
        values = [scale[i] for i in self._axes.spatial]
        spatial_units = [units[i] for i in self._axes.spatial]
        if all(u is None for u in spatial_units):
            if all(v == 1.0 for v in values):
                return None  # an identity transform without units says nothing
            factors: list[float | None] = [1.0, 1.0, 1.0]  # unitless scale: micrometres
        else:
            factors = [um_per_unit(u) for u in spatial_units]
        if any(f is None for f in factors):
            _log.debug(f"{self.path}: unknown axis units {spatial_units}; voxel size unknown")
            return None
        try:
            return check_voxel_size([v * f for v, f in zip(values, factors, strict=True)
                                     if f is not None])
        except UsageError:
            return None

    def read(self, region: Region | None = None) -> np.ndarray:
        region = normalize_region(region, self.shape)
        try:
            data = np.asarray(self._array[self._axes.index(region)])
        except Exception as exc:
            raise VolumeError(f"{self.path}: could not read region {_fmt(region)} "
                              f"({one_line(exc)}); the store may be truncated or corrupt") from exc
        return data.astype(self.dtype, copy=False)

    def stored_chunks(self) -> tuple[int, int]:
        """(chunks stored, chunks in the whole array): an absent chunk reads as the fill
        value, as Zarr writes a chunk that holds only that value, or as a copy that
        stopped early leaves it."""
        return int(self._array.nchunks_initialized), int(self._array.nchunks)

    def close(self) -> None:
        pass

    def __enter__(self) -> ZarrReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _fmt(region: Region) -> str:
    return "[" + ", ".join(f"{s.start}:{s.stop}" for s in region) + "]"


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _halved(shape: tuple[int, int, int], k: int) -> tuple[int, int, int]:
    z, y, x = (_ceil_div(n, 2 ** k) for n in shape)
    return z, y, x


def _mean2(data: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Means of 2 x 2 x 2 voxels (an odd last plane, row or column averages with itself),
    rounded half to even for integer dtypes."""
    pad = [(0, n % 2) for n in data.shape]
    a = np.pad(data.astype(np.float32), pad, mode="edge") if any(p[1] for p in pad) else \
        data.astype(np.float32)
    z, y, x = (n // 2 for n in a.shape)
    m = a.reshape(z, 2, y, 2, x, 2).mean(axis=(1, 3, 5), dtype=np.float32)
    if dtype.kind == "f":
        return m.astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.rint(m), info.min, info.max).astype(dtype)


def _is_ome(path: str) -> bool:
    return path.rstrip("/").lower().removesuffix(".partial").endswith(".ome.zarr")


def _is_store(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink() and any(
        (path / name).exists() for name in ("zarr.json", ".zarray", ".zgroup"))


class ZarrWriter:
    """Writes a Zarr v3 array (``.zarr``) or an OME-Zarr 0.5 image (``.ome.zarr``).

    The store is built at ``<path>.partial`` and renamed to ``path`` on a clean
    :meth:`close`; an existing ``path`` (``overwrite=True``) is replaced only then, so a
    failed write leaves it intact. Until then the store's ``resin.complete`` attribute is
    false. ``chunks`` is the unit of independent writes: regions that do not share one can
    be written from different threads (or processes), each once when it is complete.
    """

    def __init__(self, path: str, shape: tuple[int, int, int], dtype: object,
                 voxel_size: VoxelSize | None = None, chunks: tuple[int, int, int] | None = None,
                 overwrite: bool = False, attrs: dict[str, Any] | None = None,
                 shards: tuple[int, int, int] | None = None, resume: bool = False,
                 levels: int = 1) -> None:
        self.path = path
        self.levels = int(levels)
        self.shape = check_shape(shape)
        self.dtype: np.dtype = check_write_dtype(dtype)
        self.voxel_size = check_voxel_size(voxel_size)
        inner = check_chunks(chunks, self.shape, DEFAULT_CHUNKS)
        outer = None if shards is None else check_shape(shards)
        if outer is not None and any(s % c for s, c in zip(outer, inner, strict=True)):
            raise UsageError(f"shards {outer} must be whole multiples of chunks {inner}")
        self.attrs = dict(attrs or {})
        try:
            json.dumps(self.attrs)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"volume attrs must be JSON-serializable ({exc})") from exc
        self.ome = _is_ome(path)
        self._pyramid: list[Any] = []
        if self.levels > 1:
            f = 2 ** (self.levels - 1)
            if not self.ome:
                raise UsageError(f"{path}: a multiscale pyramid (--levels) needs an .ome.zarr "
                                 "output")
            if any(c % f and c < n for c, n in zip(inner, self.shape, strict=True)):
                raise UsageError(f"{path}: {self.levels} levels need chunks divisible by {f}, "
                                 f"got {inner}; use fewer levels")
        elif self.levels < 1:
            raise UsageError(f"--levels must be at least 1, got {self.levels}")
        self.partial_path = path.rstrip("/") + ".partial"
        self._closed = False
        partial, final = Path(self.partial_path), Path(path)
        if final.exists() and not overwrite and not resume:
            raise OutputExistsError(f"{path} already exists; use --overwrite to replace it")
        if final.exists() and not _is_store(final):
            raise OutputExistsError(f"{path} exists and is not a Zarr store; refusing to "
                                    "replace it")
        if resume and partial.exists():
            self._array = self._reopen(inner, outer)
        else:
            if resume and final.exists():
                raise ResumeError(f"{path} is already complete (there is no {partial.name} "
                                  "to resume); use --overwrite to write it again")
            if partial.exists() or partial.is_symlink():
                if not overwrite:
                    raise OutputExistsError(
                        f"an interrupted run left {partial}; use --resume to continue it or "
                        "--overwrite to start over")
                prepare_output(self.partial_path, True)
            make_parent(path)
            self._array = self._create(inner, outer)
        self.chunks: tuple[int, int, int] = outer or inner
        self.inner_chunks: tuple[int, int, int] = inner

    def _create(self, inner: tuple[int, int, int], outer: tuple[int, int, int] | None) -> Any:
        zarr = _zarr()
        vs = self.voxel_size
        kw: dict[str, Any] = dict(shape=self.shape, dtype=self.dtype, chunks=inner, shards=outer,
                                  fill_value=0, dimension_names=_SPACE_NAMES)
        if self.ome:
            axes: list[dict[str, str]] = [{"name": n, "type": "space"} for n in _SPACE_NAMES]
            if vs is not None:
                for ax in axes:
                    ax["unit"] = "micrometer"
            name = Path(self.path.rstrip("/")).name[: -len(".ome.zarr")]
            self.attrs["complete"] = False
            base = list(vs) if vs is not None else [1.0, 1.0, 1.0]
            multiscale = {
                "name": name,
                "axes": axes,
                "datasets": [{"path": str(k), "coordinateTransformations": [
                    {"type": "scale", "scale": [v * 2 ** k for v in base]}
                ]} for k in range(self.levels)],
            }
            if self.levels > 1:
                multiscale["type"] = "mean"  # each level: means of 2 x 2 x 2 voxels
            group_attrs: dict[str, Any] = {"ome": {"version": "0.5", "multiscales": [multiscale]},
                                           "resin": self.attrs}
            self._group = zarr.open_group(self.partial_path, mode="w-", zarr_format=3,
                                          attributes=group_attrs)
            for k in range(1, self.levels):
                self._pyramid.append(self._group.create_array(
                    str(k), shape=_halved(self.shape, k), dtype=self.dtype,
                    chunks=tuple(_ceil_div(c, 2 ** k) for c in inner), fill_value=0,
                    dimension_names=_SPACE_NAMES))
            return self._group.create_array("0", **kw)
        self.attrs["complete"] = False
        array_attrs: dict[str, Any] = {"resin": self.attrs}
        if vs is not None:
            array_attrs.update(voxel_size=list(vs), voxel_size_unit="micrometer")
        self._group = None
        return zarr.create_array(self.partial_path, zarr_format=3, attributes=array_attrs, **kw)

    def _reopen(self, inner: tuple[int, int, int], outer: tuple[int, int, int] | None) -> Any:
        zarr = _zarr()
        try:
            node = zarr.open(self.partial_path, mode="r+")
            self._group = node if isinstance(node, zarr.Group) else None
            array = node["0"] if isinstance(node, zarr.Group) else node
            self._pyramid = [node[str(k)] for k in range(1, self.levels)]
        except Exception as exc:
            raise ResumeError(f"{self.partial_path}: cannot reopen the partial output to resume "
                              f"({one_line(exc)}); use --overwrite to start over") from exc
        found = (tuple(array.shape), np.dtype(array.dtype), tuple(array.chunks),
                 None if array.shards is None else tuple(array.shards))
        wanted = (self.shape, self.dtype, inner, outer)
        if found != wanted:
            raise ResumeError(
                f"{self.partial_path}: holds shape/dtype/chunks/shards {found}, this run "
                f"writes {wanted}; use --overwrite to start over"
            )
        return array

    def write(self, region: Region, array: np.ndarray) -> None:
        """Write ``region`` (and, with a pyramid, its 2x, 4x, ... means: the region must then
        start on, and end on or at the volume's end past, a multiple of the coarsest factor)."""
        region, data = check_write_region(region, array, self.shape, self.dtype, self.path)
        targets: list[tuple[Any, tuple[slice, ...], np.ndarray]] = [(self._array, region, data)]
        if self._pyramid:
            f = 2 ** (self.levels - 1)
            if any(s.start % f or (s.stop % f and s.stop != n)
                   for s, n in zip(region, self.shape, strict=True)):
                raise UsageError(f"{self.path}: pyramid writes must be aligned to {f} voxels, "
                                 f"got region {_fmt(region)}")
            level = data
            for k, arr in enumerate(self._pyramid, start=1):
                level = _mean2(level, self.dtype)
                sub = tuple(slice(s.start >> k, (s.start >> k) + n)
                            for s, n in zip(region, level.shape, strict=True))
                targets.append((arr, sub, level))
        try:
            for arr, where, values in targets:
                arr[where] = values
        except Exception as exc:
            raise VolumeError(f"{self.path}: could not write region {_fmt(region)} "
                              f"({one_line(exc)})") from exc

    def flush(self, region: Region) -> None:
        """Make the chunk (shard) files holding ``region`` durable (fsync) before a marker
        claims them; chunks never written hold the fill value and have no file."""
        region = normalize_region(region, self.shape)
        dirs: set[Path] = set()
        for k, arr in enumerate([self._array, *self._pyramid]):
            root = Path(self.partial_path) / (arr.path or "")
            chunks = arr.shards or arr.chunks
            f = 2 ** k
            ranges = [range(s.start // f // c, _ceil_div(_ceil_div(s.stop, f), c))
                      for s, c in zip(region, chunks, strict=True)]
            for idx in itertools.product(*ranges):
                f = root / arr.metadata.encode_chunk_key(idx)
                if fsync_file(f):
                    dirs.add(f.parent)
        for d in dirs:
            fsync_dir(d)

    def close(self) -> None:
        """Mark the store complete and move it to ``path`` (replacing an old output only now)."""
        if self._closed:
            return
        self._closed = True
        target = self._group if self._group is not None else self._array
        resin_attrs = dict(target.attrs.get("resin", {}))
        resin_attrs["complete"] = True
        target.attrs["resin"] = resin_attrs
        replace_dir(self.partial_path, self.path.rstrip("/"))

    def abandon(self) -> None:
        """Stop writing and leave ``<path>.partial`` for a later ``resume=True``."""
        self._closed = True

    def __enter__(self) -> ZarrWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object, /) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abandon()


def _level_arrays(node: Any) -> list[tuple[str, Any]]:
    """(path inside the store, array) of every resolution level: the OME multiscale's
    datasets in order, or the store itself for a plain array."""
    zarr = _zarr()
    if isinstance(node, zarr.Array):
        return [("", node)]
    ms = dict(node.attrs)["ome"]["multiscales"][0]
    return [(str(d["path"]), node[str(d["path"])]) for d in ms["datasets"]]


def _layout(array: Any) -> tuple[Any, ...]:
    return (tuple(array.shape), np.dtype(array.dtype), tuple(array.chunks),
            None if array.shards is None else tuple(array.shards))


def _stacked(array: Any, lead_shape: tuple[int, ...], names: tuple[str, ...]) -> dict[str, Any]:
    """``create_array`` arguments for ``array`` with leading axes of ``lead_shape`` in
    front: chunks (shards) of 1 along them, ``array``'s own chunks, codecs and fill value."""
    ones = (1,) * len(lead_shape)
    return dict(shape=lead_shape + tuple(array.shape), dtype=array.dtype,
                chunks=ones + tuple(array.chunks),
                shards=None if array.shards is None else ones + tuple(array.shards),
                compressors=array.compressors, serializer=array.serializer,
                filters=array.filters, fill_value=array.fill_value, dimension_names=names)


def assemble_parts(root: str, parts: list[tuple[tuple[int, ...], str]],
                   axes: list[tuple[str, str, int]], attrs: dict[str, Any],
                   image_name: str | None = None) -> int:
    """Build at ``root`` one store holding every part along leading axes, without copying.

    ``parts``: (position along the leading axes, path of a complete 3-D store resin
    wrote), all with the same levels, shape, dtype, chunks and shards; ``axes``: (name,
    OME type, length) of each leading axis, e.g. ``("t", "time", 40)``. The new arrays
    have chunks (shards) of 1 along the leading axes and the parts' own within, so a
    part's chunk (shard) file is, byte for byte, the new array's file at the part's
    position: the files are renamed into place. Re-running after an interruption
    continues (files already moved are skipped). ``attrs`` become the store's ``resin``
    attributes; ``image_name`` the OME image's name (default: the first part's). The
    first file moved per level is read back and compared, so a codec that would lay bytes
    out differently is caught before any other file moves. Returns how many files it
    moved.
    """
    zarr = _zarr()
    first_node = zarr.open(parts[0][1], mode="r")
    part_levels = [_level_arrays(first_node)] + [_level_arrays(zarr.open(path, mode="r"))
                                                 for _, path in parts[1:]]
    levels = part_levels[0]
    for (_, path), other in zip(parts[1:], part_levels[1:], strict=True):
        if [(n, _layout(a)) for n, a in other] != [(n, _layout(a)) for n, a in levels]:
            raise ResumeError(f"{path}: was written with another layout than {parts[0][1]}; "
                              "run again with --overwrite")
    lead_shape = tuple(n for _, _, n in axes)
    names = tuple(name for name, _, _ in axes) + _SPACE_NAMES
    dst_root = Path(root)
    targets: list[Any] = []
    if isinstance(first_node, zarr.Array):
        array = levels[0][1]
        if (dst_root / "zarr.json").exists():
            targets.append(zarr.open_array(root, mode="r+"))
        else:
            array_attrs = {k: v for k, v in dict(array.attrs).items() if k != "resin"}
            array_attrs["resin"] = attrs
            targets.append(zarr.create_array(root, attributes=array_attrs, zarr_format=3,
                                             **_stacked(array, lead_shape, names)))
    else:
        ome = dict(first_node.attrs)["ome"]
        ms = dict(ome["multiscales"][0])
        ms["axes"] = [{"name": n, "type": t} for n, t, _ in axes] + list(ms["axes"])
        if image_name is not None:
            ms["name"] = image_name
        datasets = []
        for d in ms["datasets"]:
            d = dict(d)
            d["coordinateTransformations"] = [
                {**tr, "scale": [1.0] * len(axes) + list(tr["scale"])}
                if tr.get("type") == "scale" else tr for tr in d["coordinateTransformations"]]
            datasets.append(d)
        ms["datasets"] = datasets
        group = zarr.open_group(root, mode="a", zarr_format=3)
        group.attrs.update({"ome": {**ome, "multiscales": [ms]}, "resin": attrs})
        targets = [group[name] if name in group else
                   group.create_array(name, **_stacked(array, lead_shape, names))
                   for name, array in levels]
    moved = 0
    for level, ((name, first), target) in enumerate(zip(levels, targets, strict=True)):
        want = (lead_shape + tuple(first.shape), (1,) * len(axes) + tuple(first.chunks))
        if (tuple(target.shape), tuple(target.chunks)) != want:
            raise ResumeError(f"{root}: holds an array {name or '(root)'} of another shape "
                              f"than this series writes; run again with --overwrite")
        checked = False
        for (index, path), arrays in zip(parts, part_levels, strict=True):
            src_array = arrays[level][1]
            unit = tuple(src_array.shards or src_array.chunks)
            grid = [range(_ceil_div(n, c)) for n, c in zip(src_array.shape, unit, strict=True)]
            src_dir = Path(path) / name
            dst_dir = dst_root / name
            for idx in itertools.product(*grid):
                src = src_dir / src_array.metadata.encode_chunk_key(idx)
                if not src.exists():
                    continue  # never written (the fill value), or moved before a stop
                dst = dst_dir / target.metadata.encode_chunk_key(index + idx)
                dst.parent.mkdir(parents=True, exist_ok=True)
                moved += 1
                if checked:
                    src.replace(dst)
                    continue
                region = tuple(slice(i * c, min((i + 1) * c, n))
                               for i, c, n in zip(idx, unit, src_array.shape, strict=True))
                before = np.asarray(src_array[region])
                src.replace(dst)
                after = np.asarray(target[tuple(index) + region])
                if not np.array_equal(before, after):
                    dst.replace(src)
                    raise VolumeError(f"{path}: its chunks do not read back the same inside "
                                      f"{root} (zarr {zarr.__version__} codecs differ); "
                                      "the parts are kept, nothing was lost")
                checked = True
    return moved
