"""Training speed of the RESIN trainer: steps/s of a preset, channels-last against the
contiguous layout, in the same run.

    python bench/train_speed.py                      # quick preset, axial and 45 degrees
    python bench/train_speed.py --preset default --steps 5

One step is the whole generator and discriminator update (``Trainer.train_step``) on a
fixed random batch of the preset's patch size; the sampler (reading patches from a volume)
is not included. The two layouts take turns for ``--rounds`` rounds and the best round of
each is kept, so a burst of other work on a shared host slows both sides of the ratio.
"""

from __future__ import annotations

import argparse
import os
import time

# OpenMP threads that spin while waiting distort timings on a shared CPU.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402


def steps_per_second(trainer, batch: np.ndarray, steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer.train_step(batch)
    return steps / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="quick", choices=("quick", "default"))
    ap.add_argument("--angles", nargs="+", type=float, default=[0.0, 45.0])
    ap.add_argument("--steps", type=int, default=20, help="steps per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    args = ap.parse_args(argv)

    import torch

    from resin.config import preset_config
    from resin.train.trainer import Trainer

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, preset "
          f"{args.preset}, best of {args.rounds} rounds of {args.steps} steps")
    print(f"{'angle':>6} {'patch':>12} {'contiguous':>12} {'channels-last':>14} {'ratio':>7}")
    for angle in args.angles:
        config = preset_config(args.preset, {"angle_deg": angle})
        batch = np.random.default_rng(0).random(
            (config.data.batch_size, 1, *config.data.patch_size), dtype=np.float32)
        trainers = {layout: Trainer(config, "cpu", channels_last=layout)
                    for layout in (False, True)}
        for t in trainers.values():
            steps_per_second(t, batch, 3)  # warm up (oneDNN primitive creation)
        best = {layout: 0.0 for layout in trainers}
        for _ in range(args.rounds):
            for layout, t in trainers.items():
                best[layout] = max(best[layout], steps_per_second(t, batch, args.steps))
        patch = "x".join(str(p) for p in config.data.patch_size)
        print(f"{angle:6g} {patch:>12} {best[False]:9.3g} /s {best[True]:11.3g} /s "
              f"{best[True] / best[False]:6.2f}x   ({1 / best[True]:.3g} s per channels-last step)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
