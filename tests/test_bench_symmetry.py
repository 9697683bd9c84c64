"""bench/symmetry.py: its symmetries keep the PSF, and each is undone exactly."""

from __future__ import annotations

import importlib.util
import itertools
import sys
from pathlib import Path

import numpy as np
import pytest

from resin.simulate import gaussian_psf

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def symmetry():
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("bench_symmetry", BENCH / "symmetry.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(BENCH))


@pytest.mark.parametrize("angle", [0.0, 45.0, -30.0])
def test_the_symmetries_keep_the_psf_and_no_other_flip_does(symmetry, angle):
    psf = gaussian_psf((5.0, 1.0, 1.0), angle)
    kept = symmetry.symmetries(angle)
    assert kept[0] == (False, False, False, False)
    assert len(kept) == (4 if angle else 16)
    for op in itertools.product((False, True), repeat=4):
        same = symmetry.apply(psf, op).shape == psf.shape and np.allclose(
            symmetry.apply(psf, op), psf, atol=1e-7)
        assert same == (op in kept), op


def test_each_symmetry_is_undone_exactly(symmetry):
    v = np.random.default_rng(0).random((5, 7, 7), dtype=np.float32)
    for op in symmetry.symmetries(0.0):
        turned = symmetry.apply(v, op)
        assert turned.flags.c_contiguous
        np.testing.assert_array_equal(symmetry.undo(turned, op), v)
    assert not np.array_equal(symmetry.apply(v, (False, False, False, True)), v)
