"""`resin train`: argument parsing only; the work is done by :func:`resin.train.train`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from resin._cli import CHANNEL_FIELD, add_choice_flags
from resin.config import PRESETS
from resin.errors import UsageError


def register(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "train", help="train RESIN on a raw anisotropic volume (self-supervised)",
        description="Train the RESIN generator F on one raw volume (no ground truth). Writes "
                    "MODEL.pt (the generator: last step, or best-validated with keep=best), "
                    "MODEL.last.pt (state for "
                    "--resume), MODEL.json (config), MODEL.losses.csv and MODEL.previews/.")
    p.add_argument("raw", metavar="RAW", help="raw volume (.tif/.tiff, .zarr or .h5/.ims), ZYX")
    p.add_argument("-o", "--output", required=True, metavar="MODEL.pt", help="model to write")
    p.add_argument("--preset", choices=tuple(PRESETS), default="default",
                   help="quick: small, 6-9 min on 2 CPU cores; long: the quick recipe, 22-30 min "
                        "on a CPU; default: paper-size, for a GPU")
    p.add_argument("--config", metavar="FILE",
                   help="JSON file of TrainConfig fields merged over the preset")
    p.add_argument("--steps", type=int, metavar="N", help="training steps")
    p.add_argument("--angle", type=float, metavar="DEG",
                   help="PSF long axis tilted DEG degrees from z towards x")
    p.add_argument("--z-step", type=int, metavar="K",
                   help="raw z spacing in lateral voxels; the model upsamples z by K")
    p.add_argument("--patch", type=int, nargs=3, metavar=("Z", "Y", "X"),
                   help="training patch size (multiples of 4; default: the preset's, "
                        "shrunk to a cube shorter than a thinner volume)")
    add_choice_flags(p, "train on", "(required for one; recorded in MODEL.json)",
                     every_time="one model from patches of every time point (at most 16, "
                                "spread evenly over the series)",
                     every_channel="one model per channel, one after the other, named by -o "
                                   "with {c} where the channel goes (e.g. -o m_c{c}.pt)")
    p.add_argument("--seed", type=int, metavar="N", help="random seed")
    p.add_argument("--retries", type=_count, default=0, metavar="N",
                   help="when the end-of-training report warns of a run that another seed may "
                        "fix (structure lost, restored little), train again with the next "
                        "seed, at most N times (default 0); each run has the preset's time cap")
    p.add_argument("--keep", choices=("last", "sound", "best"), default=None,
                   help="which generator MODEL.pt gets: the last step's (the presets'), "
                        "sound: the last step's unless the end-of-training report warns of a "
                        "run another seed may fix, then the last validated one it did not "
                        "warn on; best: the best validation score")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument("--resume", action="store_true",
                   help="continue from MODEL.last.pt (same options; --steps may grow; not with "
                        "--overwrite)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier run's MODEL.* files (never files it did not write)")
    p.add_argument("--no-previews", action="store_true", help="do not write PNG previews")
    p.set_defaults(func=_run)
    return p


def _run(args: argparse.Namespace) -> int:
    from resin.errors import ChannelsError, TimePointsError, VolumeError

    try:
        return _train(args)
    except TimePointsError as exc:  # training can also take them all
        raise VolumeError(f"{exc}, or train on every one with --time all") from None
    except ChannelsError as exc:
        raise VolumeError(f"{exc}, or train one model per channel with --channel all and "
                          f"{CHANNEL_FIELD} in -o") from None


def _train(args: argparse.Namespace) -> int:
    overrides: dict = {}
    if args.config:
        path = Path(args.config)
        try:
            overrides = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UsageError(f"{path}: not a readable JSON config ({exc})") from exc
    if args.channel == "all" or CHANNEL_FIELD in args.output:
        return _train_channels(args, overrides)
    return _train_one(args, overrides, args.channel, args.output, args.resume)


def _train_one(args: argparse.Namespace, overrides: dict, channel: int | None, output: str,
               resume: bool, overwrite: bool | None = None) -> int:
    """One model (``--retries`` more runs while its report warns); ``overwrite``: replace
    this run's own earlier files (default: ``--overwrite``)."""
    from resin.train.config_io import build_config, fit_patch_to_volume

    flags = {"steps": args.steps, "angle_deg": args.angle, "seed": args.seed,
             "z_step": args.z_step, "patch_size": tuple(args.patch) if args.patch else None,
             "channel": channel, "time": args.time, "keep": args.keep}
    config = build_config(args.preset, overrides, flags)
    if args.patch is None:
        config = fit_patch_to_volume(args.raw, config, overrides)
    from resin.train import Interrupted, train_retrying

    try:
        train_retrying(args.raw, output, config, args.retries, resume=resume,
                       overwrite=args.overwrite if overwrite is None else overwrite,
                       device=args.device,
                       previews=not args.no_previews)
    except Interrupted as exc:  # says what training saved (not resin-run's resume hint)
        print(f"{args._prog}: interrupted: {exc}", file=sys.stderr)
        return 130
    return 0


def _train_channels(args: argparse.Namespace, overrides: dict) -> int:
    """``--channel all``: one model per channel, one after the other, each an ordinary run
    into ``-o`` with the channel in place of ``{c}``. Every model's files are checked before
    the first run; ``--resume`` continues the models that have a training state (a finished
    one only redoes its report) and trains the others from the start, replacing what a model
    stopped before its first checkpoint left (its own files only: others are refused)."""
    from resin import _log
    from resin.runtime.series import choice_counts
    from resin.train.outputs import Paths, check_outputs
    from resin.train.trainer import D_TERMS, G_TERMS

    if args.channel != "all":
        raise UsageError(f"-o {args.output}: holds {CHANNEL_FIELD} but --channel is not 'all'; "
                         "remove it or pass --channel all")
    if CHANNEL_FIELD not in args.output:
        raise UsageError(f"--channel all trains one model per channel: put {CHANNEL_FIELD} in "
                         "-o where the channel goes (e.g. -o model_c{c}.pt)")
    _, count = choice_counts(args.raw, "all", args.time)
    outputs = [args.output.replace(CHANNEL_FIELD, str(c)) for c in range(count)]
    resumed = [args.resume and Paths(Path(out)).state.is_file() for out in outputs]
    if args.resume and not any(resumed):
        raise UsageError(f"--resume: no model of {args.output} has a training state to "
                         "continue; run without --resume")
    # all, before the first runs; under --resume a model without a state starts over
    replace = [args.overwrite or (args.resume and not r) for r in resumed]
    for out, resume, again in zip(outputs, resumed, replace, strict=True):
        check_outputs(Paths(Path(out)), (*G_TERMS, *D_TERMS), overwrite=again, resume=resume)
    for c, (out, resume, again) in enumerate(zip(outputs, resumed, replace, strict=True)):
        _log.log(f"channel {c} ({c + 1} of {count}) -> {out}"
                 + (" (resumed)" if resume else ""))
        code = _train_one(args, overrides, c if count > 1 else None, out, resume, again)
        if code:
            return code
    _log.log(f"trained {_log.count(count, 'model')}, one per channel; run them with "
             f"{run_command(args.raw, args.time, args.output)}")
    return 0


def run_command(raw: str, time: int | str | None, pattern: str) -> str:
    """The ``resin-run`` command that runs each channel of ``raw`` with its model
    (``pattern``: ``-o`` of ``resin train --channel all``), quoted for a shell."""
    import shlex

    run = ["resin-run", raw]
    if time is not None:
        run += ["--time", str(time)]
    return shlex.join([*run, "--channel", "all", "--engine", pattern])


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a count (0, 1, ...), got {text!r}")
    return value
