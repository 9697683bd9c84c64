"""Test files in HDF5 layouts that microscopy software writes (h5py must be installed)."""

from __future__ import annotations

import h5py
import numpy as np


def _imaris_attr(text: str) -> np.ndarray:
    """An Imaris attribute: the text as an array of one-byte strings."""
    return np.array(list(text), dtype="S1")


def write_imaris(path, volumes: np.ndarray, voxel=(2.0, 0.5, 0.25), pad=(3, 5, 7)) -> None:
    """``volumes`` (T, C, Z, Y, X) in Imaris 5.5's layout, each stored padded by ``pad``
    (as Imaris pads to its chunks), with the true size and extents in DataSetInfo/Image."""
    t, c, z, y, x = volumes.shape
    with h5py.File(path, "w") as f:
        f.attrs["ImarisDataSet"] = _imaris_attr("ImarisDataSet")
        f.attrs["ImarisVersion"] = _imaris_attr("5.5.0")
        level = f.create_group("DataSet/ResolutionLevel 0")
        for ti in range(t):
            for ci in range(c):
                stored = np.zeros((z + pad[0], y + pad[1], x + pad[2]), volumes.dtype)
                stored[:z, :y, :x] = volumes[ti, ci]
                stored[z:] = 9999  # padding that must never be read
                level.create_dataset(f"TimePoint {ti}/Channel {ci}/Data", data=stored,
                                     chunks=(4, 8, 8))
        # a lower resolution level, which is not what resin reads
        f.create_dataset("DataSet/ResolutionLevel 1/TimePoint 0/Channel 0/Data",
                         data=np.zeros((2, 2, 2), volumes.dtype))
        img = f.create_group("DataSetInfo/Image")
        for key, n in (("X", x), ("Y", y), ("Z", z)):
            img.attrs[key] = _imaris_attr(str(n))
        for i, (n, v) in enumerate(zip((x, y, z), voxel[::-1], strict=True)):
            img.attrs[f"ExtMin{i}"] = _imaris_attr("-10.0")
            img.attrs[f"ExtMax{i}"] = _imaris_attr(repr(-10.0 + n * v))
        img.attrs["Unit"] = _imaris_attr("um")
