"""The user cache of measured halos (resin.export.cached_halo) and where the cache lives."""

from __future__ import annotations

import json

import pytest
from resin.export import _halo

from resin._cache import cache_dir, file_sha256


@pytest.fixture
def measured(monkeypatch):
    """measure_halos replaced by a quick stand-in that counts its calls."""
    calls = []

    def measure(generator, size_multiple, tolerance=_halo.HALO_TOLERANCE, percentiles=None):
        calls.append(size_multiple)
        return _halo.Halos((9, 11, 13), (4, 5, 6), (2, 3, 3), tolerance)

    monkeypatch.setattr(_halo, "measure_halos", measure)
    return calls


MEASURED = _halo.Halos((9, 11, 13), (4, 5, 6), (2, 3, 3), _halo.HALO_TOLERANCE)


def _entry(checkpoint):
    return cache_dir("halo", f"{file_sha256(checkpoint)}.json")


def test_measured_once_per_checkpoint_content(tmp_path, measured):
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"weights one")
    assert _halo.cached_halo(ckpt, None, 4) == MEASURED
    assert _halo.cached_halo(ckpt, None, 4) == MEASURED
    assert measured == [4]
    entry = _entry(ckpt)
    assert json.loads(entry.read_text())["halo"] == [4, 5, 6]
    assert json.loads(entry.read_text())["halo_tolerant"] == [2, 3, 3]
    assert sorted(p.name for p in entry.parent.iterdir()) == [entry.name]  # no temp files
    ckpt.write_bytes(b"weights two")  # retrained in place: another key
    _halo.cached_halo(ckpt, None, 4)
    assert measured == [4, 4]


@pytest.mark.parametrize("bad", [
    b"{not json",
    b"\xff\xfe",
    b"[1, 2, 3]",
    json.dumps({"version": _halo.MEASUREMENT_VERSION, "size_multiple": 4,
                "receptive_field": [9, 11], "halo": [4, 5, 6]}).encode(),
    json.dumps({"version": _halo.MEASUREMENT_VERSION, "size_multiple": 4,
                "receptive_field": [9, 11, 13], "halo": [4, -5, 6]}).encode(),
    json.dumps({"version": _halo.MEASUREMENT_VERSION, "size_multiple": 4,
                "receptive_field": [9, 11, 13], "halo": [4, True, 6]}).encode(),
    json.dumps({"version": _halo.MEASUREMENT_VERSION + 1, "size_multiple": 4,
                "receptive_field": [9, 11, 13], "halo": [1, 1, 1]}).encode(),
    json.dumps({"version": _halo.MEASUREMENT_VERSION, "size_multiple": 8,
                "receptive_field": [9, 11, 13], "halo": [1, 1, 1]}).encode(),
    # an entry from before tolerant halos, and one for another tolerance
    json.dumps({"version": 1, "size_multiple": 4,
                "receptive_field": [9, 11, 13], "halo": [4, 5, 6]}).encode(),
    json.dumps({"version": _halo.MEASUREMENT_VERSION, "size_multiple": 4,
                "receptive_field": [9, 11, 13], "halo": [4, 5, 6], "halo_tolerant": [1, 1, 1],
                "halo_tolerance": 1e-2}).encode(),
])
def test_a_corrupt_entry_is_measured_again_and_rewritten(tmp_path, measured, bad):
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"weights")
    entry = _entry(ckpt)
    entry.parent.mkdir(parents=True)
    entry.write_bytes(bad)
    assert _halo.cached_halo(ckpt, None, 4) == MEASURED
    assert measured == [4]
    assert json.loads(entry.read_text()) == {
        "version": _halo.MEASUREMENT_VERSION, "size_multiple": 4,
        "receptive_field": [9, 11, 13], "halo": [4, 5, 6], "halo_tolerant": [2, 3, 3],
        "halo_tolerance": _halo.HALO_TOLERANCE}


def test_an_unwritable_cache_only_costs_a_measurement(tmp_path, measured, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would be")
    monkeypatch.setenv("RESIN_CACHE_DIR", str(blocker))
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"weights")
    assert _halo.cached_halo(ckpt, None, 4) == MEASURED
    assert _halo.cached_halo(ckpt, None, 4) == MEASURED
    assert measured == [4, 4]


def test_cache_folder_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("RESIN_CACHE_DIR", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir("halo") == tmp_path / "mine" / "halo"
    monkeypatch.delenv("RESIN_CACHE_DIR")
    assert cache_dir() == tmp_path / "xdg" / "resin"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # the XDG spec: absolute only
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "resin"


def test_torch_backend_measures_a_checkpoint_once(tmp_path, measured):
    pytest.importorskip("torch")
    from _checkpoints import make_checkpoint
    from resin.runtime.backends.torch import TorchBackend

    ckpt = make_checkpoint(tmp_path / "model.pt")
    for _ in range(2):
        engine = TorchBackend()
        assert engine.load(ckpt, "cpu").halo == (4, 5, 6)
        assert engine.metadata.receptive_field == (9, 11, 13)
        assert engine.metadata.halo_tolerant == (2, 3, 3)
        engine.close()
    assert measured == [2]  # one measurement, at the generator's size multiple
