"""Image layers in and out: which layers resin can enhance, and the layer a result becomes.

A bad layer is refused with a :class:`resin.errors.VolumeError` whose one sentence the
widget shows (never a traceback dialog).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from resin.errors import UsageError, VolumeError


class TimePoint:
    """Volume ``t`` of a (T, Z, Y, X) array that reads only what is indexed (a lazy series
    stays lazy: its shape and dtype are known without reading it).

    A series read from a file (:class:`resin.napari._reader.SeriesVolume`) is read through
    a reader of this object's own, opened at the first read and closed by :meth:`close`:
    the series' own readers belong to the viewer's slider, which closes them as it moves
    on, so a job reading through them could lose its file mid-read."""

    def __init__(self, series: Any, t: int) -> None:
        self._series, self._t = series, t
        self._own: Any = None
        self.shape = tuple(int(s) for s in series.shape[1:])
        self.dtype = np.dtype(series.dtype)
        self.ndim = 3

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        opener = getattr(self._series, "open_time_point", None)
        if opener is None:
            return np.asarray(self._series[(self._t, *key)])
        if self._own is None:
            self._own = opener(self._t)
        return np.asarray(self._own[key])

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        data = self[...]
        return data if dtype is None else data.astype(dtype)

    def close(self) -> None:
        """Close the reader of its own, if it opened one."""
        if self._own is not None:
            self._own.close()
            self._own = None


def close_volume(volume: Any) -> None:
    """Close what :func:`time_point` opened (nothing for an array)."""
    if isinstance(volume, TimePoint):
        volume.close()


def slider_time(viewer: Any, layer: Any, count: int) -> int:
    """The time point of a (T, Z, Y, X) layer that the viewer's slider shows; a UsageError
    when the slider is past the layer's time points (napari shows none of it there)."""
    point = np.asarray(layer.world_to_data(viewer.dims.point), dtype=float)
    t = int(round(point[-4]))
    if not 0 <= t < count:
        raise UsageError(f"the slider is outside '{layer.name}''s {count} time points: move "
                         "it onto one of them")
    return t


def time_point(series: Any, t: int) -> Any:
    """Volume ``t`` of a (T, Z, Y, X) layer array: a view of a NumPy array, else read lazily
    (:class:`TimePoint`; :func:`close_volume` when done)."""
    return series[t] if isinstance(series, np.ndarray) else TimePoint(series, t)


def volume_at_slider(viewer: Any, layer: Any, values: bool = True) -> tuple[Any, int | None]:
    """The layer's checked ZYX volume (:func:`layer_series`) and None, or for a time series
    the time point the slider shows (:func:`slider_time`, :func:`time_point`) and its
    index."""
    data = layer_series(layer, values)
    if len(data.shape) == 3:
        return data, None
    t = slider_time(viewer, layer, int(data.shape[0]))
    return time_point(data, t), t


def layer_series(layer: Any, values: bool = True) -> Any:
    """The ZYX array of an image layer (level 0 of a multiscale one), or the (T, Z, Y, X)
    array of a layer holding one 3-D volume per index of its first axis (a time series),
    checked.

    Lazy arrays (dask, a file opened by the reader) stay lazy. With ``values``, NaN and
    infinity are looked for in in-memory arrays: one pass, little next to an enhancement
    but not for every refresh of the widget.
    """
    from napari.layers import Image

    if layer is None:
        raise VolumeError("no image layer: open a volume or File > Open Sample > resin first")
    name = getattr(layer, "name", "the layer")
    if not isinstance(layer, Image):
        raise VolumeError(f"'{name}' is a {type(layer).__name__} layer; pick an image layer")
    if layer.rgb:
        raise VolumeError(f"'{name}' is an RGB image; resin enhances one channel: split the "
                          "channels first (layer list: right-click > Split RGB)")
    data = layer.data[0] if layer.multiscale else layer.data
    shape = tuple(int(s) for s in data.shape)
    while len(shape) > 3 and shape[0] == 1:
        data = data[0]
        shape = shape[1:]
    if len(shape) < 3:
        raise VolumeError(f"'{name}' is {len(shape)}-D (shape {shape}); resin enhances 3-D "
                          "z-stacks (ZYX)")
    if len(shape) > 4:
        raise VolumeError(f"'{name}' has {len(shape)} dimensions (shape {shape}); resin "
                          "enhances one 3-D ZYX volume or a series of them (TZYX): pick one "
                          "channel first")
    if len(shape) == 4 and shape[0] == 0:
        raise VolumeError(f"'{name}' holds no volume (shape {shape})")
    dtype = np.dtype(data.dtype)
    if dtype.kind not in "uif":
        raise VolumeError(f"'{name}' holds {dtype} values; resin needs numbers (uint8, uint16 "
                          "or float32)")
    if values and dtype.kind == "f" and isinstance(data, np.ndarray):
        bad = data.size - int(np.count_nonzero(np.isfinite(data)))
        if bad:
            raise VolumeError(f"'{name}' holds {bad} NaN or infinite values; resin needs finite "
                              "numbers: replace them first (e.g. with numpy.nan_to_num)")
    return data


def source_file(layer: Any) -> str | None:
    """The file the layer was opened from, if resin can read that format and the layer is
    all of it (not one channel of a multi-channel file: that layer is used as data)."""
    from resin.io import volume_format

    if getattr(layer, "metadata", {}).get("channel") is not None:
        return None
    path = getattr(getattr(layer, "source", None), "path", None)
    if not path or not Path(path).exists():
        return None
    try:
        volume_format(path)
    except VolumeError:
        return None
    return str(path)


def result_layer_kwargs(source: Any, plan: Any, record: dict[str, Any],
                        name: str, lead: int = 0) -> dict[str, Any]:
    """Keyword arguments of ``viewer.add_image`` for a result of ``source`` run with ``plan``.

    The voxel size is divided by the model's scale, as for every resin output (output voxel
    k lies at input position k / scale), and the origin stays. ``lead``: axes in front of
    z, y, x that the result keeps (1 for a time series), with the source's scale and origin.
    """
    from resin.runtime.runner import output_voxel_size

    scale = tuple(float(v) for v in source.scale)
    translate = tuple(float(v) for v in np.asarray(source.translate))
    zyx = output_voxel_size(scale[-3:], plan)
    assert zyx is not None
    return {
        "name": name,
        "scale": scale[len(scale) - 3 - lead:len(scale) - 3] + zyx,
        "translate": translate[len(translate) - 3 - lead:],
        "colormap": source.colormap.name,
        # the source's display range, so raw and enhanced compare at a glance
        "contrast_limits": tuple(float(v) for v in source.contrast_limits),
        "blending": source.blending,
        "metadata": {"resin": record},
    }
