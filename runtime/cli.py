"""`resin-run`: argument parsing only; the work is done by :mod:`resin.runtime`."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resin._cli import add_choice_flags, int3, main_with, make_parser

if TYPE_CHECKING:
    from resin.runtime import Enhancer
    from resin.runtime.runner import RunReport


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser("resin-run", "Stream a volume through a RESIN model (TIFF, Zarr or "
                         "OME-Zarr in and out; HDF5, Imaris and folders of TIFF planes in).")
    parser.add_argument("input", metavar="INPUT",
                        help="volume to enhance (.tif/.tiff, .zarr/.ome.zarr, .h5/.ims "
                             "(FILE.h5/DATASET for one of several), or a folder or glob "
                             "pattern of 2-D TIFF planes)")
    parser.add_argument("-o", "--output", metavar="OUTPUT", default=None,
                        help="output volume (.tif/.tiff/.zarr/.ome.zarr; default "
                             "<input stem>_resin.ome.zarr beside the input)")
    parser.add_argument("--engine", metavar="MODEL", default=None, action="append",
                        help="model: .onnx, TensorRT .plan or .pt checkpoint (default: the "
                             "bundled model); with --channel all, give it once per channel "
                             "(in channel order) to run each channel with its own model")
    parser.add_argument("--tile", nargs=3, type=int3, metavar=("Z", "Y", "X"), default=None,
                        help="tile size in input voxels including the halo (default: the "
                             "tile keeping the most of what it computes within --memory)")
    parser.add_argument("--memory", type=float, default=None, metavar="GiB",
                        help="memory the tiles and block buffers may use: RAM on the CPU "
                             "(default: a quarter of the available memory), GPU memory on a "
                             "GPU (default: half of the free device memory)")
    parser.add_argument("--exact-halo", action="store_true",
                        help="give tiles the model's exact receptive field as halo instead "
                             "of its tolerant halo (the smallest whose cut changes the output "
                             "by at most the tolerance recorded at export)")
    parser.add_argument("--faces", default="repeat", metavar="repeat|zeros|N",
                        help="the volume's faces: 'repeat' pads each face by the halo, "
                             "repeating the face plane (default); 'zeros' lets them meet the "
                             "network's own zero padding, as a training patch's edges do, and "
                             "computes nothing outside the volume (faster on small volumes); "
                             "N repeats the face plane N voxels (at most the halo), zero "
                             "padding beyond")
    parser.add_argument("--overlap", type=int, default=None, metavar="N",
                        help="extra overlap (voxels) blended between tiles, on top of the "
                             "model's halo (default 0)")
    parser.add_argument("--block", nargs=3, type=int3, metavar=("Z", "Y", "X"), default=None,
                        help="output block, the unit of work, memory and --resume (output "
                             "voxels, rounded up to whole chunks; default about 96x768x768)")
    parser.add_argument("--shard", nargs=3, type=int3, metavar=("Z", "Y", "X"), default=None,
                        help="Zarr v3 shards of this many output voxels (whole chunks), so a "
                             "big output is not millions of files")
    parser.add_argument("--levels", type=int, default=1, metavar="N",
                        help="OME-Zarr output: write a multiscale pyramid of N levels (2x, 4x, "
                             "... means), block by block as the run goes (default 1)")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="run blocks on a local Dask cluster of N processes (one per GPU "
                             "with dask-cuda); needs resin[cluster] and a Zarr output")
    parser.add_argument("--scheduler", metavar="ADDRESS", default=None,
                        help="run blocks on an existing Dask cluster (e.g. tcp://head:8786; "
                             "SLURM: see docs/cluster.md)")
    parser.add_argument("--backend", default="auto",
                        choices=("auto", "tensorrt", "onnxruntime", "torch"),
                        help="inference backend (default auto: the one the model file and "
                             "the device allow, logged with why)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--allow-plan-host-code", action="store_true",
                        help="let a TensorRT plan built with --allow-plan-host-code run the "
                             "code it embeds: trust the plan like an executable")
    parser.add_argument("--blend", default="gaussian", choices=("gaussian", "cosine", "constant"),
                        help="tile blending window (default gaussian)")
    parser.add_argument("--host-blend", action="store_true",
                        help="blend tiles and finalize blocks on the CPU even when the engine "
                             "(TensorRT, ONNX Runtime on CUDA) could keep them on the GPU")
    parser.add_argument("--mip", metavar="DIR", default=None,
                        help="also write the output's three MIPs (TIFF) and a raw-vs-enhanced "
                             "PNG into DIR")
    parser.add_argument("--psf-frame", metavar="OUT", default=None,
                        help="for a model of an oblique PSF (resin train --angle): after the "
                             "run, also write the output resampled into the PSF-aligned frame "
                             "(z along the PSF axis; trilinear, block by block) to OUT (TIFF "
                             "or Zarr)")
    parser.add_argument("--report", action="store_true",
                        help="after the run, measure the anisotropy per axis pair of the input "
                             "and the output from their spectra (no ground truth) and, when D "
                             "lies beside the model (MODEL.degrader.onnx) or in the .pt, the "
                             "consistency |D(F(y)) - y|; write OUTPUT.report.json (and "
                             "OUTPUT.report.png, the residual's map)")
    add_choice_flags(parser, "enhance", "(required for one; the default output becomes "
                                        "INPUT_tT_cN_resin.ome.zarr)",
                     every_time="every time point, the model loaded once, into one Zarr "
                                "output with a time axis, or one output each when -o holds "
                                "{t} where the time point goes (--resume keeps the time "
                                "points finished before a stop)",
                     every_channel="every channel, as --time all does time points ({c} "
                                   "in -o for one output each)")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run (same bytes as an uninterrupted one)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.set_defaults(func=_run, _prog="resin-run")
    return parser


def _run(args: argparse.Namespace) -> int:
    from resin.errors import ChannelsError, TimePointsError, VolumeError

    try:
        return _enhance(args)
    except (TimePointsError, ChannelsError) as exc:  # resin-run can also take them all
        flag = "--time" if isinstance(exc, TimePointsError) else "--channel"
        raise VolumeError(f"{exc}, or every one with {flag} all") from None


def _enhance(args: argparse.Namespace) -> int:
    from resin.runtime import Enhancer

    from resin.errors import UsageError

    series = "all" in (args.time, args.channel)
    if args.psf_frame is not None and series:
        raise UsageError("--psf-frame takes one volume; with --time all / --channel all run "
                         "it per time point or channel")
    engines = _engines(args)
    if len(engines) > 1 and args.channel != "all":
        raise UsageError(f"--engine given {len(engines)} times: one model per channel needs "
                         "--channel all; give one --engine to enhance one channel")
    if args.report:
        if args.output is None:
            raise UsageError("--report needs -o OUTPUT (the report is written beside it)")
        if not series:
            _check_report_files(args.output, args.overwrite or args.resume)
        _check_report_size(args.input, 0 if args.channel == "all" else args.channel,
                           0 if args.time == "all" else args.time)
    if args.workers is not None and args.scheduler is not None:
        raise UsageError("--workers starts a local cluster, --scheduler uses an existing one; "
                         "pass one")
    client = None
    if args.workers is not None or args.scheduler is not None:
        from resin.runtime.distributed import make_client

        from resin.io import output_format

        if args.output is not None and output_format(args.output) != "zarr":
            raise UsageError(f"{args.output}: a distributed run writes .zarr/.ome.zarr; a TIFF "
                             "is one file that processes on several machines cannot safely "
                             "write into")
        client = make_client(args.workers, args.scheduler, args.device)
    try:
        with contextlib.ExitStack() as stack:
            models = [stack.enter_context(Enhancer(
                engine, backend=args.backend, device=args.device,
                tile=tuple(args.tile) if args.tile else None, overlap=args.overlap,
                blend=args.blend, block=args.block, shards=args.shard, pyramid=args.levels,
                allow_plan_host_code=args.allow_plan_host_code, exact_halo=args.exact_halo,
                memory=args.memory, device_blend=not args.host_blend, faces=args.faces))
                for engine in engines]
            if series:
                return _run_series(args, models, client)
            enh = models[0]
            model = (enh.model_path, enh.metadata.weights_sha256)
            replace_frame = _check_psf_frame(args, enh)
            angle = enh.metadata.axial_angle_deg
            report = enh.run(args.input, args.output, mip=args.mip, resume=args.resume,
                             overwrite=args.overwrite, client=client, channel=args.channel,
                             time=args.time)
    finally:
        if client is not None:
            cluster = getattr(client, "cluster", None)
            client.close()
            if cluster is not None and args.scheduler is None:
                cluster.close()
    _log_written(report)
    if args.psf_frame is not None:
        from resin.runtime.psf_frame import psf_frame

        from resin import _log

        shape = psf_frame(report.output, args.psf_frame, angle, overwrite=replace_frame)
        _log.log(f"wrote {args.psf_frame} {'x'.join(map(str, shape))} (the PSF-aligned frame, "
                 f"z along the PSF axis, {angle:g} deg from the output's z)")
    if args.report:
        _write_report(args.input, report.output, model, (report.levels.low, report.levels.high),
                      args.channel, args.time)
    return 0


def _check_psf_frame(args: argparse.Namespace, enh: Enhancer) -> bool:
    """``--psf-frame`` checked before the run; whether it replaces an earlier frame."""
    if args.psf_frame is None:
        return False
    from resin.runtime.psf_frame import check_frame_output
    from resin.runtime.runner import default_output

    from resin.errors import UsageError

    if not enh.metadata.axial_angle_deg:
        raise UsageError(f"--psf-frame: {enh.model_path} was trained for a PSF along z (no "
                         "--angle), so the output's own z is its PSF axis; leave it out")
    output = args.output or default_output(args.input, args.channel, args.time)
    return check_frame_output(args.psf_frame, [args.input, output], args.overwrite,
                              args.resume)


def _engines(args: argparse.Namespace) -> list[str | None]:
    """The ``--engine`` models (None: the bundled one); one holding ``{c}`` is one per
    channel with the channel in its place (``resin train --channel all``'s models)."""
    from resin.runtime.series import CHANNEL_FIELD, choice_counts

    from resin.errors import UsageError

    given: list[str | None] = list(args.engine or [None])
    if not any(e is not None and CHANNEL_FIELD in e for e in given):
        return given
    pattern = next(str(e) for e in given if e is not None and CHANNEL_FIELD in e)
    if len(given) > 1 or args.channel != "all":
        raise UsageError(f"--engine {pattern}: a model name holding {CHANNEL_FIELD} is one "
                         "model per channel; pass it alone, with --channel all")
    _, channels = choice_counts(args.input, "all", args.time)
    return [pattern.replace(CHANNEL_FIELD, str(c)) for c in range(channels)]


def _log_written(report: RunReport) -> None:
    from resin import _log

    _log.log(f"wrote {report.output} {'x'.join(map(str, report.out_shape))} in "
             f"{report.seconds:.1f} s ({report.voxels_per_second / 1e6:.2f} Mvoxel/s, "
             f"{_log.count(report.tiles, 'tile')} of {'x'.join(map(str, report.tile))}, "
             f"{_log.count(report.blocks, 'block')} of {'x'.join(map(str, report.block))})")
    for path in report.mips:
        _log.log(f"wrote {path}")


def _run_series(args: argparse.Namespace, models: list[Enhancer], client: Any) -> int:
    """``--time all`` / ``--channel all`` (:mod:`resin.runtime.series`), with one model or
    one per channel, each part with its report when ``--report`` asks (named as the part's
    own output would be, measured with the part's model); all checked before the first is
    written."""
    from resin.runtime.series import SeriesItem, model_for, plan_series, run_series

    from resin import _log

    def model(channel: int | None) -> tuple[Path, str]:
        enh = model_for(models, channel)
        return enh.model_path, enh.metadata.weights_sha256

    plan = plan_series(models, args.input, args.output, resume=args.resume,
                       overwrite=args.overwrite, mip=args.mip, channel=args.channel,
                       time=args.time)
    if args.report:  # every report's files, before any part runs
        for item in plan.items:
            _check_report_files(item.name, args.overwrite or item.action != "run")

    def done(item: SeriesItem, report: RunReport | None) -> None:
        if report is None:
            return
        if plan.combined:
            _log.log(f"{item.label}: {report.seconds:.1f} s "
                     f"({report.voxels_per_second / 1e6:.2f} Mvoxel/s)")
        else:
            _log_written(report)
        if args.report:
            _write_report(args.input, report.output, model(item.channel),
                          (report.levels.low, report.levels.high), item.channel, item.time,
                          name=item.name)

    reports = run_series(models, args.input, args.output, mip=args.mip, resume=args.resume,
                         overwrite=args.overwrite, client=client, channel=args.channel,
                         time=args.time, on_output=done, plan=plan)
    if reports:
        seconds = sum(r.seconds for r in reports)
        _log.log(f"enhanced {_log.count(len(reports), 'volume')} in {seconds:.1f} s")
    return 0


def _check_report_files(output: str, replace: bool) -> None:
    """``OUTPUT.report.json`` / ``.png`` of a run that is to write them: refused when one
    exists, unless ``replace`` (--overwrite, or a resumed run's own)."""
    from resin.errors import OutputExistsError
    from resin.report import report_path

    rpath = report_path(output)
    for path in (rpath, rpath.with_suffix(".png")):
        if (path.exists() or path.is_symlink()) and not replace:
            raise OutputExistsError(f"{path} exists; pass --overwrite to replace it")


def _check_report_size(input: str, channel: int | None, time: int | None) -> None:
    """Refuse ``--report`` before the run when the input is too thin to measure, rather
    than fail after the output is written."""
    from resin.errors import UsageError
    from resin.io import open_volume
    from resin.metrics import MIN_FOURIER_SIDE

    with open_volume(input, channel, time) as src:
        shape = tuple(src.shape)
    if min(shape) < MIN_FOURIER_SIDE:
        raise UsageError(f"--report measures anisotropy on at least {MIN_FOURIER_SIDE} voxels "
                         f"per axis; {input} is {shape}: run without --report")


def _write_report(input: str, output: str, model: tuple[Path, str],
                  levels: tuple[float, float], channel: int | None = None,
                  time: int | None = None, name: str | None = None) -> None:
    """The spectral report, and the consistency residual with its map when the model has
    D (:mod:`resin.consistency`); a problem with D is a warning, never a failed run.
    ``name``: what the report files are named after (default ``output``)."""
    from resin import _log
    from resin.consistency import consistency_on_readers, open_degrader
    from resin.io import open_volume
    from resin.report import (
        report_on_readers,
        report_path,
        residual_stats,
        sample_regions,
        write_report,
    )

    with open_volume(input, channel, time) as src, open_volume(output) as dst:  # once for both
        rep = report_on_readers(src, dst)
        found, cons = None, None
        try:
            found = open_degrader(*model)
            if not isinstance(found, str):
                regions = sample_regions(src.shape, dst.shape)
                cons = consistency_on_readers(src, dst, found, *levels, *regions)
                mean, p99 = residual_stats(cons.raw, cons.degraded)
                rep = rep.with_consistency(mean, p99, cons.record(found.source, found.halo))
        except Exception as exc:  # noqa: BLE001 - a report must never fail a finished run
            found = f"warning: consistency not measured ({type(exc).__name__}: {exc})"
            cons = None
    named = output if name is None else name
    if cons is None:
        paths = [rep.save(report_path(named))]
    else:  # OUTPUT.report.json and OUTPUT.report.png
        stem = str(report_path(named)).removesuffix(".report.json")
        paths = write_report(stem, rep, cons.raw, cons.degraded, cons.enhanced)
    for line in rep.lines():
        _log.log(line)
    if isinstance(found, str):
        _log.log(found)
    for path in paths:
        _log.log(f"wrote {path}")


def main(argv: Sequence[str] | None = None) -> int:
    return main_with(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
