"""D exported beside F (``MODEL.degrader.onnx``): parity with torch's D, its record, its
exact halo, and ``resin export``'s output rules for it."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from _checkpoints import make_checkpoint

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from resin.checkpoint import build_degrader, load_checkpoint  # noqa: E402
from resin.errors import OutputExistsError  # noqa: E402
from resin.metadata import DEGRADER_KEY, DegraderMetadata, degrader_halo  # noqa: E402


def _onnx_run(path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(["output"], {"input": x[None, None]})[0][0, 0]


def _torch_run(net, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net(torch.from_numpy(x)[None, None])[0, 0].numpy()


def _record(path) -> DegraderMetadata:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return DegraderMetadata.from_json(sess.get_modelmeta().custom_metadata_map[DEGRADER_KEY])


@pytest.mark.parametrize("degrader", [{"kind": "kernel", "kernel_size": 7},
                                      {"kind": "cnn", "kernel_sizes": [5, 3], "channels": 2}])
def test_d_onnx_equals_torch_d_and_names_its_f(tmp_path, degrader):
    from resin.export import export_degrader, load_generator, weights_sha256

    ckpt_path = make_checkpoint(tmp_path / "m.pt", features=(4,), degrader=degrader)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        meta = export_degrader(ckpt_path, tmp_path / "m.degrader.onnx")
    ckpt = load_checkpoint(ckpt_path)
    d = build_degrader(ckpt)
    x = np.random.default_rng(3).random((9, 13, 11), dtype=np.float32)
    want = _torch_run(d, x)
    got = _onnx_run(tmp_path / "m.degrader.onnx", x)
    assert got.shape == x.shape
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.abs(want - x).max() > 1e-2  # D is not the identity here
    assert _record(tmp_path / "m.degrader.onnx") == meta
    assert meta.generator_sha256 == weights_sha256(load_generator(ckpt)[1].state_dict())
    assert meta.halo == degrader_halo(degrader) == (3, 3, 3)  # 7 // 2; 5 // 2 + 3 // 2
    with pytest.raises(OutputExistsError):
        export_degrader(ckpt_path, tmp_path / "m.degrader.onnx")


@pytest.mark.parametrize("degrader", [{"kind": "kernel", "kernel_size": 5},
                                      {"kind": "linear", "kernel_sizes": [3, 5], "channels": 2}])
def test_d_halo_is_exact(tmp_path, degrader):
    """A block with degrader_halo of real context per side gives the whole volume's D in
    its centre; one voxel less does not."""
    ckpt = load_checkpoint(make_checkpoint(tmp_path / "m.pt", features=(4,), degrader=degrader))
    d = build_degrader(ckpt)
    h = degrader_halo(degrader)[0]
    x = np.random.default_rng(1).random((24, 24, 24), dtype=np.float32)
    whole = _torch_run(d, x)
    core = (slice(10, 14),) * 3
    for margin, exact in ((h, True), (h - 1, False)):
        block = (slice(10 - margin, 14 + margin),) * 3
        part = _torch_run(d, np.ascontiguousarray(x[block]))[(slice(margin, margin + 4),) * 3]
        assert np.allclose(part, whole[core], atol=1e-5) == exact


def test_export_writes_d_beside_f_only_when_the_checkpoint_has_it(tmp_path):
    from resin.export import export_model

    from resin.checkpoint import save_generator_only

    ckpt = make_checkpoint(tmp_path / "m.pt", features=(4,), degrader={"kernel_size": 5})
    # an existing D file is refused before anything is written
    (tmp_path / "m.degrader.onnx").write_text("mine")
    with pytest.raises(OutputExistsError, match="degrader"):
        export_model(ckpt)
    assert not (tmp_path / "m.onnx").exists()
    assert (tmp_path / "m.degrader.onnx").read_text() == "mine"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = export_model(ckpt, overwrite=True)
    assert result.degrader == tmp_path / "m.degrader.onnx" and result.degrader in result.files
    assert _record(result.degrader).generator_sha256 == result.metadata.weights_sha256
    assert not list(tmp_path.glob(".*partial"))
    # the slim copy keeps D; a checkpoint without D exports F alone
    assert "degrader" in load_checkpoint(save_generator_only(ckpt, tmp_path / "slim.pt"))
    bare = make_checkpoint(tmp_path / "bare.pt", features=(4,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = export_model(bare)
    assert result.degrader is None and result.files == [tmp_path / "bare.onnx"]
    assert not (tmp_path / "bare.degrader.onnx").exists()


def test_a_newer_or_broken_d_record_is_a_model_error():
    from resin.errors import ModelError

    good = DegraderMetadata(generator_sha256="f", weights_sha256="d", kind="kernel",
                            receptive_field=(5, 5, 5), halo=(2, 2, 2),
                            normalization={"low_percentile": 0.5, "high_percentile": 99.9})
    assert DegraderMetadata.from_json(good.to_json(), "x") == good
    raw = good.model_dump(mode="json")
    for text, match in ((json.dumps({**raw, "format_version": 99}), "newer than this resin"),
                        ("{", "not valid JSON"),
                        (json.dumps({**raw, "halo": "big"}), "field 'halo'")):
        with pytest.raises(ModelError, match=match):
            DegraderMetadata.from_json(text, "x")
