"""Background grain before and after a model, on volumes with a truth elsewhere.

The real-data benchmark (``bench/real.py``) reports how much a model raises the background
grain of a stack (:func:`real.grain_of`), a ground-truth-free sign of sharpened noise.
This runs any checkpoints on their raw volumes through the runtime and prints the grain
of each raw and output, and their ratio, so the figure can be read beside what the
quality and held-out benchmarks measured against the truth for the same models:

    python bench/quality.py --workdir /tmp/quality          # keeps SETTING_raw.tif, SETTING_quick.pt
    python bench/grain.py /tmp/quality/noisy_raw.tif /tmp/quality/noisy_quick.pt \\
        /tmp/quality/nuclei_raw.tif /tmp/quality/nuclei_quick.pt

A model trained with ``--z-step K`` gives K output planes per raw plane; its output is
compared on the raw planes (every K-th).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
import real  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pairs", nargs="+", metavar="RAW MODEL",
                    help="raw volumes and the models to run on them, in pairs")
    args = ap.parse_args(argv)
    if len(args.pairs) % 2:
        ap.error("give RAW MODEL pairs")
    from resin.runtime import Enhancer

    from resin.io import read_volume

    print("| model | raw grain | output grain | ratio |")
    print("|---|---|---|---|")
    for raw_path, model in zip(args.pairs[::2], args.pairs[1::2], strict=True):
        raw = read_volume(raw_path).astype(np.float32)
        backend = "torch" if model.endswith(".pt") else "onnxruntime"
        with Enhancer(model, backend=backend, device="cpu") as enh:
            out = enh.enhance(raw)
        if out.shape[0] != raw.shape[0]:
            out = out[::round(out.shape[0] / raw.shape[0])][:raw.shape[0]]
        g0, g1 = real.grain_of(raw, raw), real.grain_of(raw, out)
        ratio = f"{g1 / g0:.2f}" if g0 > 0 else "n/a (the raw has no dark background)"
        print(f"| {model} | {g0:.3f} | {g1:.3f} | {ratio} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
