"""Tiny resin models for runtime tests: a 2-level generator exported to ONNX with metadata.

Built with torch + onnx in the test process only (the runtime itself never imports them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

#: impulse response of GeneratorConfig(features=[4, 8]) reaches 10-11 voxels; 12 is safe
TEST_HALO = (12, 12, 12)


def make_onnx_model(path: Path, seed: int = 0, halo=TEST_HALO, with_metadata: bool = True,
                    low: float = 0.5, high: float = 99.9, features=(4, 8), **meta) -> Path:
    """``meta``: more ModelMetadata fields (e.g. ``scale``, ``halo_tolerant``)."""
    torch = pytest.importorskip("torch")
    onnx = pytest.importorskip("onnx")
    from resin.config import GeneratorConfig
    from resin.metadata import METADATA_KEY, ModelMetadata, NormalizationRecord
    from resin.models import Generator

    torch.manual_seed(seed)
    net = Generator(GeneratorConfig(features=list(features))).eval()
    x = torch.randn(1, 1, 8, 16, 16)
    dyn = {0: "n", 2: "z", 3: "y", 4: "x"}
    torch.onnx.export(net, (x,), str(path), input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": dyn, "output": dyn}, dynamo=False,
                      opset_version=17)
    model = onnx.load(str(path))
    if with_metadata:
        meta = ModelMetadata(halo=halo, receptive_field=tuple(2 * h + 1 for h in halo),
                             size_multiple=2 ** (len(features) - 1),
                             normalization=NormalizationRecord(low_percentile=low,
                                                               high_percentile=high),
                             weights_sha256=f"test-{seed}",
                             generator={"features": list(features), "in_channels": 1,
                                        "residual": True}, **meta)
        entry = model.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, meta.to_json()
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="session")
def onnx_model(tmp_path_factory) -> Path:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return make_onnx_model(tmp_path_factory.mktemp("models") / "tiny.onnx")


@pytest.fixture(scope="session")
def fast_model(tmp_path_factory) -> Path:
    """One level, no pooling: a 5-voxel receptive field (halo 3 is safe), size multiple 1.

    Cheap enough on a shared 2-core machine for tests that run whole files many times.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return make_onnx_model(tmp_path_factory.mktemp("models") / "fast.onnx", seed=1,
                               halo=(3, 3, 3), features=(4,))


@pytest.fixture
def awkward_volume(rng) -> np.ndarray:
    """An odd-shaped uint16 volume with bright blobs on a noisy background."""
    shape = (13, 37, 29)
    vol = rng.poisson(100, size=shape).astype(np.float32)
    zz, yy, xx = np.mgrid[0:shape[0], 0:shape[1], 0:shape[2]]
    for cz, cy, cx in ((6, 10, 12), (3, 30, 25), (11, 22, 4)):
        vol += 3000 * np.exp(-((zz - cz) ** 2 / 8 + (yy - cy) ** 2 / 3 + (xx - cx) ** 2 / 3))
    return vol.astype(np.uint16)


@pytest.fixture
def model_factory():
    """``model_factory(path, **kw)`` -> a tiny ONNX model (see :func:`make_onnx_model`)."""
    return make_onnx_model


@pytest.fixture
def channels(tmp_path, rng):
    """A 2-time-point, 3-channel ImageJ stack (TZCYX) and its data as TCZYX."""
    data = rng.integers(0, 4000, size=(2, 3, 16, 20, 24)).astype(np.uint16)
    data[:, 1] //= 4
    path = tmp_path / "cells.tif"
    tifffile.imwrite(path, data.transpose(0, 2, 1, 3, 4), imagej=True,
                     metadata={"axes": "TZCYX"})
    return path, data
