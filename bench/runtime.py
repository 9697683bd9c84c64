"""Runtime benchmark: resin-run end to end vs the engine alone vs MONAI sliding windows.

One run, one simulated uint16 volume, the same weights, tile and overlap everywhere:

  (a) engine only: ONNX Runtime on exactly the tiles resin-run plans, no I/O, no blending,
      after one warm-up call; (a0) the same calls with the first paying the warm-up
  (b) resin-run end to end: TIFF in -> normalize -> tiles -> blend -> OME-Zarr out
  (b2) resin-run on the volume doubled in z (peak memory must stay flat)
  (b3) resin-run with the PyTorch checkpoint instead of ONNX (same weights and tiles)
  (c) MONAI sliding_window_inference (mode="gaussian") with the same network in PyTorch:
      TIFF in -> normalize -> sliding windows -> de-normalize -> TIFF out
  (c2) the same MONAI call on the volume padded as resin's planner pads it (faces repeated)
  (d)  blocks: peak memory when the volume doubles in Y and X (same block), the share of
       network calls run twice at block edges (default block, this and a whole-brain
       volume), and Dask --workers 1 vs 2 (output identical, speed ratio)
  (e)  halo and tile: the exact halo with a ~48x96x96 core, the tolerant halo with that
       core, the defaults (tolerant halo, tile from the memory budget), and `--faces
       zeros` (against one call on the unpadded volume): kept share
       (kept / computed voxels), the share of computed voxels outside the volume (the
       padded faces), network calls, speed, and the largest deviation from
       one-tile inference of the whole volume (exact halo), as a fraction of its range
  (f)  resin at its defaults against MONAI as a new user would call it: roi 96x160x160,
       mode="gaussian" (MONAI's default sigma), overlap 0.25 and 0.5, the same ONNX model
       through the same ONNX Runtime session type for both; in-memory float32 volume in,
       float32 out; speed, peak RSS, and every output's largest deviation from one-tile
       inference, inside the volume and in the band of one exact halo at its faces
       (`--only monai`; the references, faces repeated and zero-padded, are skipped above
       20 M padded voxels); resin within `--memory 0.5`; resin with `--faces zeros`
       (nothing computed outside the volume, as MONAI); and (f7), (f8) with each face
       repeated 4 and 8 voxels, the network's zero padding beyond (`--faces 4`, `--faces 8`)
  (g)  faces on a thin stack (`--only faces`, e.g. `--shape 20 1024 1024`: a simulated
       nuclei stack sampled in z as in x and y): resin-run with the faces repeated over the
       halo (the default), `--faces 8` and `--faces zeros`: tile, kept share, network
       calls, speed, peak RSS, and speed against the default

MONAI's roi is resin's tile and its overlap fraction is resin's halo share of the tile, so
both step by the same stride. They do not make the same number of network calls: resin's
planner pads the volume by the halo (each face plane repeated) so that the voxels at the
volume's faces get the same context as any other and the result equals one-tile inference; MONAI's windows
stay inside the volume, fewer of them, and the faces see the network's zero padding. (c2)
gives MONAI the same padded volume, hence exactly resin's tiles; both counts are printed.
Each measurement runs in its own subprocess; peak memory is that process's own maximum RSS.

    python bench/runtime.py                      # 64x256x256, default or stand-in model
    python bench/runtime.py --shape 128 512 512  # the issue's volume (slow on 2 cores)

    python bench/runtime.py --only e2e           # (a)-(c2) alone
    python bench/runtime.py --only blocks        # (d) alone
    python bench/runtime.py --only halo          # (e) alone
    python bench/runtime.py --only monai --shape 96 256 256    # (f) alone
    python bench/runtime.py --only faces --shape 20 1024 1024  # (g) alone

Goals: (b)/(a) >= 0.9; (b) >= 1.5x (c) in speed and <= 0.5x in peak memory; peak memory of
(b2) about that of (b); (d) peak memory doubled-in-Y-and-X / base <= 1.1, redundant calls
< 15 %, workers 2 vs 1 identical bytes; (f) resin at its defaults >= 1x MONAI's speed at
overlap 0.25 and >= 2x at 0.5, within 1e-3 of one-tile inference, <= 0.5x MONAI's peak RSS
(the issue's volume for RSS: 128x512x512).
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

# Peak RSS is the process's own high-water mark (VmHWM). getrusage's ru_maxrss is not: Linux
# carries it across fork and exec, so a child of a parent holding gigabytes reports those.
_CHILD_PRELUDE = """
import json, resource, sys, time
def _peak_rss_mb():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
def _report(**kw):
    kw["peak_rss_mb"] = _peak_rss_mb()
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
# warm-up: the end-to-end run pays it too, but it is not throughput; timed on its own,
# with its system time (the kernel handing ONNX Runtime's arena its fresh pages)
r0, t = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
engine.infer(x)
first, r1 = time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF)
t = time.perf_counter()
for _ in range(plan.n_tiles):
    engine.infer(x)
dt = time.perf_counter() - t
_report(seconds=dt, voxels=int(np.prod(shape)), tiles=plan.n_tiles, tile=list(plan.tile),
        first_seconds=first, first_system_seconds=r1.ru_stime - r0.ru_stime)
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
from monai.data.utils import dense_patch_slices
from monai.inferers.utils import _get_scan_interval
src, dst, ckpt_path = sys.argv[1], sys.argv[2], sys.argv[3]
tile, overlap = json.loads(sys.argv[4]), json.loads(sys.argv[5])
low_p, high_p = json.loads(sys.argv[6])
pad = json.loads(sys.argv[7])  # [[before, after]] * 3, or null: no padding
torch.set_grad_enabled(False)
net = build_generator(load_checkpoint(ckpt_path))
t = time.perf_counter()
vol = tifffile.imread(src)
low, high = np.percentile(vol, [low_p, high_p])
xn = (vol.astype(np.float32) - np.float32(low)) / np.float32(high - low)
if pad is not None:
    xn = np.pad(xn, pad, mode="edge")
x = torch.from_numpy(xn[None, None])
windows = len(dense_patch_slices(xn.shape, tile, _get_scan_interval(xn.shape, tile, 3, overlap)))
y = sliding_window_inference(x, roi_size=tile, sw_batch_size=1, predictor=net,
                             overlap=overlap, mode="gaussian", sigma_scale=0.125)
y = y[0, 0].numpy()
if pad is not None:
    y = y[tuple(slice(b, b + n) for (b, _), n in zip(pad, vol.shape))]
out = y * (high - low) + low
out = np.clip(np.round(out), 0, 65535).astype(np.uint16)
tifffile.imwrite(dst, out)
dt = time.perf_counter() - t
_report(seconds=dt, voxels=int(vol.size), tiles=windows)
"""


# (f): the volume (float32 .npy) and the levels come from the parent, so every method
# normalizes alike and its output can be compared with the one-tile reference.
ENHANCER = _CHILD_PRELUDE + """
import numpy as np
from resin.runtime import Enhancer
from resin.runtime.normalize import Levels
from resin.runtime.runner import make_plan
model, src, dst, levels = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
memory = json.loads(sys.argv[5])  # GiB, or null: the default budget
faces = sys.argv[6] if len(sys.argv) > 6 else "repeat"
vol = np.load(src)
with Enhancer(model, backend="onnxruntime", device="cpu", memory=memory, faces=faces) as enh:
    plan = make_plan(enh.engine, vol.shape, enh.settings)
    t = time.perf_counter()
    out = enh.enhance(vol, Levels(**levels))
    dt = time.perf_counter() - t
np.save(dst, out)
_report(seconds=dt, voxels=int(vol.size), tiles=plan.n_tiles, tile=list(plan.tile))
"""

MONAI_ORT = _CHILD_PRELUDE + """
import numpy as np, torch
from monai.data.utils import dense_patch_slices
from monai.inferers import sliding_window_inference
from monai.inferers.utils import _get_scan_interval
from resin.runtime.backends import load_backend
model, src, dst, levels = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
roi, overlap = json.loads(sys.argv[5]), float(sys.argv[6])
vol = np.load(src)
engine = load_backend(model, "onnxruntime", "cpu")
torch.set_grad_enabled(False)
def predictor(x):
    return torch.from_numpy(engine.infer(np.ascontiguousarray(x.numpy())))
low, high = np.float32(levels["low"]), np.float32(levels["high"])
windows = len(dense_patch_slices(vol.shape, roi,
                                 _get_scan_interval(vol.shape, roi, 3, [overlap] * 3)))
t = time.perf_counter()
x = torch.from_numpy(((vol - low) / (high - low)).astype(np.float32)[None, None])
y = sliding_window_inference(x, roi_size=roi, sw_batch_size=1, predictor=predictor,
                             overlap=overlap, mode="gaussian")
out = y[0, 0].numpy() * (high - low) + low
dt = time.perf_counter() - t
np.save(dst, out)
_report(seconds=dt, voxels=int(vol.size), tiles=windows)
"""


def _child(name: str, code: str, *args: str, env: dict | None = None,
           quiet: bool = False) -> dict:
    """Run one measurement in its own process; print it at once (a later failure keeps it)."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args],
                          capture_output=True, text=True, env=full_env)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark step failed:\n{proc.stderr[-3000:]}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH ")][-1]
    result = json.loads(line[6:])
    result["rate"] = result["voxels"] / result["seconds"]
    if quiet:  # the caller prints the row, with more columns
        return result
    tiles = f"{result['tiles']:6d}" if "tiles" in result else ""
    print(f"{name:46s} {result['rate'] / 1e6:9.3f} {result['seconds']:8.1f} "
          f"{result['peak_rss_mb']:12.0f} {tiles}", flush=True)
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
    export_onnx(checkpoint, onnx, overwrite=True)
    return checkpoint, onnx


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", nargs=3, type=int, default=[64, 256, 256])
    ap.add_argument("--tile", nargs=3, type=int, default=None,
                    help="tile incl. halo (default: resin-run's default for the model)")
    ap.add_argument("--checkpoint", type=Path, default=None)
    ap.add_argument("--keep", type=Path, default=None, help="keep the work folder here")
    ap.add_argument("--only", choices=("all", "e2e", "blocks", "halo", "monai", "faces"),
                    default="all")
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
    if args.only == "faces":
        _thin_faces(work, onnx, shape)
        print(f"\nwork folder: {work}")
        return
    sim = simulate(shape=shape, seed=0)
    src = work / "raw.tif"
    write_volume(src, sim.raw, overwrite=True)
    src2 = work / "raw2.tif"
    write_volume(src2, np.concatenate([sim.raw, sim.raw[::-1]]), overwrite=True)
    del sim

    engine = load_backend(onnx, "onnxruntime", "cpu")
    plan = make_plan(engine, shape, TileSettings(tile=tuple(args.tile) if args.tile else None),
                     out_dtype=np.uint16)  # what resin-run picks for this uint16 volume
    meta = engine.metadata
    tile = list(plan.tile)
    overlap = [2 * h / t for h, t in zip(plan.halo, plan.tile, strict=True)]
    engine.close()
    print(f"volume {'x'.join(map(str, shape))} uint16, tile {'x'.join(map(str, tile))}, "
          f"halo {meta.halo}, {plan.n_tiles} tiles; MONAI overlap "
          f"{', '.join(f'{o:.3f}' for o in overlap)}; {os.cpu_count()} CPU cores")

    tile_args = ["--tile", *map(str, tile)]
    if args.only == "monai":
        _against_monai(work, onnx, src)
        print(f"\nwork folder: {work}")
        return
    print(f"\n{'measurement':46s} {'Mvoxel/s':>9s} {'seconds':>8s} {'peak RSS MB':>12s} "
          f"{'tiles':>6s}", flush=True)
    run_args = ["--engine", str(onnx), "--overwrite", "--device", "cpu", "--quiet", *tile_args]
    if args.only == "blocks":
        _blocks(work, run_args, shape, plan, meta)
        print(f"\nwork folder: {work}")
        return
    if args.only == "halo":
        _halos(onnx, src)
        print(f"\nwork folder: {work}")
        return
    a = _child("(a) engine only (ONNX Runtime, same tiles)", ENGINE_ONLY, str(onnx),
               json.dumps(list(shape)), json.dumps(tile), "0")
    # (a0): the same calls with the first one paying the warm-up, as (b)'s first call does
    n = a["tiles"]
    a0 = {**a, "seconds": a["first_seconds"] + a["seconds"] * (n - 1) / n}
    a0["rate"] = a0["voxels"] / a0["seconds"]
    print(f"{'(a0) the same, first call with its warm-up':46s} {a0['rate'] / 1e6:9.3f} "
          f"{a0['seconds']:8.1f}   (first call {a['first_seconds']:.1f} s against "
          f"{a['seconds'] / n:.1f} s, {a['first_system_seconds']:.1f} s of it system time)",
          flush=True)
    b = _child("(b) resin-run end to end", RESIN_RUN, *run_args, str(src),
               "-o", str(work / "out.ome.zarr"))
    b2 = _child("(b2) resin-run, volume doubled in z", RESIN_RUN, *run_args, str(src2),
                "-o", str(work / "out2.ome.zarr"))
    pt_args = ["--engine", str(ckpt), *run_args[2:]]
    b3 = _child("(b3) resin-run, PyTorch checkpoint", RESIN_RUN, *pt_args, str(src),
                "-o", str(work / "out3.ome.zarr"))
    norm = meta.normalization
    monai_args = [str(ckpt), json.dumps(tile), json.dumps(overlap),
                  json.dumps([norm.low_percentile, norm.high_percentile])]
    c = _child("(c) MONAI sliding_window_inference, PyTorch", MONAI, str(src),
               str(work / "monai.tif"), *monai_args, "null")
    # resin's padding: halo before, halo + extra after (the padded length is a multiple
    # of the model's size multiple); with it MONAI's windows are exactly resin's tiles
    pad = [[ax.halo, ax.halo + ax.extra] for ax in plan.axes]
    c2 = _child("(c2) MONAI, volume padded as resin pads it", MONAI, str(src),
                str(work / "monai2.tif"), *monai_args, json.dumps(pad))

    print("\nratio                                           value   goal")
    checks = [
        ("(b)/(a) speed: end-to-end vs engine alone", b["rate"] / a["rate"], ">= 0.9"),
        ("(b)/(a0) the same, both paying the warm-up", b["rate"] / a0["rate"], "reported"),
        ("(b)/(c) speed: resin-run vs MONAI", b["rate"] / c["rate"], ">= 1.5"),
        ("(b)/(c) peak memory: resin-run vs MONAI", b["peak_rss_mb"] / c["peak_rss_mb"],
         "<= 0.5"),
        ("(b)/(c2) speed: same tiles (MONAI padded)", b["rate"] / c2["rate"], ">= 1.5"),
        ("(b)/(c2) peak memory: same tiles", b["peak_rss_mb"] / c2["peak_rss_mb"], "<= 0.5"),
        ("(b3)/(c) speed: PyTorch checkpoint vs MONAI", b3["rate"] / c["rate"], ">= 1.5"),
        ("(b3)/(c2) speed: same tiles", b3["rate"] / c2["rate"], ">= 1.5"),
        ("(b3)/(c) peak memory", b3["peak_rss_mb"] / c["peak_rss_mb"], "<= 0.5"),
        ("(b2)/(b) peak memory: doubled volume", b2["peak_rss_mb"] / b["peak_rss_mb"],
         "~ 1.0"),
    ]
    for name, value, goal in checks:
        print(f"{name:46s} {value:7.2f}   {goal}")
    if args.only == "e2e":
        print(f"\nwork folder: {work}")
        return
    print()
    _blocks(work, run_args, shape, plan, meta)
    print()
    _halos(onnx, src)
    print()
    _against_monai(work, onnx, src)
    print(f"\nwork folder: {work}")


def _thin_faces(work: Path, onnx: Path, shape: tuple[int, ...]) -> None:
    """(g): resin-run on a thin stack with each face mode; the planner's tiles for each."""
    import math

    import numpy as np
    from resin.runtime.backends import load_backend
    from resin.runtime.runner import TileSettings, make_plan

    from resin.io import write_volume
    from resin.simulate import simulate

    sim = simulate(shape=shape, seed=4, kind="nuclei", sigma=(1.0, 2.5), z_step=1)
    src = work / "thin.tif"
    write_volume(src, sim.raw, overwrite=True)
    del sim
    engine = load_backend(onnx, "onnxruntime", "cpu")
    plans = {faces: make_plan(engine, shape, TileSettings(faces=faces), out_dtype=np.uint16)
             for faces in ("repeat", "8", "zeros")}
    engine.close()
    print(f"thin stack {'x'.join(map(str, shape))} uint16 (simulated nuclei), resin-run at "
          "the default memory budget\n")
    print(f"{'--faces':8s} {'tile':>13s} {'kept':>7s} {'calls':>6s} {'Mvoxel/s':>9s} "
          f"{'seconds':>8s} {'peak RSS MB':>12s} {'vs default':>11s}", flush=True)
    base = None
    for faces, plan in plans.items():
        r = _child(faces, RESIN_RUN, "--engine", str(onnx), "--overwrite", "--device", "cpu",
                   "--quiet", "--faces", faces, str(src), "-o", str(work / f"thin_{faces}.zarr"),
                   quiet=True)
        base = base or r["rate"]
        kept = math.prod(shape) / (plan.n_tiles * math.prod(plan.tile))
        print(f"{faces:8s} {'x'.join(map(str, plan.tile)):>13s} {100 * kept:6.1f}% "
              f"{plan.n_tiles:6d} {r['rate'] / 1e6:9.3f} {r['seconds']:8.1f} "
              f"{r['peak_rss_mb']:12.0f} {r['rate'] / base:10.2f}x", flush=True)


def _blocks(work: Path, run_args: list[str], shape: tuple[int, ...], plan, meta) -> None:
    """(d): memory flat in Y and X, redundant network calls, Dask workers 1 vs 2.

    A fixed tile (the ~48x96x96 core with the model's halo), not the memory-budget one,
    so the volume spans several tiles and blocks and only the volume changes between runs.
    """
    import numpy as np
    from resin.runtime.blocks import make_block_plan
    from resin.runtime.planner import default_tile, plan_tiles

    from resin.io import read_volume, write_volume
    from resin.simulate import simulate

    z, y, x = shape
    tile = default_tile(plan.halo, meta.size_multiple)
    plan = plan_tiles(shape, tile, plan.halo, meta.size_multiple)
    i = run_args.index("--tile")
    run_args = [*run_args[:i], "--tile", *map(str, plan.tile), *run_args[i + 4:]]
    base = simulate(shape=(z, y, x), seed=1).raw
    wide = np.tile(base, (1, 2, 2))  # doubled in Y and X
    inputs = {}
    for name, vol in (("base", base), ("wide", wide)):
        inputs[name] = work / f"{name}.zarr"
        write_volume(inputs[name], vol, overwrite=True)  # Zarr in: no memory-mapped input
    # a block on the tile step (as the default is), at least two per axis where possible
    steps = [ax.step for ax in plan.axes]
    block = ["--block", *(str(s * max(1, (n // 2) // s)) for s, n in zip(steps, (z, y, x),
                                                                          strict=True))]
    d1 = _child(f"(d1) resin-run {z}x{y}x{x}, block {' '.join(block[1:])}", RESIN_RUN,
                *run_args, *block, str(inputs["base"]), "-o", str(work / "d1.zarr"))
    d2 = _child(f"(d2) same, doubled in Y and X ({z}x{2 * y}x{2 * x})", RESIN_RUN, *run_args,
                *block, str(inputs["wide"]), "-o", str(work / "d2.zarr"))
    w1 = _child("(d3) resin-run --workers 1 (Dask, processes)", RESIN_RUN, *run_args, *block,
                "--workers", "1", str(inputs["base"]), "-o", str(work / "w1.zarr"))
    w2 = _child("(d4) resin-run --workers 2", RESIN_RUN, *run_args, *block, "--workers", "2",
                str(inputs["base"]), "-o", str(work / "w2.zarr"))
    same = bool(np.array_equal(read_volume(work / "w1.zarr"), read_volume(work / "w2.zarr"))
                and np.array_equal(read_volume(work / "w1.zarr"), read_volume(work / "d1.zarr")))
    here = make_block_plan(plan)
    brain = make_block_plan(plan_tiles((2000, 20000, 30000), None, meta.halo,
                                       meta.size_multiple))
    print("\nratio                                           value   goal")
    for name, value, goal in (
        ("(d2)/(d1) peak memory: doubled in Y and X", d2["peak_rss_mb"] / d1["peak_rss_mb"],
         "<= 1.1"),
        ("(d4)/(d3) speed: 2 workers vs 1", w2["rate"] / w1["rate"], "(report)"),
        ("(d3)=(d4)=(d1) output identical", float(same), "1"),
        (f"redundant calls, default block {'x'.join(map(str, here.block))}",
         here.redundant_share, "< 0.15"),
        (f"redundant calls, 2000x20000x30000, {brain.n_blocks} blocks",
         brain.redundant_share, "< 0.15"),
    ):
        print(f"{name:46s} {value:7.3f}   {goal}")


def _halos(onnx: Path, src: Path) -> None:
    """(e): what the tolerant halo and the budget tile keep, cost and change."""
    import math
    import time

    import numpy as np
    from resin.runtime import Enhancer
    from resin.runtime.runner import make_plan

    from resin.io import read_volume
    from resin.metadata import default_tile

    vol = read_volume(src).astype(np.float32)  # float32 out: deviations not rounded away
    with Enhancer(onnx, backend="onnxruntime", device="cpu", exact_halo=True,
                  tile=tuple(2 * s + 256 for s in vol.shape)) as whole:
        meta = whole.metadata
        levels = whole.levels(vol)
        t = time.perf_counter()
        reference = whole.enhance(vol, levels)
        one_tile = time.perf_counter() - t
    # --faces zeros rows are compared with one call on the unpadded volume
    with Enhancer(onnx, backend="onnxruntime", device="cpu", exact_halo=True,
                  tile=tuple(2 * s + 256 for s in vol.shape), faces="zeros") as whole:
        references = {"repeat": reference, "zeros": whole.enhance(vol, levels)}
    span = float(reference.max() - reference.min())
    m = meta.size_multiple
    print(f"halo exact {meta.halo}, tolerant {meta.tiling_halo()} at "
          f"{meta.halo_tolerance} of the output range; one tile of the whole volume "
          f"(exact halo): {vol.size / one_tile / 1e6:.3f} Mvoxel/s")
    print(f"\n{'(e) tiles':46s} {'Mvoxel/s':>9s} {'kept %':>7s} {'faces %':>7s} "
          f"{'calls':>6s} {'tile':>12s} {'max dev / range':>16s}")
    rows = [("exact halo, ~48x96x96 core", True, default_tile(meta.halo, m), None, "repeat"),
            ("tolerant halo, ~48x96x96 core", False, default_tile(meta.tiling_halo(), m),
             None, "repeat"),
            ("exact halo, --memory 1", True, None, 1.0, "repeat"),
            ("tolerant halo, --memory 1", False, None, 1.0, "repeat"),
            ("exact halo, default budget", True, None, None, "repeat"),
            ("defaults: tolerant halo, default budget", False, None, None, "repeat"),
            ("--faces zeros, exact halo, --memory 1", True, None, 1.0, "zeros"),
            ("--faces zeros, --memory 1", False, None, 1.0, "zeros"),
            ("--faces zeros, default budget", False, None, None, "zeros")]
    for name, exact, tile, memory, faces in rows:
        with Enhancer(onnx, backend="onnxruntime", device="cpu", exact_halo=exact,
                      tile=tile, memory=memory, faces=faces) as enh:
            plan = make_plan(enh.engine, vol.shape, enh.settings)
            t = time.perf_counter()
            out = enh.enhance(vol, levels)
            dt = time.perf_counter() - t
        kept = math.prod(plan.shape) / (plan.n_tiles * math.prod(plan.tile))
        dev = float(np.abs(out - references[faces]).max()) / span
        print(f"{name:46s} {vol.size / dt / 1e6:9.3f} {100 * kept:7.1f} "
              f"{100 * _outside_share(plan):7.1f} {plan.n_tiles:6d} "
              f"{'x'.join(map(str, plan.tile)):>12s} {dev:16.2e}", flush=True)


#: MONAI's window as the comparison's new user sets it, and its two overlaps
MONAI_ROI = [96, 160, 160]
MONAI_OVERLAPS = (0.25, 0.5)
#: (f7), (f8): faces repeated this many voxels (less than the halo), zero padding beyond
FACE_PADS = (4, 8)
#: above this many padded voxels the one-tile reference does not fit a 24 GiB host
REFERENCE_VOXELS = 20_000_000


def _against_monai(work: Path, onnx: Path, src: Path) -> None:
    """(f): resin at its defaults (and with --memory / --faces zeros) vs MONAI at roi
    96x160x160, overlap 0.25 and 0.5."""
    import math

    import numpy as np
    from resin.runtime import Enhancer

    from resin.io import read_volume

    vol = read_volume(src).astype(np.float32)  # float32 out: deviations not rounded away
    npy = work / "raw_f32.npy"
    np.save(npy, vol)
    with Enhancer(onnx, backend="onnxruntime", device="cpu") as enh:
        levels = enh.levels(vol)
        halo = enh.metadata.halo
    lv = json.dumps(levels.as_attrs())
    padded = math.prod(n + 2 * h for n, h in zip(vol.shape, halo, strict=True))
    # one-tile references: the faces padded by the halo (resin's default) and meeting the
    # network's zero padding (--faces zeros, and what MONAI's inside-only windows see)
    refs: dict[str, np.ndarray] = {}
    if padded <= REFERENCE_VOXELS:
        for faces in ("repeat", "zeros"):
            with Enhancer(onnx, backend="onnxruntime", device="cpu", exact_halo=True,
                          tile=tuple(2 * s + 256 for s in vol.shape), faces=faces) as whole:
                refs[faces] = whole.enhance(vol, levels)
    print(f"(f) {'x'.join(map(str, vol.shape))}, float32 in and out; MONAI roi "
          f"{'x'.join(map(str, MONAI_ROI))}, gaussian; one ONNX Runtime session type for "
          "all; deviations from one-tile inference (exact halo) / its range, inside the "
          f"volume and within {max(halo)} voxels of its faces, against the reference with "
          "faces repeated and with faces zero-padded")
    print(f"\n{'measurement':46s} {'Mvoxel/s':>9s} {'seconds':>8s} {'peak RSS MB':>12s} "
          f"{'calls':>6s} {'repeat: inside':>15s} {'faces':>8s} {'zeros: inside':>14s} "
          f"{'faces':>8s}", flush=True)
    runs = [("(f1) resin Enhancer.enhance, defaults", ENHANCER, ["null"])]
    runs += [(f"(f{i}) MONAI, overlap {o}", MONAI_ORT, [json.dumps(MONAI_ROI), str(o)])
             for i, o in enumerate(MONAI_OVERLAPS, start=2)]
    runs += [("(f4) resin Enhancer.enhance, --memory 0.5", ENHANCER, ["0.5"])]
    runs += [("(f5) resin Enhancer.enhance, --faces zeros", ENHANCER, ["null", "zeros"])]
    runs += [("(f6) resin, --faces zeros --memory 1", ENHANCER, ["1", "zeros"])]
    runs += [(f"(f{i}) resin Enhancer.enhance, --faces {n}", ENHANCER, ["null", str(n)])
             for i, n in enumerate(FACE_PADS, start=7)]
    core = tuple(slice(h, n - h) for h, n in zip(halo, vol.shape, strict=True))
    results = []
    for name, code, extra in runs:
        dst = work / f"f{len(results)}.npy"
        r = _child(name, code, str(onnx), str(npy), str(dst), lv, *extra, quiet=True)
        devs = []
        for faces in ("repeat", "zeros"):
            inside = at_faces = float("nan")
            if faces in refs:
                ref = refs[faces]
                dev = np.abs(np.load(dst) - ref) / float(ref.max() - ref.min())
                if dev[core].size:  # a volume thinner than two halos has no inside
                    inside = float(dev[core].max())
                    dev[core] = 0.0
                at_faces = float(dev.max())
            devs += [inside, at_faces]
        print(f"{name:46s} {r['rate'] / 1e6:9.3f} {r['seconds']:8.1f} "
              f"{r['peak_rss_mb']:12.0f} {r['tiles']:6d} {devs[0]:15.1e} {devs[1]:8.1e} "
              f"{devs[2]:14.1e} {devs[3]:8.1e}", flush=True)
        results.append(r)
    if not refs:
        print(f"(one-tile references skipped: {padded / 1e6:.0f} M padded voxels)")
    resin_, quarter, half, small, zeros, zeros1 = results[:6]
    def kept(r: dict) -> float:  # kept voxels / voxels the network computes
        return r["voxels"] / (r["tiles"] * math.prod(r["tile"]))

    print(f"\nresin tile {'x'.join(map(str, resin_['tile']))} at the defaults (keeps "
          f"{100 * kept(resin_):.1f} % of the voxels it computes), "
          f"{'x'.join(map(str, small['tile']))} with --memory 0.5 ({100 * kept(small):.1f} %), "
          f"{'x'.join(map(str, zeros['tile']))} with --faces zeros ({100 * kept(zeros):.1f} %), "
          f"{'x'.join(map(str, zeros1['tile']))} with --faces zeros --memory 1 "
          f"({100 * kept(zeros1):.1f} %)")
    print("ratio                                           value   goal")
    for name, value, goal in (
        ("(f1)/(f2) speed: resin vs MONAI overlap 0.25", resin_["rate"] / quarter["rate"],
         ">= 1"),
        ("(f1)/(f3) speed: resin vs MONAI overlap 0.5", resin_["rate"] / half["rate"], ">= 2"),
        ("(f1)/(f2) peak memory", resin_["peak_rss_mb"] / quarter["peak_rss_mb"], "<= 0.5"),
        ("(f1)/(f3) peak memory", resin_["peak_rss_mb"] / half["peak_rss_mb"], "<= 0.5"),
        ("(f4)/(f2) speed: resin --memory 0.5 vs MONAI 0.25", small["rate"] / quarter["rate"],
         "(report)"),
        ("(f4)/(f2) peak memory", small["peak_rss_mb"] / quarter["peak_rss_mb"], "<= 0.5"),
        ("(f5)/(f2) speed: resin --faces zeros vs MONAI 0.25",
         zeros["rate"] / quarter["rate"], "(report)"),
        ("(f5)/(f3) speed: resin --faces zeros vs MONAI 0.5",
         zeros["rate"] / half["rate"], "(report)"),
        ("(f5)/(f2) peak memory", zeros["peak_rss_mb"] / quarter["peak_rss_mb"], "<= 0.5"),
        ("(f6)/(f2) speed: zeros, --memory 1 vs MONAI 0.25",
         zeros1["rate"] / quarter["rate"], "(report)"),
        ("(f6)/(f2) peak memory", zeros1["peak_rss_mb"] / quarter["peak_rss_mb"], "<= 0.5"),
        *((f"(f{i})/(f2) speed: --faces {n} vs MONAI 0.25", r["rate"] / quarter["rate"],
           "(report)") for i, (n, r) in enumerate(zip(FACE_PADS, results[6:], strict=True),
                                                  start=7)),
    ):
        print(f"{name:46s} {value:7.2f}   {goal}")


def _outside_share(plan) -> float:
    """Share of the computed voxels that lie outside the volume: the cost of giving the
    faces padded context (MONAI's windows stay inside and compute none of them)."""
    import math

    inside = 1.0
    for axis, n in zip(plan.axes, plan.shape, strict=True):
        covered = sum(min(s + axis.tile, n) - max(s, 0) for s in axis.starts)
        inside *= covered / (len(axis.starts) * axis.tile)
    return 1.0 - inside if math.isfinite(inside) else float("nan")


if __name__ == "__main__":
    main()
