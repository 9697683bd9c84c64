"""The aligned frame of an oblique PSF, without torch (:mod:`resin.train.geometry` explains
it): enough to tell, before any training work, how much of a patch R keeps."""

from __future__ import annotations

import math

import numpy as np

#: 90-degree rotations in the aligned frame: (z', y) -> axial onto y; (z', x') -> onto x'
_P = {
    "y": np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]),
    "x": np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]]),
}
AXES = ("y", "x")


def aligned_basis(angle_deg: float) -> np.ndarray:
    """Q: columns are the aligned frame's axes (axial a, y, x') in patch (z, y, x) terms."""
    t = math.radians(angle_deg)
    c, s = math.cos(t), math.sin(t)
    return np.array([[c, 0.0, -s], [0.0, 1.0, 0.0], [s, 0.0, c]])


def aligned_extent(side: int, angle_deg: float) -> int:
    """Samples along z' and x' of the aligned box that fits inside a cube of ``side``."""
    t = math.radians(angle_deg)
    half = (side - 1) / 2 / (abs(math.cos(t)) + abs(math.sin(t)))
    return int(math.floor(2 * half + 1e-6)) + 1


def rotation_matrix(angle_deg: float, axis: str) -> np.ndarray:
    """B of R for ``axis``: ``R(v)(q) = v(B q)``, q in voxel offsets from the centre."""
    q = aligned_basis(angle_deg)
    return q @ _P[axis] @ q.T


def valid_crop(side: int, angle_deg: float) -> slice:
    """The centred part (along each axis) of a cube of ``side`` that R and R^-1 fill from
    inside the cube."""
    c = (side - 1) / 2
    worst = 1.0
    for axis in AXES:
        b = rotation_matrix(angle_deg, axis)
        worst = max(worst, np.abs(b).sum(axis=1).max(), np.abs(b).sum(axis=0).max())
    half = c / worst + 1e-6
    return slice(math.ceil(c - half), math.floor(c + half) + 1)


def kept_side(patch_size: tuple[int, ...], angle_deg: float) -> int:
    """The shortest side the discriminators see of a patch of ``patch_size``: the patch's
    own, or for an oblique PSF (a cube) the crop R leaves and the aligned box's."""
    if abs(angle_deg) <= 1e-9:
        return min(patch_size)
    side = patch_size[0]
    return min(side, len(range(side)[valid_crop(side, angle_deg)]),
               aligned_extent(side, angle_deg))
