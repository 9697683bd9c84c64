"""Whole-volume inference with torch, for benchmarks and small volumes.

The streaming, tiled path for large data is ``resin.runtime``; this one runs F on the
whole (padded) volume at once, so it is only for volumes that fit in memory. The
normalization is the contract's: the volume's own percentiles at the checkpoint's
``low_percentile``/``high_percentile``, computed once for the whole volume.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from resin._optional import require
from resin.checkpoint import build_generator, load_checkpoint
from resin.config import NormalizationConfig
from resin.data import compute_normalization


def enhance_volume(checkpoint: str | os.PathLike | dict[str, Any], volume: np.ndarray,
                   device: str = "cpu") -> np.ndarray:
    """F(volume) as float32 in the input's intensity units (same shape; z-step models not)."""
    torch = require("torch", "torch inference", extra="train")
    ckpt = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
    if float(ckpt.get("scale", [1.0])[0]) != 1.0:
        raise NotImplementedError("enhance_volume does not resample z; use resin-run")
    net = build_generator(ckpt).to(device)
    rec = ckpt["normalization"]
    norm = compute_normalization(
        volume.ravel(), NormalizationConfig(low_percentile=rec["low_percentile"],
                                            high_percentile=rec["high_percentile"]))
    m = net.size_multiple
    pad = [(0, (-s) % m) for s in volume.shape]
    x = np.pad(norm.apply(volume), pad, mode="reflect")
    with torch.no_grad():
        y = net(torch.from_numpy(x)[None, None].to(device))[0, 0].float().cpu().numpy()
    y = y[: volume.shape[0], : volume.shape[1], : volume.shape[2]]
    return norm.invert(y)
