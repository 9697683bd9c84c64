"""Baseline: Richardson-Lucy deconvolution with the true PSF, scored with resin's metrics.

This is the classic method a user would pick instead of RESIN, and the bar the learned
model has to beat. It simulates a volume (``resin.simulate``), deconvolves the raw
volume with the exact PSF that blurred it (``skimage.restoration.richardson_lucy``) for
several iteration counts, and prints the paper's metrics of each result against the
truth, with the ratio to the blurred input (the named reference, measured in the same
run). RL gets an advantage RESIN never has: the true PSF.

    python bench/baseline_rl.py                      # 64x256x256, sigma 1/5, defaults
    python bench/baseline_rl.py --iterations 5 10 20 40 --photons 1000 --json rl.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from resin.metrics import KEYS, evaluate
from resin.simulate import (
    DEFAULT_OFFSET,
    DEFAULT_PHOTONS,
    DEFAULT_READ_NOISE,
    DEFAULT_SHAPE,
    simulate,
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", nargs=3, type=int, default=list(DEFAULT_SHAPE), metavar=("Z", "Y", "X"))
    ap.add_argument("--sigma", nargs=2, type=float, default=[1.0, 5.0], metavar=("LAT", "AX"))
    ap.add_argument("--angle", type=float, default=0.0)
    ap.add_argument("--photons", type=float, default=DEFAULT_PHOTONS)
    ap.add_argument("--read-noise", type=float, default=DEFAULT_READ_NOISE)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--iterations", nargs="+", type=int, default=[5, 10, 20, 40])
    ap.add_argument("--json", help="write all rows to this JSON file")
    args = ap.parse_args(argv)

    from skimage.restoration import richardson_lucy

    sim = simulate(tuple(args.shape), sigma=tuple(args.sigma), angle_deg=args.angle,
                   photons=args.photons, read_noise=args.read_noise, offset=DEFAULT_OFFSET,
                   seed=args.seed)
    psf = sim.psf()
    # RL models Poisson counts: remove the camera offset, keep it non-negative
    counts = np.clip(sim.raw.astype(np.float32) - DEFAULT_OFFSET, 0.0, None)

    rows: list[dict[str, float | int | str]] = []
    ref = evaluate(sim.raw, sim.truth)
    rows.append({"method": "blurred input", "iterations": 0, **ref, "seconds": 0.0})
    for n in args.iterations:
        t0 = time.perf_counter()
        out = richardson_lucy(counts, psf, num_iter=n, clip=False)
        seconds = time.perf_counter() - t0
        rows.append({"method": "richardson-lucy", "iterations": n,
                     **evaluate(out, sim.truth), "seconds": seconds})

    print(f"# Richardson-Lucy with the true PSF, shape {tuple(args.shape)}, sigma "
          f"{tuple(args.sigma)}, angle {args.angle}, photons {args.photons:g}, "
          f"read noise {args.read_noise:g}, seed {args.seed}")
    print("# reference: the blurred input itself (ratios = method / input)")
    head = ["method", "iter", *KEYS, "rmse/in", "ssim/in", "iso/in", "s"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        vals = [f"{float(r[k]):.4f}" for k in KEYS]
        ratios = [float(r[k]) / ref[k] for k in ("rmse", "ssim", "isotropy_ratio")]
        print(f"| {r['method']} | {r['iterations']} | " + " | ".join(vals) + " | "
              + " | ".join(f"{x:.3f}" for x in ratios) + f" | {float(r['seconds']):.1f} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
