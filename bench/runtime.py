"""Runtime benchmark: resin-run end to end vs the engine alone vs MONAI sliding windows.

One run, one simulated uint16 volume, the same weights, tile and overlap everywhere:

  (a) engine only: ONNX Runtime on exactly the tiles resin-run plans, no I/O, no blending
  (b) resin-run end to end: TIFF in -> normalize -> tiles -> blend -> OME-Zarr out
  (b2) resin-run on the volume doubled in z (peak memory must stay flat)
  (c) MONAI sliding_window_inference (mode="gaussian") with the same network in PyTorch:
      TIFF in -> normalize -> sliding windows -> de-normalize -> TIFF out

MONAI's roi is resin's tile and its overlap fraction is resin's halo share of the tile, so
both run the same number of network calls on the same tile shape. Each measurement runs
in its own subprocess; peak memory is that process's own maximum RSS.

    python bench/runtime.py                      # 64x256x256, default or stand-in model
    python bench/runtime.py --shape 128 512 512  # the issue's volume (slow on 2 cores)

Goals (issue 7): (b)/(a) >= 0.9; (b) >= 1.5x (c) in speed and <= 0.5x in peak memory;
peak memory of (b2) about that of (b).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PT = REPO / "resin" / "data" / "default.pt"

_CHILD_PRELUDE = """
import json, resource, sys, time
def _report(**kw):
    kw["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("BENCH " + json.dumps(kw))
"""

ENGINE_ONLY = _CHILD_PRELUDE + """
import numpy as np
from resin.runtime.backends import load_backend
from resin.runtime.runner import TileSettings, make_plan
model, shape, tile, threads = sys.argv[1], tuple(json.loads(sys.argv[2])), json.loads(sys.argv[3]), sys.argv[4]
engine = load_backend(model, "onnxruntime", "cpu")
plan = make_plan(engine, shape, TileSettings(tile=tuple(tile)))
rng = np.random.default_rng(0)
x = rng.random((1, 1, *plan.tile), dtype=np.float32)
engine.infer(x)  # warm-up (the end-to-end run pays this too, but it is not throughput)
t = time.perf_counter()
for _ in range(plan.n_tiles):
    engine.infer(x)
dt = time.perf_counter() - t
_report(seconds=dt, voxels=int(np.prod(shape)), tiles=plan.n_tiles, tile=list(plan.tile))
"""

RESIN_RUN = _CHILD_PRELUDE + """
from resin.runtime.cli import main
t = time.perf_counter()
code = main(sys.argv[1:])
dt = time.perf_counter() - t
assert code == 0, code
import numpy as np
from resin.io import open_volume
with open_volume(sys.argv[sys.argv.index("-o") + 1]) as r:
    n = int(np.prod(r.shape))
_report(seconds=dt, voxels=n)
"""

MONAI = _CHILD_PRELUDE + """
import numpy as np, tifffile, torch
from monai.inferers import sliding_window_inference
from resin.checkpoint import build_generator, load_checkpoint
src, dst, ckpt_path = sys.argv[1], sys.argv[2], sys.argv[3]
tile, overlap = json.loads(sys.argv[4]), json.loads(sys.argv[5])
low_p, high_p = json.loads(sys.argv[6])
torch.set_grad_enabled(False)
net = build_generator(load_checkpoint(ckpt_path))
t = time.perf_counter()
vol = tifffile.imread(src)
low, high = np.percentile(vol, [low_p, high_p])
x = torch.from_numpy(((vol.astype(np.float32) - np.float32(low))
                      / np.float32(high - low))[None, None])
y = sliding_window_inference(x, roi_size=tile, sw_batch_size=1, predictor=net,
                             overlap=overlap, mode="gaussian", sigma_scale=0.125)
out = y[0, 0].numpy() * (high - low) + low
out = np.clip(np.round(out), 0, 65535).astype(np.uint16)
tifffile.imwrite(dst, out)
dt = time.perf_counter() - t
_report(seconds=dt, voxels=int(vol.size))
"""


def _child(name: str, code: str, *args: str, env: dict | None = None) -> dict:
    """Run one measurement in its own process; print it at once (a later failure keeps it)."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args],
                          capture_output=True, text=True, env=full_env)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark step failed:\n{proc.stderr[-3000:]}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH ")][-1]
    result = json.loads(line[6:])
    result["rate"] = result["voxels"] / result["seconds"]
    print(f"{name:46s} {result['rate'] / 1e6:9.3f} {result['seconds']:8.1f} "
          f"{result['peak_rss_mb']:12.0f}", flush=True)
    return result


def _model(work: Path, checkpoint: Path | None) -> tuple[Path, Path]:
    """(checkpoint, onnx): the given/default checkpoint, else a seeded stand-in generator."""
    import torch
    from resin.export._onnx import export_onnx

    from resin.checkpoint import save_checkpoint
    from resin.config import GeneratorConfig
    from resin.models import Generator

    if checkpoint is None and DEFAULT_PT.is_file():
        checkpoint = DEFAULT_PT
    if checkpoint is None:
        torch.manual_seed(0)
        net = Generator(GeneratorConfig(features=[16, 32, 64]))
        checkpoint = work / "standin.pt"
        save_checkpoint(checkpoint, {
            "resin_version": "bench", "config": {"generator": net.config.model_dump()},
            "generator": net.state_dict(), "step": 0,
            "normalization": {"low_percentile": 0.5, "high_percentile": 99.9},
            "scale": [1, 1, 1], "axial_angle_deg": 0.0, "voxel_size": None})
        print("model: stand-in generator features [16, 32, 64] (random weights; no "
              f"{DEFAULT_PT})")
    else:
        print(f"model: {checkpoint}")
    onnx = work / "model.onnx"
    export_onnx(checkpoint, onnx)
    return checkpoint, onnx


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", nargs=3, type=int, default=[64, 256, 256])
    ap.add_argument("--tile", nargs=3, type=int, default=None,
                    help="tile incl. halo (default: resin-run's default for the model)")
    ap.add_argument("--checkpoint", type=Path, default=None)
    ap.add_argument("--keep", type=Path, default=None, help="keep the work folder here")
    args = ap.parse_args()

    from resin import _log

    _log.configure(quiet=True)
    work = args.keep or Path(tempfile.mkdtemp(prefix="resin-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    import numpy as np
    from resin.runtime.backends import load_backend
    from resin.runtime.runner import TileSettings, make_plan

    from resin.io import write_volume
    from resin.simulate import simulate

    ckpt, onnx = _model(work, args.checkpoint)
    shape = tuple(args.shape)
    sim = simulate(shape=shape, seed=0)
    src = work / "raw.tif"
    write_volume(src, sim.raw, overwrite=True)
    src2 = work / "raw2.tif"
    write_volume(src2, np.concatenate([sim.raw, sim.raw[::-1]]), overwrite=True)
    del sim

    engine = load_backend(onnx, "onnxruntime", "cpu")
    plan = make_plan(engine, shape, TileSettings(tile=tuple(args.tile) if args.tile else None))
    meta = engine.metadata
    tile = list(plan.tile)
    overlap = [2 * h / t for h, t in zip(plan.halo, plan.tile, strict=True)]
    engine.close()
    print(f"volume {'x'.join(map(str, shape))} uint16, tile {'x'.join(map(str, tile))}, "
          f"halo {meta.halo}, {plan.n_tiles} tiles; MONAI overlap "
          f"{', '.join(f'{o:.3f}' for o in overlap)}; {os.cpu_count()} CPU cores")

    tile_args = ["--tile", *map(str, tile)]
    print(f"\n{'measurement':46s} {'Mvoxel/s':>9s} {'seconds':>8s} {'peak RSS MB':>12s}",
          flush=True)
    run_args = ["--engine", str(onnx), "--overwrite", "--device", "cpu", "--quiet", *tile_args]
    a = _child("(a) engine only (ONNX Runtime, same tiles)", ENGINE_ONLY, str(onnx),
               json.dumps(list(shape)), json.dumps(tile), "0")
    b = _child("(b) resin-run end to end", RESIN_RUN, *run_args, str(src),
               "-o", str(work / "out.ome.zarr"))
    b2 = _child("(b2) resin-run, volume doubled in z", RESIN_RUN, *run_args, str(src2),
                "-o", str(work / "out2.ome.zarr"))
    norm = meta.normalization
    c = _child("(c) MONAI sliding_window_inference, PyTorch", MONAI, str(src),
               str(work / "monai.tif"), str(ckpt), json.dumps(tile), json.dumps(overlap),
               json.dumps([norm.low_percentile, norm.high_percentile]))

    print("\nratio                                           value   goal")
    checks = [
        ("(b)/(a) speed: end-to-end vs engine alone", b["rate"] / a["rate"], ">= 0.9"),
        ("(b)/(c) speed: resin-run vs MONAI", b["rate"] / c["rate"], ">= 1.5"),
        ("(b)/(c) peak memory: resin-run vs MONAI", b["peak_rss_mb"] / c["peak_rss_mb"],
         "<= 0.5"),
        ("(b2)/(b) peak memory: doubled volume", b2["peak_rss_mb"] / b["peak_rss_mb"],
         "~ 1.0"),
    ]
    for name, value, goal in checks:
        print(f"{name:46s} {value:7.2f}   {goal}")
    print(f"\nwork folder: {work}")


if __name__ == "__main__":
    main()
