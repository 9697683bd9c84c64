"""Simple references the runtime and export tests compare against (whole-volume inference)."""

from __future__ import annotations

import numpy as np


def one_tile_reference(model, vol: np.ndarray, halo, m: int, low: float, high: float,
                       pad=None):
    """Normalize, pad by ``pad`` (default: the halo; + up to the size multiple) repeating
    the faces, one ORT call, crop."""
    import onnxruntime as ort

    x = (vol.astype(np.float32) - np.float32(low)) * np.float32(1.0 / (high - low))
    pads = []
    pad = halo if pad is None else pad
    for n, h in zip(vol.shape, pad, strict=True):
        extra = -(n + 2 * h) % m
        pads.append((h, h + extra))
    xp = np.pad(x, pads, mode="edge")
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    y = sess.run(["output"], {"input": xp[None, None]})[0][0, 0]
    core = y[tuple(slice(h, h + n) for h, n in zip(pad, vol.shape, strict=True))]
    return core * (high - low) + low
