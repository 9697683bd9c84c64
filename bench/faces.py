"""How much the runtime's reflect-padded volume faces cost a trained model's scores.

    python bench/quality.py --workdir /tmp/quality          # keeps SETTING_quick.pt there
    python bench/faces.py --workdir /tmp/quality paper oblique45

For each setting, the same checkpoint is run two ways on that setting's raw volume and
scored against its truth (``bench/quality.py``'s metrics and volumes, seed 0): through the
runtime (``Enhancer``, tiled, the volume reflect-padded by the halo at its faces), and as
one call of the network on the whole normalized volume, as training runs it (each
convolution zero-pads its own input at the faces). Also printed: both scored on the
interior (a border of ``--border`` voxels dropped), and the raw input.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
import quality  # noqa: E402


def one_call(model: Path, raw: np.ndarray) -> np.ndarray:
    """The network once on the whole volume, normalized as the checkpoint records."""
    import torch

    from resin.checkpoint import build_generator, load_checkpoint
    from resin.data import Normalization

    ckpt = load_checkpoint(model)
    n = ckpt["normalization"]
    norm = Normalization(n["low_percentile"], n["high_percentile"], n["train_low"],
                         n["train_high"])
    net = build_generator(ckpt)
    with torch.inference_mode():
        y = net(torch.from_numpy(norm.apply(raw))[None, None])[0, 0].numpy()
    return norm.invert(y)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("settings", nargs="+", choices=[n for n, s in quality.SETTINGS.items()
                                                     if s.kind == "tubes"])
    ap.add_argument("--workdir", type=Path, required=True,
                    help="folder holding SETTING_quick.pt (bench/quality.py --workdir)")
    ap.add_argument("--border", type=int, default=4)
    args = ap.parse_args(argv)
    inner = (slice(args.border, -args.border),) * 3
    print("| setting | run | rmse | ssim | rmse, interior | output max (truth's) |")
    print("|---|---|---|---|---|---|")
    for name in args.settings:
        sim = quality.SETTINGS[name].simulate(quality.SHAPE)
        model = args.workdir / f"{name}_quick.pt"
        runs = {
            "raw input": sim.raw.astype(np.float32),
            "runtime, reflect-padded faces": quality.enhance(model, sim.raw, 1)[0],
            "one zero-padded call": one_call(model, sim.raw),
        }
        for run, pred in runs.items():
            whole = quality.score(pred, sim.truth)
            interior = quality.score(pred[inner], sim.truth[inner])
            print(f"| {name} | {run} | {whole['rmse']:.3f} | {whole['ssim']:.3f} | "
                  f"{interior['rmse']:.3f} | {float(pred.max()):.0f} ({int(sim.truth.max())}) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
