"""The tolerant halo: measured at export, recorded in the metadata, and what tiles get."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from resin.metadata import ModelMetadata, NormalizationRecord

torch = pytest.importorskip("torch")


def _meta(**kw) -> ModelMetadata:
    return ModelMetadata(normalization=NormalizationRecord(low_percentile=0.5,
                                                           high_percentile=99.9), **kw)


def test_metadata_round_trip_keeps_the_tolerant_halo():
    meta = _meta(halo=(29, 29, 29), halo_tolerant=(27, 20, 21), halo_tolerance=1e-4)
    back = ModelMetadata.from_json(meta.to_json())
    assert back.halo_tolerant == (27, 20, 21) and back.halo_tolerance == 1e-4
    # on the exact halo's pooling grid (size multiple 4): 27 -> 29, 20 -> 21
    assert back.tiling_halo() == (29, 21, 21)
    assert back.tiling_halo(exact=True) == (29, 29, 29)


def test_metadata_without_a_tolerant_halo_still_loads_and_tiles_with_the_exact_one():
    raw = json.loads(_meta(halo=(5, 6, 7)).to_json())
    del raw["halo_tolerant"], raw["halo_tolerance"]  # as written before tolerant halos
    old = ModelMetadata.from_json(json.dumps(raw))
    assert old.halo_tolerant is None and old.tiling_halo() == (5, 6, 7)


def test_tolerant_halo_is_at_most_the_exact_one_and_grows_as_the_tolerance_shrinks(
        tiny_checkpoint):
    from resin.export import load_generator, measure_halo
    from resin.export._halo import measure_tolerant_halo

    _, net = load_generator(tiny_checkpoint)
    _, halo = measure_halo(net, 2, max_positions=2, backgrounds=1)
    loose = measure_tolerant_halo(net, 2, halo, tolerance=1e-2)
    tight = measure_tolerant_halo(net, 2, halo, tolerance=1e-6)
    assert all(lo <= ti <= h for lo, ti, h in zip(loose, tight, halo, strict=True))
    assert all((h - t) % 2 == 0 for t, h in zip(loose, halo, strict=True))  # the pooling grid
    assert loose != halo  # an untrained net's response decays: some context is invisible


def test_export_records_both_halos(tiny_export):
    _, meta = tiny_export
    assert meta.halo_tolerant is not None and meta.halo_tolerance == 1e-4
    assert all(t <= h for t, h in zip(meta.halo_tolerant, meta.halo, strict=True))


@pytest.mark.parametrize("tolerance", [1e-3])
def test_seams_stay_within_the_tolerance_on_a_real_looking_volume(tiny_checkpoint, tmp_path,
                                                                  tolerance):
    """Tiles with the tolerant halo vs one tile over the whole volume (exact halo)."""
    pytest.importorskip("onnxruntime")
    from resin.export import export_onnx
    from resin.runtime import Enhancer

    from resin.simulate import simulate

    model = tmp_path / "tol.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        meta = export_onnx(tiny_checkpoint, model, halo_tolerance=tolerance)
    assert meta.halo_tolerant != meta.halo  # the test cuts context for real
    volume = simulate((40, 72, 72), seed=3).raw.astype(np.float32)
    with Enhancer(model, backend="onnxruntime", device="cpu", exact_halo=True,
                  tile=(128, 128, 128)) as whole:
        levels = whole.levels(volume)
        reference = whole.enhance(volume, levels)
        assert whole.engine.metadata.tiling_halo(exact=True) == meta.halo
    with Enhancer(model, backend="onnxruntime", device="cpu", tile=(24, 32, 32)) as tiled:
        out = tiled.enhance(volume, levels)
    span = float(reference.max() - reference.min())
    deviation = float(np.abs(out - reference).max()) / span
    # a voxel near a tile corner has three cut faces; allow a small factor for their sum
    assert 0.0 < deviation <= 4 * tolerance


def test_bundled_model_seams_stay_within_its_recorded_tolerance():
    """The shipped model, many tiles with its tolerant halo vs one tile with the exact one."""
    pytest.importorskip("onnxruntime")
    from resin.runtime import Enhancer
    from resin.runtime.enhancer import default_model_path

    from resin.simulate import simulate

    volume = simulate((40, 96, 96), seed=5).raw.astype(np.float32)
    with Enhancer(None, backend="onnxruntime", device="cpu", exact_halo=True,
                  tile=(256, 256, 256)) as whole:
        meta = whole.metadata
        levels = whole.levels(volume)
        reference = whole.enhance(volume, levels)
    assert meta.halo_tolerant is not None and meta.tiling_halo() != meta.halo
    with Enhancer(default_model_path(), backend="onnxruntime", device="cpu",
                  tile=(72, 64, 64)) as tiled:
        out = tiled.enhance(volume, levels)
    deviation = float(np.abs(out - reference).max()) / float(reference.max() - reference.min())
    assert deviation <= 4 * meta.halo_tolerance
