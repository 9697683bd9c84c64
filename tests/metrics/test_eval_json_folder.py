"""`resin eval --json`: the JSON's folder is checked before the scoring, and made if new."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from resin import metrics
from resin.errors import UsageError
from resin.io import write_volume


@pytest.fixture
def pair(tmp_path):
    pred, truth = tmp_path / "pred.tif", tmp_path / "truth.tif"
    write_volume(pred, np.ones((8, 16, 16), np.uint16))
    write_volume(truth, np.ones((8, 16, 16), np.uint16))
    return pred, truth


def test_a_read_only_json_folder_is_refused_before_scoring(pair, tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, *a, **k: False
                        if os.path.abspath(p) == str(ro) and mode & os.W_OK
                        else real(p, mode, *a, **k))

    def never(*_a, **_k):
        raise AssertionError("scored before the --json folder was checked")

    monkeypatch.setattr(metrics, "evaluate", never)
    with pytest.raises(UsageError, match="not writable"):
        metrics.evaluate_files(*pair, json_out=ro / "m.json")
    assert list(ro.iterdir()) == []


def test_the_json_goes_into_a_new_folder(pair, tmp_path, monkeypatch):
    monkeypatch.setattr(metrics, "evaluate", lambda *_a, **_k: dict.fromkeys(metrics.KEYS, 1.0))
    out = tmp_path / "new" / "deeper" / "m.json"
    metrics.evaluate_files(*pair, json_out=out)
    assert list(json.loads(out.read_text())) == list(metrics.KEYS)
