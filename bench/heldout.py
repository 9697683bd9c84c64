"""Held-out check: the quick preset on volumes unlike the quality benchmark's own.

bench/quality.py scores four fixed simulations (seed 0, 64x128x128). The settings here
differ in seed, shape and PSF, and nothing in the training recipe was tuned on them: they
show whether a quick model restores a volume it was never adjusted to. Each case is
simulated, a quick model is trained on its raw volume alone (as `resin train --preset
quick` does, seed 0), the runtime enhances it (float32 in and out, nothing clipped) and
the result is scored against the truth beside the raw input.

    python bench/heldout.py                      # every case, ~6-8 min each on 2 cores
    python bench/heldout.py --cases nuclei-mild --json out.json
    python bench/heldout.py --cases thin-nuclei-20 --workdir W --faces 8 zeros
        # the same model also run with other face modes (resin-run --faces)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import quality as Q  # noqa: E402

#: name -> (description, resin.simulate.simulate keyword arguments)
CASES: dict[str, tuple[str, dict]] = {
    "paper-96": ("tubes, PSF sigma 1/5, blur only, 96x128x128, seed 7",
                 {"shape": (96, 128, 128), "seed": 7, "noise": False}),
    "nuclei-mild": ("nuclei, PSF sigma 1/2.5, noise, z sampled as x and y, 64x128x128, "
                    "seed 5",
                    {"shape": (64, 128, 128), "seed": 5, "kind": "nuclei",
                     "sigma": (1.0, 2.5), "z_step": 1}),
    "oblique-30": ("tubes, PSF sigma 1/4 tilted 30 deg from z towards x, noise, 64x128x128, "
                   "seed 9 (trained with --angle 30; isotropy measured along z)",
                   {"shape": (64, 128, 128), "seed": 9, "sigma": (1.0, 4.0),
                    "angle_deg": 30.0}),
    "nuclei-zstep3": ("nuclei, PSF sigma 1.2/3, noise, z sampled 3x coarser (--z-step 3), "
                      "72x128x128, seed 3",
                      {"shape": (72, 128, 128), "seed": 3, "kind": "nuclei", "z_step": 3}),
    "noisy-96": ("tubes, PSF sigma 1/5, noise, 96x128x128, seed 11",
                 {"shape": (96, 128, 128), "seed": 11}),
    "oblique-45-96": ("tubes, PSF sigma 1/5 tilted 45 deg from z towards x, noise, "
                      "96x128x128, seed 13 (trained with --angle 45; isotropy measured "
                      "along z)",
                      {"shape": (96, 128, 128), "seed": 13, "angle_deg": 45.0}),
    # thin stacks, thinner than the quick preset's 32^3 patch: it trains on a cube a few
    # planes shorter than the stack (resin.config.fit_patch; --full-depth: as deep as it)
    "thin-nuclei-20": ("nuclei, PSF sigma 1/2.5, noise, z sampled as x and y, 20x256x256, "
                       "seed 1", {"shape": (20, 256, 256), "seed": 1, "kind": "nuclei",
                                  "sigma": (1.0, 2.5), "z_step": 1}),
    "thin-nuclei-24": ("nuclei, PSF sigma 1.2/3, noise, z sampled as x and y, 24x192x192, "
                       "seed 2", {"shape": (24, 192, 192), "seed": 2, "kind": "nuclei",
                                  "sigma": (1.2, 3.0), "z_step": 1}),
    "thin-tubes-24": ("tubes, PSF sigma 1/4, noise, 24x192x192, seed 3",
                      {"shape": (24, 192, 192), "seed": 3, "sigma": (1.0, 4.0)}),
    # acquisitions harder than the ones above in one respect each: few photons, a mild PSF
    # over tubes with cell bodies and a dimming depth, a bright autofluorescent background
    "dim-nuclei": ("nuclei, PSF sigma 1.2/3, 150 photons at the brightest voxel (20x fewer), "
                   "z sampled 2x coarser, 64x128x128, seed 21",
                   {"shape": (64, 128, 128), "seed": 21, "kind": "nuclei",
                    "photons": 150.0}),
    "dim-nuclei-500": ("nuclei, PSF sigma 1.2/3, 500 photons at the brightest voxel (6x fewer), "
                       "z sampled 2x coarser, 64x128x128, seed 21",
                       {"shape": (64, 128, 128), "seed": 21, "kind": "nuclei",
                        "photons": 500.0}),
    "dim-nuclei-1000": ("nuclei, PSF sigma 1.2/3, 1000 photons at the brightest voxel (3x "
                        "fewer), z sampled 2x coarser, 64x128x128, seed 21",
                        {"shape": (64, 128, 128), "seed": 21, "kind": "nuclei",
                         "photons": 1000.0}),
    "tubes-somata": ("tubes with 8 round cell bodies, PSF sigma 1/3, noise, 30 % dimmer at "
                     "the last plane, 64x192x192, seed 17",
                     {"shape": (64, 192, 192), "seed": 17, "sigma": (1.0, 3.0),
                      "n_blobs": 8, "depth_falloff": 0.3}),
    "nuclei-background": ("nuclei, PSF sigma 1.2/3, noise, a background of 60 photons per "
                          "voxel (the default 2), z sampled 2x coarser, 64x128x128, seed 23",
                          {"shape": (64, 128, 128), "seed": 23, "kind": "nuclei",
                           "background": 60.0}),
}
METRICS = ("rmse", "rmse_lsq", "ssim", "isotropy_ratio", "isotropy_fourier", "mip_ssim")


def run_case(name: str, workdir: Path, full_depth: bool = False,
             steps: int | None = None, d_noise: bool = False,
             selfnet_minutes: float | None = None, faces: tuple[str, ...] = (),
             reuse: bool = False) -> dict:
    """One case's rows. ``faces``: the model is also run with these face modes (rows
    ``resin faces=MODE``; ``resin`` is the default, repeat). ``reuse``: a model already in
    ``workdir`` from an earlier run of the case is scored instead of training one."""
    from resin.io import write_volume
    from resin.simulate import simulate

    _, kwargs = CASES[name]
    sim = simulate(**kwargs)
    k = sim.z_step
    n = (sim.raw.shape[0] - 1) * k + 1
    truth = sim.truth[:n]
    raw_path = workdir / f"{name}.tif"
    write_volume(raw_path, sim.raw, overwrite=True)
    model = workdir / f"{name}.pt"
    patch = None
    if full_depth:  # a cube as deep as the stack (on the size grid), not the fitted one
        side = min(32, truth.shape[0] // 4 * 4)
        patch = (side,) * 3
    seconds: float | None = None
    if not (reuse and model.exists()):
        seconds = Q.train_preset("quick", raw_path, model, sim.angle_deg, k, truth.shape,
                                 steps, patch=patch, d_noise=d_noise)
    row: dict = {"case": name, "train_seconds": seconds,
                 "raw": Q.score(Q.on_grid(sim.raw, k)[:n], truth), "enhance_seconds": {}}
    for mode in ("repeat", *faces):
        method = "resin" if mode == "repeat" else f"resin faces={mode}"
        t0 = time.perf_counter()
        pred, _ = Q.enhance(model, sim.raw, k, faces=mode)
        row["enhance_seconds"][method] = time.perf_counter() - t0
        row[method] = Q.score(pred[:n], truth)
    row["truth"] = Q.score(truth.astype("float32"), truth)  # its own isotropy
    if selfnet_minutes:  # the paper's comparison, as bench/quality.py trains it
        out = Q._selfnet().selfnet_enhance(sim.raw, z_step=k, angle_deg=sim.angle_deg, seed=0,
                                           minutes=selfnet_minutes, log=lambda line: None)
        row["selfnet"] = Q.score(out[:n], truth)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    ap.add_argument("--workdir", type=Path, help="keep volumes and models here")
    ap.add_argument("--json", type=Path, help="write the rows here")
    ap.add_argument("--full-depth", action="store_true",
                    help="train thin cases on patches as deep as the stack instead of the "
                         "fitted ones a few planes shorter (the comparison in docs)")
    ap.add_argument("--steps", type=int, default=None,
                    help="train this many steps instead of the quick preset's (still capped "
                         "at its 9 minutes)")
    ap.add_argument("--selfnet", type=float, default=None, metavar="MIN",
                    help="also train and score the Self-Net baseline for MIN minutes per "
                         "case (bench/quality.py gives it 4)")
    ap.add_argument("--faces", nargs="+", default=[], metavar="MODE",
                    help="also run each model with these face modes (zeros, or a number of "
                         "voxels N: resin-run --faces), beside the default repeat")
    ap.add_argument("--reuse", action="store_true",
                    help="score the model an earlier run left in --workdir instead of "
                         "training one")
    ap.add_argument("--d-noise", action="store_true",
                    help="D adds the raw volume's measured noise (degrader.noise "
                         "'measured', experimental; docs/benchmarks.md)")
    args = ap.parse_args(argv)
    from resin.runtime.planner import check_faces

    from resin import _log
    from resin.errors import UsageError

    for mode in args.faces:
        try:
            check_faces(mode)
        except UsageError as exc:
            ap.error(str(exc))
    if args.reuse and args.workdir is None:
        ap.error("--reuse needs the --workdir of the earlier run")

    _log.configure(quiet=True)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="resin-heldout-"))
    workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    print(f"{'case':12s} {'method':6s} " + " ".join(f"{m:>16s}" for m in METRICS), flush=True)
    for name in args.cases:
        row = run_case(name, workdir, args.full_depth, args.steps, args.d_noise, args.selfnet,
                       tuple(args.faces), args.reuse)
        rows.append(row)
        resin_rows = list(row["enhance_seconds"])
        for method in [m for m in ("raw", *resin_rows, "selfnet", "truth") if m in row]:
            took = row["enhance_seconds"].get(method)
            print(f"{name:12s} {method:6s} "
                  + " ".join(f"{row[method][m]:16.3f}" for m in METRICS)
                  + ("" if took is None else f"  ({took:.1f} s)"), flush=True)
        trained = ("an earlier run's quick model" if row["train_seconds"] is None else
                   f"quick model trained in {row['train_seconds']:.0f} s")
        print(f"{name:12s} {trained}; {CASES[name][0]}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
