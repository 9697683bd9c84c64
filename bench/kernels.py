"""Benchmark resin.kernels against NumPy/SciPy, every figure measured in this one run.

    python bench/kernels.py            # full sizes (volumes larger than the CPU caches)
    python bench/kernels.py --quick    # small sizes, a smoke run
    python bench/kernels.py --no-cold  # skip the cold-compile latency (about 20 s of CPU)

Prints ratios (reference time / kernel time; > 1 means the kernel is faster):
fused MIP vs three NumPy ``max`` calls and against a pass that only reads the volume (the
floor of any one-pass MIP; goal: the MIP within 1.5x its time, every dtype), affine order 1
vs ``scipy.ndimage``, accumulate vs NumPy slicing arithmetic, accumulate's bytes/s as a
fraction of a NumPy copy of the same bytes, and first-call latency in a fresh process
(cache load, and cold compile).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import numba
import numpy as np


def best_of(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm up (compile / cache load, page faults)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def interleaved(fns: list[tuple[Callable[[], object], int]], rounds: int = 3) -> list[float]:
    """Best time of each (function, repeats per round), the functions taking turns for
    ``rounds`` rounds: on a shared host a burst of other work then slows both sides of a
    ratio instead of one."""
    best = [float("inf")] * len(fns)
    for fn, _ in fns:
        fn()  # warm up (compile / cache load, page faults)
    for _ in range(rounds):
        for i, (fn, repeat) in enumerate(fns):
            best[i] = min(best[i], best_of(fn, repeat))
    return best


def row(name: str, ours: float, ref: float, ref_name: str, note: str = "") -> None:
    print(f"{name:<34} {ours * 1e3:9.2f} ms  {ref_name:<26} {ref * 1e3:9.2f} ms  "
          f"{ref / ours:6.2f}x  {note}")


def _read_only_pass() -> Callable[[np.ndarray], np.ndarray]:
    """One parallel pass that only reads the volume: a bitwise OR of its bytes as 64-bit
    words, a few chunks per thread. It vectorises for every dtype (a float maximum that
    must ignore NaN does not), so it reads at the memory's speed: what reading the data
    costs, the floor of any one-pass MIP."""
    from numba import njit, prange

    @njit(parallel=True, nogil=True)
    def read_or(words):  # pragma: no cover
        parts = 4 * numba.get_num_threads()
        out = np.zeros(parts, np.uint64)
        n = words.size
        for p in prange(parts):
            seg = words[p * n // parts:(p + 1) * n // parts]
            acc = np.uint64(0)
            for i in range(seg.size):
                acc |= seg[i]
            out[p] = acc
        return out

    def read(vol: np.ndarray) -> np.ndarray:
        flat = vol.reshape(-1)
        return read_or(flat[:flat.size - flat.size % (8 // vol.itemsize)].view(np.uint64))

    return read


def bench_mip(shape: tuple[int, int, int], repeat: int, pairs: int = 9) -> None:
    import resin.kernels as K

    read_only = _read_only_pass()
    rng = np.random.default_rng(0)
    for dtype in (np.uint16, np.float32, np.uint8):
        vol = rng.integers(0, 250, shape).astype(dtype)
        ours, ref, read = interleaved([
            (lambda v=vol: K.mip(v), 2 * repeat),
            (lambda v=vol: (v.max(axis=0), v.max(axis=1), v.max(axis=2)), 2 * repeat),
            (lambda v=vol: read_only(v), 2 * repeat)])
        # the goal's ratio from back-to-back pairs: the host's memory bandwidth moves by
        # 1.5x between moments here, and each side's best alone may come from another one
        ratios = sorted(best_of(lambda v=vol: K.mip(v), repeat)
                        / best_of(lambda v=vol: read_only(v), repeat) for _ in range(pairs))
        row(f"mip {np.dtype(dtype).name} {shape}", ours, ref, "3x numpy max",
            f"({vol.nbytes / ours / 1e9:.1f} GB/s)")
        row("  read-only pass (the floor)", read, ref, "3x numpy max",
            f"({vol.nbytes / read / 1e9:.1f} GB/s; the MIP takes {ratios[pairs // 2]:.2f}x its "
            f"time, median of {pairs} back-to-back pairs, range {ratios[0]:.2f}-"
            f"{ratios[-1]:.2f}; goal <= 1.5x)")


def bench_affine(shape: tuple[int, int, int], repeat: int) -> None:
    import resin.kernels as K
    import scipy.ndimage as ndi

    rng = np.random.default_rng(1)
    vol = rng.random(shape).astype(np.float32)
    a = np.deg2rad(12.0)
    mat = np.array([[np.cos(a), 0, -np.sin(a)], [0, 1, 0], [np.sin(a), 0, np.cos(a)]])
    mat = mat @ np.diag([1.0, 1.05, 0.95])
    off = (np.array(shape) - 1) / 2 - mat @ ((np.array(shape) - 1) / 2)
    ours, ref = interleaved([(lambda: K.affine_transform(vol, mat, off, order=1), repeat),
                             (lambda: ndi.affine_transform(vol, mat, off, order=1), 1)])
    row(f"affine order 1 float32 {shape}", ours, ref, "scipy.ndimage order 1",
        f"({vol.size / ours / 1e6:.0f} Mvoxel/s)")
    vol16 = (vol * 60000).astype(np.uint16)
    ours, ref = interleaved([(lambda: K.affine_transform(vol16, mat, off, order=1), repeat),
                             (lambda: ndi.affine_transform(vol16, mat, off, order=1), 1)])
    row(f"affine order 1 uint16 {shape}", ours, ref, "scipy.ndimage order 1")
    # the matrix above keeps y apart (a z-x rotation, what rotate_axial does), which takes
    # the plane-blending kernel; a rotation about a tilted axis takes the general one
    b = np.deg2rad(9.0)
    tilt = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    mat3 = tilt @ mat
    off3 = (np.array(shape) - 1) / 2 - mat3 @ ((np.array(shape) - 1) / 2)
    ours, ref = interleaved([(lambda: K.affine_transform(vol, mat3, off3, order=1), repeat),
                             (lambda: ndi.affine_transform(vol, mat3, off3, order=1), 1)])
    row("affine order 1 float32, general 3-D", ours, ref, "scipy.ndimage order 1",
        f"({vol.size / ours / 1e6:.0f} Mvoxel/s)")


def bench_accumulate(acc_shape: tuple[int, int, int], tile: tuple[int, int, int],
                     repeat: int) -> None:
    import resin.kernels as K

    rng = np.random.default_rng(2)
    acc = np.zeros(acc_shape, np.float32)
    wsum = np.zeros(acc_shape, np.float32)
    t = rng.random(tile).astype(np.float32)
    w = K.tile_window(tile)
    step = [max(1, n // 2) for n in tile]
    offsets = [(z, y, x) for z in range(0, acc_shape[0] - tile[0] + 1, step[0])
               for y in range(0, acc_shape[1] - tile[1] + 1, step[1])
               for x in range(0, acc_shape[2] - tile[2] + 1, step[2])]

    def ours() -> None:
        for off in offsets:
            K.accumulate(acc, wsum, t, w, off)

    def numpy_slices() -> None:
        for z, y, x in offsets:
            sl = (slice(z, z + tile[0]), slice(y, y + tile[1]), slice(x, x + tile[2]))
            acc[sl] += t * w
            wsum[sl] += w

    # bytes moved per voxel: read tile, window, acc, wsum; write acc, wsum (6 x 4 bytes)
    moved = 6 * 4 * int(np.prod(tile)) * len(offsets)
    # a NumPy copy of the same bytes: copying half of them moves them all (read + write)
    src = np.ones(moved // 2 // 4, np.float32)
    dst = np.empty_like(src)
    per_round = max(1, repeat // 2)
    ours_t, ref_t, copy_t = interleaved([(ours, per_round), (numpy_slices, per_round),
                                         (lambda: np.copyto(dst, src), per_round)])
    row(f"accumulate {len(offsets)} tiles {tile}", ours_t, ref_t, "numpy slicing a+=t*w")
    frac = (moved / ours_t) / (moved / copy_t)
    print(f"{'accumulate bytes/s vs numpy copy':<34} {moved / ours_t / 1e9:9.2f} GB/s "
          f"{'np.copyto, same bytes':<26} {moved / copy_t / 1e9:9.2f} GB/s  "
          f"{frac * 100:5.0f} %")


_FIRST_CALL = """
import time
t0 = time.perf_counter()
import numpy as np
import resin.kernels as K
v = np.ones((4, 8, 8), np.uint16)
t1 = time.perf_counter()
K.mip(v)
acc = np.zeros((4, 8, 8), np.float32)
K.accumulate(acc, acc.copy(), acc, acc, (0, 0, 0)); K.finalize(acc, acc + 1, np.uint16)
t2 = time.perf_counter()
K.affine_transform(v, np.eye(3)); K.slanted_mip(v, 10.0)
t3 = time.perf_counter()
print(f"{t1 - t0:.3f} {t2 - t1:.3f} {t3 - t2:.3f}")
"""


def first_call(cache_dir: str | None) -> tuple[float, float, float]:
    env = dict(os.environ)
    if cache_dir:
        env["NUMBA_CACHE_DIR"] = cache_dir
    out = subprocess.run([sys.executable, "-c", _FIRST_CALL], capture_output=True, text=True,
                         env=env, check=True).stdout.split()
    return float(out[0]), float(out[1]), float(out[2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold compile")
    args = parser.parse_args()
    quick = args.quick
    repeat = 3 if quick else 5
    # resin.kernels picks the threading layer on import, before anything launches threads
    import resin.kernels as K

    print(f"resin.kernels benchmark: numba {numba.__version__} ({numba.get_num_threads()} "
          f"threads), numpy {np.__version__}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f}")

    K.mip(np.ones((2, 2, 2), np.uint8))
    print(f"threading layer: {numba.threading_layer()}")
    print(f"{'kernel':<34} {'ours':>12}  {'reference':<26} {'ref':>12}  {'ratio':>6}")
    bench_mip((16, 256, 256) if quick else (64, 1024, 1024), repeat)
    bench_affine((16, 64, 64) if quick else (64, 256, 256), repeat)
    bench_accumulate((40, 256, 256) if quick else (96, 512, 512),
                     (16, 64, 64) if quick else (32, 128, 128), repeat)
    imp, first, rest = first_call(None)
    print(f"first call, fresh process, cache warm: import {imp * 1e3:.0f} ms, blend + MIP "
          f"kernels {first * 1e3:.0f} ms, resampling kernels {rest * 1e3:.0f} ms (cache loads)")
    if not args.no_cold:
        with tempfile.TemporaryDirectory() as empty:
            imp, first, rest = first_call(empty)
        print(f"first call, fresh process, empty cache (compile): blend + MIP kernels "
              f"{first:.1f} s, resampling kernels {rest:.1f} s (only when first resampling)")


if __name__ == "__main__":
    main()
