"""Numba CPU and CUDA kernels: tile blending, fused MIP, affine/oblique resampling.

NumPy arrays run on the CPU (Numba ``parallel=True``) and come back as NumPy arrays.
CUDA arrays (Numba device arrays, or anything with ``__cuda_array_interface__`` such as
CuPy arrays and torch CUDA tensors) run on the GPU and come back as Numba device arrays,
with no copy through the host. Volumes are ZYX, uint8 / uint16 / float32.

The CPU kernels are compiled for those dtypes on first import and cached by Numba (next
to the sources, else in Numba's user cache, else in resin's; ``NUMBA_CACHE_DIR`` overrides),
so only the first run on an install compiles; it says so before it starts. They are safe
to call from several threads (see ``_dispatch``).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from resin.kernels import _common
from resin.kernels._dispatch import is_device, parallel_section

from resin.errors import UsageError, VolumeError

if TYPE_CHECKING:
    from types import ModuleType

Array = Any  # np.ndarray on the CPU, a Numba device array on CUDA
Projections = tuple[Any, Any, Any]

__all__ = [
    "accumulate",
    "affine_transform",
    "finalize",
    "mip",
    "mip_init",
    "mip_update",
    "rotate_axial",
    "slanted_mip",
    "tile_window",
]


#: what compiling a kernel module takes when Numba's cache is empty (2 shared cores)
_COMPILE_SECONDS = {"_cpu": "15-60", "_cpu_resample": "30-60"}


def _compiled_kernels(name: str) -> ModuleType:
    """Import a CPU kernel module (compiled eagerly at import), announcing a cold compile."""
    import sys

    full = f"resin.kernels.{name}"
    if full not in sys.modules:
        cached = _numba_cache_holds(name)
        if cached is False:
            from resin import _log

            what = "blending and MIP" if name == "_cpu" else "resampling"
            _log.log(f"compiling the {what} kernels once (about {_COMPILE_SECONDS[name]} s); "
                     "later runs load them from Numba's cache")
    return importlib.import_module(full)


def _numba_cache_holds(name: str) -> bool | None:
    """Whether Numba's cache has entries for kernel module ``name`` (None: cannot tell).

    Asks Numba's own cache locators where it would look; if none can write anywhere,
    points Numba at resin's user cache so that compiling once is enough.
    """
    from pathlib import Path

    try:
        from numba.core import caching, config
    except ImportError:
        return None
    impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl", None)
    locator_classes = list(getattr(impl, "_locator_classes", None) or [])
    if not locator_classes:  # a Numba without this (private) layout: just compile
        return None
    source = str(Path(__file__).with_name(f"{name}.py"))

    def probe() -> None:
        """Stands in for a kernel: the locators only need its source file."""

    try:
        for cls in locator_classes:
            locator = cls.from_function(probe, source)
            if locator is not None:
                return any(Path(locator.get_cache_path()).glob(f"{name}.*.nbi"))
        from resin._cache import cache_dir

        config.CACHE_DIR = str(cache_dir("numba"))  # type: ignore[attr-defined]
        return False
    except Exception:  # noqa: BLE001 - private API; never block a run on this check
        return None


def _cpu_kernels() -> ModuleType:
    # compiled (or loaded from the cache) on first use, so importing resin.kernels is cheap
    return _compiled_kernels("_cpu")


def _resample_kernels() -> ModuleType:
    # affine and slanted-MIP kernels, compiled on first use (axial models never need them)
    return _compiled_kernels("_cpu_resample")


def _cuda_kernels() -> ModuleType:
    return importlib.import_module("resin.kernels._cuda")


def _on_device(*arrays: Any) -> bool:
    """True if all arrays are CUDA arrays, False if all are host arrays; mixing is an error."""
    flags = [is_device(a) for a in arrays]
    if all(flags):
        return True
    if any(flags):
        raise UsageError("these arrays must all be on the host (NumPy) or all on the GPU; "
                         "copy them to the same side first.")
    return False


def _host(name: str, a: Any) -> np.ndarray:
    arr = np.asarray(a)
    _common.check_volume(name, arr.shape, arr.dtype)
    return np.ascontiguousarray(arr)


def _writable(name: str, a: np.ndarray, shape: tuple[int, ...], dtype: Any) -> None:
    if not isinstance(a, np.ndarray) or a.shape != shape or a.dtype != np.dtype(dtype):
        got = (getattr(a, "shape", None), getattr(a, "dtype", type(a).__name__))
        raise UsageError(f"{name} must be a {np.dtype(dtype)} array of shape {shape}, got "
                         f"{got[1]} with shape {got[0]}.")
    if not a.flags.c_contiguous or not a.flags.writeable:
        raise UsageError(f"{name} must be a writable C-contiguous array.")


def _finite(name: str, value: float) -> float:
    v = float(value)
    if not math.isfinite(v):
        raise UsageError(f"{name} must be a finite number, got {value!r}.")
    return v


# -- blending -------------------------------------------------------------------------

def tile_window(shape: Sequence[int], mode: str = "gaussian", sigma_scale: float = 0.125,
                *, device: bool = False) -> Array:
    """Separable blend weights for a tile of ``shape`` (z, y, x): float32, strictly positive.

    ``gaussian``: exp(-d^2 / 2 (sigma_scale * n)^2) per axis around the tile centre;
    ``cosine``: a Hann window sampled at voxel centres; ``constant``: ones. Each axis is
    floored at 1e-6 so every voxel of every tile gets weight. ``device=True`` returns it on
    the GPU.
    """
    w = _common.tile_window(shape, mode, sigma_scale)
    return _cuda_kernels().to_device(w) if device else w


def accumulate(acc: Array, wsum: Array, tile: Array, window: Array,
               offset: Sequence[int], *, stream: Any = 0) -> None:
    """In place, fp32: ``acc[region] += tile * window`` and ``wsum[region] += window``.

    ``region`` is the tile placed with its first voxel at ``offset`` (z, y, x) inside
    ``acc``, clipped to ``acc``'s bounds: the offset may be negative and the tile may stick
    out (its outside part is ignored). ``window`` has the tile's shape. ``stream``: the
    CUDA stream device arrays are updated on (ignored on the host).
    """
    off = _common.int_triple("offset", offset)
    if _on_device(acc, wsum, tile, window):
        _cuda_kernels().accumulate(acc, wsum, tile, window, off, stream)
        return
    _writable("acc", acc, tuple(np.shape(acc)), np.float32)
    _common.check_float32("acc", acc.shape, acc.dtype)
    _writable("wsum", wsum, acc.shape, np.float32)
    t = np.asarray(tile)
    if t.ndim != 3 or t.dtype.kind != "f":
        raise UsageError(f"tile must be a 3-D floating-point array, got {t.dtype} with "
                         f"shape {t.shape}.")
    t = np.ascontiguousarray(t, dtype=np.float32)
    w = np.ascontiguousarray(window, dtype=np.float32)
    if w.shape != t.shape:
        raise UsageError(f"window shape {w.shape} differs from tile shape {t.shape}.")
    region = _common.clip_region(acc.shape, t.shape, off)
    if region is None:
        return
    (az, ay, ax), (tz, ty, tx), (nz, ny, nx) = region
    with parallel_section():
        _cpu_kernels().accumulate(acc, wsum, t, w, az, ay, ax, tz, ty, tx, nz, ny, nx)


def finalize(acc: Array, wsum: Array, dtype: Any, low: float = 0.0, high: float = 1.0,
             out: Array | None = None, *, stream: Any = 0) -> Array:
    """One pass: ``acc / wsum * (high - low) + low`` in float32, NaN -> 0, then for
    uint8/uint16 rounded half to even and clipped to the dtype's range, and cast.

    ``low``/``high`` undo the global normalisation (the volume's percentiles). Writes into
    ``out`` when given (same shape, the target dtype, C-contiguous) and returns it.
    ``stream``: the CUDA stream of a device call (ignored on the host).
    """
    dt = np.dtype(dtype)
    if dt not in _common.VOLUME_DTYPES:
        raise UsageError(f"output dtype must be uint8, uint16 or float32, got {dt}.")
    lo = _finite("low", low)
    hi = _finite("high", high)
    arrays = (acc, wsum) if out is None else (acc, wsum, out)
    if _on_device(*arrays):
        return _cuda_kernels().finalize(acc, wsum, dt, lo, hi, out, stream)
    a = np.ascontiguousarray(acc)
    s = np.ascontiguousarray(wsum)
    _common.check_float32("acc", a.shape, a.dtype)
    if s.shape != a.shape or s.dtype != np.float32:
        raise UsageError(f"wsum must be float32 with acc's shape {a.shape}, got {s.dtype} "
                         f"with shape {s.shape}.")
    if out is None:
        out = np.empty(a.shape, dtype=dt)
    else:
        _writable("out", out, a.shape, dt)
    scale, low32 = np.float32(hi - lo), np.float32(lo)
    cpu = _cpu_kernels()
    with parallel_section():
        if dt == np.float32:
            cpu.finalize_float(a, s, scale, low32, out)
        else:
            cpu.finalize_int(a, s, scale, low32, np.float32(np.iinfo(dt).max), out)
    return out


# -- maximum intensity projections ------------------------------------------------------

def mip_init(shape: Sequence[int], dtype: Any, *, device: bool = False) -> Projections:
    """Empty running projections (along z (Y, X), along y (Z, X), along x (Z, Y)) of a
    volume of ``shape``, filled with the dtype's minimum so any voxel replaces it."""
    z, y, x = _common.int_triple("shape", shape)
    dt = _common.check_volume("volume", (z, y, x), dtype)
    floor = _common.dtype_floor(dt)
    host = (np.full((y, x), floor, dt), np.full((z, x), floor, dt), np.full((z, y), floor, dt))
    if device:
        cuda = _cuda_kernels()
        return (cuda.to_device(host[0]), cuda.to_device(host[1]), cuda.to_device(host[2]))
    return host


def _projected_shape(mz: Any, my: Any, mx: Any) -> tuple[int, int, int]:
    if len(mz.shape) != 2 or len(my.shape) != 2 or len(mx.shape) != 2:
        raise UsageError("mz, my, mx must be 2-D projections (Y, X), (Z, X), (Z, Y).")
    shape = (int(my.shape[0]), int(mz.shape[0]), int(mz.shape[1]))
    if tuple(my.shape) != (shape[0], shape[2]) or tuple(mx.shape) != (shape[0], shape[1]):
        raise UsageError(f"projection shapes {tuple(mz.shape)}, {tuple(my.shape)}, "
                         f"{tuple(mx.shape)} do not belong to one (Z, Y, X) volume; use "
                         f"mip_init(shape, dtype).")
    return shape


def mip_update(mz: Array, my: Array, mx: Array, chunk: Array, offset: Sequence[int], *,
               stream: Any = 0) -> None:
    """Running maxima of a ``chunk`` that sits at ``offset`` (z, y, x) in a larger volume,
    in place, in one read of the chunk. The chunk must lie inside the volume. ``stream``:
    the CUDA stream of a device call (ignored on the host)."""
    off = _common.int_triple("offset", offset)
    device = _on_device(mz, my, mx, chunk)
    if device:
        cu = _cuda_kernels()
        mz, my, mx, chunk = (cu.as_device(a) for a in (mz, my, mx, chunk))
    shape = _projected_shape(mz, my, mx)
    c_shape = tuple(int(n) for n in chunk.shape)
    dt = _common.check_volume("chunk", c_shape, chunk.dtype)
    if any(o < 0 or o + n > s for o, n, s in zip(off, c_shape, shape, strict=True)):
        raise UsageError(f"a chunk of shape {c_shape} at offset {off} does not fit in the "
                         f"volume of shape {shape}.")
    for name, p in (("mz", mz), ("my", my), ("mx", mx)):
        if np.dtype(p.dtype) != dt:
            raise UsageError(f"{name} has dtype {np.dtype(p.dtype)} but the chunk is {dt}.")
    if device:
        _cuda_kernels().mip_update(mz, my, mx, chunk, off, stream)
        return
    for name, p in (("mz", mz), ("my", my), ("mx", mx)):
        _writable(name, p, p.shape, dt)
    c = np.ascontiguousarray(chunk)
    from numba import get_num_threads

    cpu = _cpu_kernels()
    z, y, x = off
    with parallel_section():
        if dt.kind != "f":
            cpu.mip_update(c, mz, my, mx, z, y, x, get_num_threads())
            return
        # float32 runs on int32 keys in the floats' order (NaN lowest): the parts of the
        # projections this chunk touches become keys, and floats again afterwards
        cz, cy, cx = c.shape
        touched = [p.view(np.int32) for p in (mz[y:y + cy, x:x + cx], my[z:z + cz, x:x + cx],
                                              mx[z:z + cz, y:y + cy])]
        for t in touched:
            cpu.float_keys(t)
        try:
            cpu.mip_update(c.view(np.int32), mz.view(np.int32), my.view(np.int32),
                           mx.view(np.int32), z, y, x, get_num_threads())
        finally:
            for t in touched:
                cpu.keys_to_float(t)


def mip(volume: Array) -> Projections:
    """Maximum intensity projections (along z (Y, X), along y (Z, X), along x (Z, Y)) in
    one fused pass over the volume. NaN voxels never win a maximum; a line of NaNs only
    projects to -inf."""
    if is_device(volume):
        vol = _cuda_kernels().as_device(volume)
        _common.check_volume("volume", tuple(vol.shape), vol.dtype)
        projections = mip_init(vol.shape, vol.dtype, device=True)
        mip_update(*projections, vol, (0, 0, 0))
        return projections
    vol = _host("volume", volume)
    projections = mip_init(vol.shape, vol.dtype)
    mip_update(*projections, vol, (0, 0, 0))
    return projections


def slanted_mip(volume: Array, angle_deg: float) -> Array:
    """MIP along the axis tilted ``angle_deg`` from z towards x (in the z-x plane).

    Returns float32 (Y, U): U spans the volume across the rays (scipy.ndimage.rotate's
    reshape rule; U == X at 0 degrees). Each ray is sampled at unit steps with bilinear
    (z, x) interpolation; samples outside the volume are skipped and a ray that misses the
    volume gives 0. Equals ``rotate_axial(volume, angle_deg).max(axis=0)`` for volumes >= 0
    and ``mip(volume)[0]`` at 0 degrees.
    """
    angle = _finite("angle_deg", angle_deg)
    if is_device(volume):
        return _cuda_kernels().slanted_mip(volume, angle)
    vol = _host("volume", volume)
    t_n, u_n, cos_a, sin_a = _common.slanted_grid(vol.shape, angle)
    out = np.empty((vol.shape[1], u_n), dtype=np.float32)
    with parallel_section():
        _resample_kernels().slanted_mip(vol, cos_a, sin_a, t_n, out)
    return out


# -- resampling ---------------------------------------------------------------------------

def _output_shape(output_shape: Sequence[int] | None, default: tuple[int, ...]) -> tuple[
        int, int, int]:
    if output_shape is None:
        return default[0], default[1], default[2]
    shape = _common.int_triple("output_shape", output_shape)
    if min(shape) < 1:
        raise UsageError(f"output_shape must be positive, got {shape}.")
    return shape


def affine_transform(volume: Array, matrix: Any, offset: Any = 0.0,
                     output_shape: Sequence[int] | None = None, order: int = 1,
                     cval: float = 0.0) -> Array:
    """``scipy.ndimage.affine_transform`` for 3-D volumes, orders 0 and 1, mode 'constant'.

    ``output[o] = volume[matrix @ o + offset]`` (matrix of shape (3,), (3, 3), (3, 4) or a
    homogeneous (4, 4)); samples whose coordinates fall outside [0, n - 1] get ``cval``.
    Order 0 is nearest (floor(c + 0.5)), order 1 trilinear; the output has the input dtype
    (integers rounded half up and clipped).
    """
    if order not in (0, 1):
        raise UsageError(f"order must be 0 or 1, got {order!r}; use scipy.ndimage for "
                         f"spline orders above 1.")
    c = _finite("cval", cval)
    mat, off = _common.affine_parts(matrix, offset)
    if is_device(volume):
        vol = _cuda_kernels().as_device(volume)
        _common.check_volume("volume", vol.shape, vol.dtype)
        shape = _output_shape(output_shape, tuple(vol.shape))
        return _cuda_kernels().affine(vol, mat, off, shape, order, c)
    if max(np.shape(volume), default=0) > _MAX_AXIS:
        raise VolumeError(f"volume axes are limited to {_MAX_AXIS} voxels (int32 coordinates), "
                          f"got shape {tuple(np.shape(volume))}.")
    v = _host("volume", volume)
    shape = _output_shape(output_shape, v.shape)
    out = np.empty(shape, dtype=v.dtype)
    rng = _common.int_range(v.dtype)
    lo, hi = rng if rng is not None else (0.0, 0.0)
    from numba import get_num_threads

    cpu = _resample_kernels()
    with parallel_section():
        if order == 1 and _y_decoupled(mat) and shape[1] >= 2 * get_num_threads():
            cpu.affine_zx(v, mat, off, c, rng is not None, lo, hi, out)
        else:
            cpu.affine(v, mat, off, order, c, rng is not None, lo, hi, out,
                       get_num_threads())
    return out


#: the CPU resampling kernels convert coordinates to int32
_MAX_AXIS = 2**31 - 2


def _y_decoupled(mat: np.ndarray) -> bool:
    """The source y depends on the output y only (a z-x rotation/scaling, as in
    ``rotate_axial``): the CPU kernel then blends each pair of source planes once."""
    return bool(mat[0, 1] == 0.0 and mat[2, 1] == 0.0 and mat[1, 0] == 0.0
                and mat[1, 2] == 0.0)


def rotate_axial(volume: Array, angle_deg: float, inverse: bool = False,
                 output_shape: Sequence[int] | None = None, order: int = 1) -> Array:
    """Resample so the axial direction tilted ``angle_deg`` from z towards x becomes z
    (``inverse=True`` rotates back), trilinear, about the volume centre.

    The default output is the rotated z-x bounding box (y unchanged), so nothing is lost;
    to come back to the original grid pass ``output_shape=original.shape`` with
    ``inverse=True``.
    """
    angle = _finite("angle_deg", angle_deg)
    shape = tuple(int(n) for n in volume.shape)
    if len(shape) != 3:
        raise VolumeError(f"volume must be a 3-D ZYX array, got shape {shape}.")
    zr, xr = _common.rotated_extent(shape[0], shape[2], angle)
    out_shape = _output_shape(output_shape, (zr, shape[1], xr))
    mat, off = _common.axial_rotation((shape[0], shape[1], shape[2]), out_shape, angle,
                                      inverse)
    return affine_transform(volume, mat, off, output_shape=out_shape, order=order)
