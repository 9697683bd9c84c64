"""The geometry of RESIN's constraints: the rotation R and the axial/lateral MIPs.

Coordinates are (z, y, x) voxel offsets from a patch's centre. The PSF's long (axial) axis
is ``a = (cos t, 0, sin t)``: ``t`` degrees from z towards x. The *aligned frame*
(z', y, x') has z' along ``a`` and x' along ``b = (-sin t, 0, cos t)``; a point ``u`` of the
aligned frame is the point ``Q u`` of the patch, ``Q = [a | e_y | b]``.

- ``R`` (axis ``"y"`` or ``"x"``) rotates the patch by 90 degrees in the aligned (z', y) or
  (z', x') plane, so the axial direction lands on a lateral one: ``R(v)(q) = v(B q)``
  with ``B = Q P Q^T``. ``R^-1`` uses ``B^T``. With t = 0 these are exact transposes and
  flips (any patch shape); otherwise trilinear resampling of a cubic patch, and only a
  centred cube (:attr:`Geometry.valid`) of the result is free of the patch's corners.
- The axial MIP is the maximum along z' (a slanted MIP for t != 0) and the lateral MIPs
  are the maxima along y and along x', each over the centred cube of the aligned frame
  that lies inside the patch (the same depth for all three). The network itself always
  runs on unrotated data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from resin.errors import MissingDependencyError
from resin.train.frame import (  # noqa: F401 - re-exported: the frame is part of the geometry
    _P,
    AXES,
    aligned_basis,
    aligned_extent,
    rotation_matrix,
    valid_crop,
)

try:
    import torch
    import torch.nn.functional as F  # noqa: N812
except ImportError as exc:  # pragma: no cover
    raise MissingDependencyError("torch", "train", "RESIN training") from exc


def _grid(matrix: np.ndarray, out_shape: tuple[int, int, int], in_side: int,
          device: torch.device) -> torch.Tensor:
    """grid_sample grid (1, Z, Y, X, 3) sampling a cube of ``in_side`` at ``matrix @ q``."""
    c_in = (in_side - 1) / 2
    axes = [np.arange(n) - (n - 1) / 2 for n in out_shape]
    q = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)  # (Z, Y, X, 3) as z, y, x
    p = q @ matrix.T / c_in
    grid = torch.from_numpy(p[..., ::-1].copy()).float()  # grid_sample wants x, y, z
    return grid.unsqueeze(0).to(device)


@dataclass
class Geometry:
    """R, R^-1 and the MIPs for one patch shape and PSF angle (grids cached)."""

    patch_size: tuple[int, int, int]
    angle_deg: float = 0.0
    device: str | torch.device = "cpu"

    def __post_init__(self) -> None:
        self.oblique = abs(self.angle_deg) > 1e-9
        self._grids: dict[str, torch.Tensor] = {}
        dev = torch.device(self.device)
        if not self.oblique:
            self.valid: tuple[slice, slice, slice] = (slice(None),) * 3
            return
        side = self.patch_size[0]
        if len(set(self.patch_size)) != 1:
            raise ValueError("an oblique PSF angle needs cubic patches")
        q = aligned_basis(self.angle_deg)
        for axis in AXES:
            b = self.rotation_matrix(axis)
            self._grids[f"R{axis}"] = _grid(b, (side,) * 3, side, dev)
            self._grids[f"Rinv{axis}"] = _grid(b.T, (side,) * 3, side, dev)
        self.valid = (valid_crop(side, self.angle_deg),) * 3
        n = aligned_extent(side, self.angle_deg)
        # a cube, y cut to n too: every MIP is then a max over n samples and n x n, so the
        # discriminators cannot tell the axial MIP from the lateral ones by depth or shape
        self.aligned_shape = (n, n, n)
        self._grids["aligned"] = _grid(q, self.aligned_shape, side, dev)

    def rotation_matrix(self, axis: str) -> np.ndarray:
        """B of R for ``axis``: ``R(v)(q) = v(B q)``, q in voxel offsets from the centre."""
        return rotation_matrix(self.angle_deg, axis)

    def _sample(self, v: torch.Tensor, key: str, padding: str) -> torch.Tensor:
        grid = self._grids[key].to(device=v.device, dtype=v.dtype)
        grid = grid.expand(v.shape[0], *grid.shape[1:])
        return F.grid_sample(v, grid, mode="bilinear", padding_mode=padding, align_corners=True)

    def rotate(self, v: torch.Tensor, axis: str) -> torch.Tensor:
        """R: turn the axial direction onto lateral ``axis`` ('y' or 'x'); v is (N,C,Z,Y,X)."""
        if not self.oblique:
            dim = 3 if axis == "y" else 4
            return v.transpose(2, dim).flip(2)
        return self._sample(v, f"R{axis}", "border")

    def rotate_inverse(self, v: torch.Tensor, axis: str) -> torch.Tensor:
        """R^-1 for the same ``axis``."""
        if not self.oblique:
            dim = 3 if axis == "y" else 4
            return v.flip(2).transpose(2, dim)
        return self._sample(v, f"Rinv{axis}", "border")

    def crop(self, v: torch.Tensor) -> torch.Tensor:
        """The centred part of a patch that R and R^-1 fill from inside the patch."""
        zs, ys, xs = self.valid
        return v[..., zs, ys, xs]

    def aligned(self, v: torch.Tensor) -> torch.Tensor:
        """The patch resampled in the aligned frame (z' along the PSF axis), inside box only."""
        if not self.oblique:
            return v
        return self._sample(v, "aligned", "zeros")

    def axial_mip(self, v: torch.Tensor) -> torch.Tensor:
        """Maximum along the axial direction: (N, C, Y, X')."""
        return self.aligned(v).amax(dim=2)

    def lateral_mips(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Maxima along y and along x': (N, C, Z', X') and (N, C, Z', Y)."""
        a = self.aligned(v)
        return a.amax(dim=3), a.amax(dim=4)
