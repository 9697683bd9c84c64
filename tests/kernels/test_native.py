"""libresin (the C ABI): configure and build it with CMake into a temporary folder, run its
CTest, and check it against the Numba kernels through ctypes."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import resin.kernels as K

REPO = Path(__file__).resolve().parents[2]
DTYPE_CODE = {np.dtype(np.uint8): 1, np.dtype(np.uint16): 2, np.dtype(np.float32): 3}
MODE_CODE = {"gaussian": 0, "cosine": 1, "constant": 2}

pytestmark = pytest.mark.slow


def _have_toolchain() -> bool:
    return shutil.which("cmake") is not None and (
        shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")) is not None


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory) -> Path:
    if not _have_toolchain():
        pytest.skip("cmake or a C++ compiler is not installed")
    build = tmp_path_factory.mktemp("libresin")
    for cmd in (["cmake", "-S", str(REPO), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release"],
                ["cmake", "--build", str(build)]):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return build


@pytest.fixture(scope="module")
def lib(build_dir) -> ctypes.CDLL:
    found = sorted(build_dir.glob("libresin.so*")) + sorted(build_dir.glob("libresin*.dylib"))
    assert found, list(build_dir.iterdir())
    so = ctypes.CDLL(str(found[0]))
    so.resin_last_error.restype = ctypes.c_char_p
    so.resin_tile_window.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_double,
                                     ctypes.c_void_p]
    so.resin_accumulate.argtypes = [ctypes.c_void_p] * 7
    so.resin_finalize.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                  ctypes.c_int, ctypes.c_double, ctypes.c_double,
                                  ctypes.c_void_p]
    so.resin_mip_init.argtypes = [ctypes.c_void_p, ctypes.c_int] + [ctypes.c_void_p] * 3
    so.resin_mip_update.argtypes = [ctypes.c_void_p] * 7 + [ctypes.c_int]
    so.resin_mip.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int] + [
        ctypes.c_void_p] * 3
    return so


def _i64(values) -> np.ndarray:
    return np.ascontiguousarray(values, dtype=np.int64)


def _p(a: np.ndarray) -> int:
    assert a.flags.c_contiguous
    return a.ctypes.data


def test_ctest_passes(build_dir):
    proc = subprocess.run(["ctest", "--test-dir", str(build_dir), "--output-on-failure"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_abi_version_and_errors(lib):
    assert lib.resin_abi_version() == 1
    out = np.empty(8, np.float32)
    status = lib.resin_tile_window(_p(_i64([2, 2, 2])), 7, 0.125, _p(out))
    assert status == 1
    assert b"mode" in lib.resin_last_error()
    assert lib.resin_tile_window(None, 0, 0.125, _p(out)) == 1
    assert lib.resin_tile_window(_p(_i64([2, 2, 2])), 0, -1.0, _p(out)) == 1


@pytest.mark.parametrize("mode", ["gaussian", "cosine", "constant"])
@pytest.mark.parametrize("shape", [(1, 1, 1), (5, 8, 3), (16, 2, 33)])
def test_window_matches_numba(lib, mode, shape):
    out = np.empty(shape, np.float32)
    assert lib.resin_tile_window(_p(_i64(shape)), MODE_CODE[mode], 0.2, _p(out)) == 0
    np.testing.assert_allclose(out, K.tile_window(shape, mode, 0.2), rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_accumulate_finalize_match_numba(lib, rng, dtype):
    shape = (5, 9, 7)
    acc_c = np.zeros(shape, np.float32)
    wsum_c = np.zeros(shape, np.float32)
    acc_n, wsum_n = acc_c.copy(), wsum_c.copy()
    window = K.tile_window((3, 4, 5), "gaussian")
    for off in [(-1, -2, -3), (0, 0, 0), (2, 3, 4), (4, 7, 5), (-3, 8, 6), (9, 0, 0)]:
        tile = rng.standard_normal((3, 4, 5)).astype(np.float32)
        assert lib.resin_accumulate(_p(acc_c), _p(wsum_c), _p(_i64(shape)), _p(tile),
                                    _p(window), _p(_i64(tile.shape)), _p(_i64(off))) == 0
        K.accumulate(acc_n, wsum_n, tile, window, off)
    np.testing.assert_array_equal(acc_c, acc_n)
    np.testing.assert_array_equal(wsum_c, wsum_n)
    out = np.empty(shape, dtype)
    low, high = (-2.0, 300.0) if np.dtype(dtype).kind == "u" else (-1.5, 2.5)
    assert lib.resin_finalize(_p(acc_c), _p(wsum_c), _p(_i64(shape)),
                              DTYPE_CODE[np.dtype(dtype)], low, high, _p(out)) == 0
    np.testing.assert_array_equal(out, K.finalize(acc_n, wsum_n, dtype, low, high))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_mip_and_streaming_match_numba(lib, rng, dtype):
    shape = (6, 5, 9)
    if np.dtype(dtype).kind == "f":
        vol = rng.standard_normal(shape).astype(dtype)
    else:
        vol = rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)
    code = DTYPE_CODE[np.dtype(dtype)]
    mz = np.empty((5, 9), dtype)
    my = np.empty((6, 9), dtype)
    mx = np.empty((6, 5), dtype)
    assert lib.resin_mip(_p(vol), _p(_i64(shape)), code, _p(mz), _p(my), _p(mx)) == 0
    for got, ref in zip((mz, my, mx), K.mip(vol), strict=True):
        np.testing.assert_array_equal(got, ref)
    assert lib.resin_mip_init(_p(_i64(shape)), code, _p(mz), _p(my), _p(mx)) == 0
    for z0, z1 in ((0, 4), (4, 6)):
        for y0, y1 in ((0, 2), (2, 5)):
            chunk = np.ascontiguousarray(vol[z0:z1, y0:y1, 3:])
            assert lib.resin_mip_update(_p(mz), _p(my), _p(mx), _p(_i64(shape)), _p(chunk),
                                        _p(_i64(chunk.shape)), _p(_i64((z0, y0, 3))),
                                        code) == 0
            chunk = np.ascontiguousarray(vol[z0:z1, y0:y1, :3])
            assert lib.resin_mip_update(_p(mz), _p(my), _p(mx), _p(_i64(shape)), _p(chunk),
                                        _p(_i64(chunk.shape)), _p(_i64((z0, y0, 0))),
                                        code) == 0
    for got, ref in zip((mz, my, mx), K.mip(vol), strict=True):
        np.testing.assert_array_equal(got, ref)
    # a chunk sticking out is refused with a reason
    assert lib.resin_mip_update(_p(mz), _p(my), _p(mx), _p(_i64(shape)), _p(vol),
                                _p(_i64(shape)), _p(_i64((1, 0, 0))), code) == 1
    assert b"fit" in lib.resin_last_error()
