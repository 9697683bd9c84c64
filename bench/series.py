"""Training on every time point of a series (``resin train --time all``) against one.

A simulated time series: ``--time-points`` volumes of the benchmark's noisy tubes (PSF sigma
1/5, shot and read noise, 64x128x128), each its own arrangement of tubes (seeds 10, 11, ...:
a sample that moves between time points), written as one TZYX ImageJ TIFF. Two quick
models are trained on it, seed 0, as ``resin train --preset quick`` trains:

* ``--time 0``: the first time point alone (what a user could do before ``--time all``);
* ``--time all``: patches from every time point, each under its own normalization.

Both are run by the runtime on every time point (float32 in and out, nothing clipped) and
scored against that time point's truth beside the raw input (``bench/quality.py``'s
metrics). Time points 1, 2, ... are held out from the first model, not from the second.

    python bench/series.py --json bench/results/series.json      # ~11 min on 2 cores
    python bench/series.py --workdir W --reuse                    # score W's models again
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import quality as Q  # noqa: E402

COLUMNS = ("rmse", "rmse_lsq", "ssim", "isotropy_ratio", "mip_ssim")


def simulate_series(count: int, shape: tuple[int, int, int]) -> list:
    from resin.simulate import simulate

    return [simulate(shape, sigma=(1.0, 5.0), seed=10 + t) for t in range(count)]


def train_on(raw: Path, model: Path, time_point: int | str) -> float:
    """A quick model of ``raw`` at ``time_point`` (an index or "all"); the wall time."""
    from resin.config import fit_patch, preset_config
    from resin.train import train

    config = preset_config("quick", {"seed": 0, "data": {"time": time_point}})
    config = fit_patch(config, Q.SHAPE)
    t0 = time.perf_counter()
    train(raw, model, config, device="cpu", overwrite=True, previews=False)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--time-points", type=int, default=4)
    ap.add_argument("--workdir", type=Path, help="keep the series and models here")
    ap.add_argument("--json", type=Path, help="write the rows here")
    ap.add_argument("--reuse", action="store_true",
                    help="score the models already in --workdir instead of training them")
    args = ap.parse_args(argv)
    import tifffile

    work = args.workdir or Path(tempfile.mkdtemp(prefix="resin_series_"))
    work.mkdir(parents=True, exist_ok=True)
    sims = simulate_series(args.time_points, Q.SHAPE)
    raw = work / "series.tif"
    tifffile.imwrite(raw, np.stack([s.raw for s in sims]), imagej=True,
                     metadata={"axes": "TZYX"})
    rows: list[dict] = []
    for t, sim in enumerate(sims):
        rows.append({"method": "raw input", "time_point": t, **Q.score(sim.raw, sim.truth)})
    for label, choice in (("RESIN quick --time 0", 0), ("RESIN quick --time all", "all")):
        model = work / f"time_{choice}.pt"
        if args.reuse and model.is_file():
            trained = "reused"
        else:
            Q._note(f"training {label}")
            trained = f"trained in {train_on(raw, model, choice) / 60:.1f} min"
        steps = Q._train_info(model)
        for t, sim in enumerate(sims):
            out, _ = Q.enhance(model, sim.raw.astype(np.float32), 1)
            rows.append({"method": label, "time_point": t, "detail": f"{trained}; {steps}",
                         **Q.score(out, sim.truth)})
    for t, sim in enumerate(sims):
        rows.append({"method": "truth", "time_point": t, **Q.score(sim.truth, sim.truth)})
    print(f"{'method':26s} {'t':>2s} " + " ".join(f"{c:>14s}" for c in COLUMNS))
    for row in rows:
        print(f"{row['method']:26s} {row['time_point']:2d} "
              + " ".join(f"{row[c]:14.3f}" for c in COLUMNS))
    print("means over the time points (held out from --time 0: 1 and later)")
    for method in dict.fromkeys(r["method"] for r in rows):
        for part, keep in (("all", lambda t: True), ("1+", lambda t: t > 0)):
            sel = [r for r in rows if r["method"] == method and keep(r["time_point"])]
            print(f"{method:26s} {part:>3s} " + " ".join(
                f"{np.mean([r[c] for r in sel]):14.3f}" for c in COLUMNS))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"time_points": args.time_points,
                                         "shape": list(Q.SHAPE), "rows": rows},
                                        indent=1, default=Q._jsonable))
    return 0


if __name__ == "__main__":
    sys.exit(main())
