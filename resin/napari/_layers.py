"""Image layers in and out: which layers resin can enhance, and the layer a result becomes.

A bad layer is refused with a :class:`resin.errors.VolumeError` whose one sentence the
widget shows (never a traceback dialog).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from resin.errors import VolumeError


def layer_volume(layer: Any, values: bool = True) -> Any:
    """The ZYX array of an image layer (level 0 of a multiscale one), checked.

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
    if len(shape) > 3:
        raise VolumeError(f"'{name}' has {len(shape)} dimensions (shape {shape}); resin "
                          "enhances one 3-D ZYX volume: pick one time point or channel first")
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
                        name: str) -> dict[str, Any]:
    """Keyword arguments of ``viewer.add_image`` for a result of ``source`` run with ``plan``.

    The voxel size is divided by the model's scale, as for every resin output (output voxel
    k lies at input position k / scale), and the origin stays.
    """
    from resin.runtime.runner import output_voxel_size

    return {
        "name": name,
        "scale": output_voxel_size(tuple(source.scale)[-3:], plan),
        "translate": tuple(float(v) for v in np.asarray(source.translate)[-3:]),
        "colormap": source.colormap.name,
        # the source's display range, so raw and enhanced compare at a glance
        "contrast_limits": tuple(float(v) for v in source.contrast_limits),
        "blending": source.blending,
        "metadata": {"resin": record},
    }
