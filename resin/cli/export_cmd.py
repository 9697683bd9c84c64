"""`resin export`: argument parsing only; the work is done by :func:`resin.export.export_model`."""

from __future__ import annotations

import argparse

from resin._cli import int3


def register(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "export", help="export a trained generator to ONNX (and TensorRT / bioimage.io)",
        description="Export the generator F of a `resin train` checkpoint to ONNX with the resin "
                    "metadata record (receptive field and halo measured by impulse response). "
                    "Every export is checked against PyTorch with ONNX Runtime; nothing is "
                    "written if parity fails.")
    p.add_argument("checkpoint", metavar="MODEL.pt", help="checkpoint written by `resin train`")
    p.add_argument("-o", "--output", metavar="MODEL.onnx",
                   help="ONNX file to write (default: MODEL.onnx beside the checkpoint)")
    p.add_argument("--opset", type=int, metavar="N",
                   help="ONNX opset (default 17, or 18 with --exporter dynamo); one the "
                        "exporter cannot write exactly is refused before any work")
    p.add_argument("--fp16", action="store_true",
                   help="float16 weights and I/O (parity limit 1e-2 of the range instead of 1e-4)")
    p.add_argument("--tile", type=int3, nargs=3, metavar=("Z", "Y", "X"),
                   help="tile the engine is tuned for (TensorRT opt shape; the fixed shape with "
                        "--static); default: a ~48x96x96 core plus the halo, the tile resin-run "
                        "feeds the plan unless given --memory")
    p.add_argument("--static", action="store_true",
                   help="fixed input shape --tile instead of dynamic Z/Y/X")
    p.add_argument("--halo-tolerance", type=float, default=None, metavar="F",
                   help="largest change (fraction of the output range) the tolerant halo may "
                        "cause, which resin-run tiles with by default (default 1e-4)")
    p.add_argument("--exporter", choices=("auto", "legacy", "dynamo"), default="auto",
                   help="torch ONNX exporter (auto: legacy, then dynamo if it fails)")
    trt = p.add_argument_group("TensorRT (needs the gpu extra and a CUDA GPU)")
    trt.add_argument("--trt", action="store_true", help="also build a TensorRT engine")
    trt.add_argument("--plan", metavar="PLAN", help="engine file (default: MODEL.plan)")
    trt.add_argument("--min-tile", type=int3, nargs=3, metavar=("Z", "Y", "X"),
                     help="smallest tile the engine accepts (default: the size multiple)")
    trt.add_argument("--max-tile", type=int3, nargs=3, metavar=("Z", "Y", "X"),
                     help="largest tile the engine accepts (default: --tile)")
    trt.add_argument("--workspace", type=float, default=4.0, metavar="GiB",
                     help="builder workspace limit (default 4)")
    trt.add_argument("--timing-cache", metavar="FILE",
                     help="reuse and update this timing cache (faster rebuilds)")
    trt.add_argument("--optimization-level", type=int, default=3, choices=range(6),
                     metavar="0-5",
                     help="builder optimization level (default 3)")
    trt.add_argument("--version-compatible", action="store_true",
                     help="plan that later TensorRT versions of the same major can run; it "
                          "carries TensorRT's lean runtime (host code), so it needs "
                          "--allow-plan-host-code")
    trt.add_argument("--allow-plan-host-code", action="store_true",
                     help="accept host code in the plan (with --version-compatible): whoever "
                          "runs the plan then trusts it like a program, and resin-run needs "
                          "RESIN_ALLOW_PLAN_HOST_CODE=1 to load it")
    trt.add_argument("--hardware-compatible", action="store_true",
                     help="plan that runs on any Ampere or newer GPU (a little slower)")
    p.add_argument("--bioimageio", metavar="DIR",
                   help="also write a bioimage.io model package (rdf.yaml 0.5) into DIR")
    p.add_argument("--author", action="append", metavar="NAME",
                   help="author named in the bioimage.io package (repeatable; default: your "
                        "user name)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.set_defaults(func=_run)
    return p


def _run(args: argparse.Namespace) -> int:
    from resin import _log
    from resin.export import export_model

    result = export_model(
        args.checkpoint, args.output, opset=args.opset, fp16=args.fp16, tile=args.tile,
        static=args.static, exporter=args.exporter, trt=args.trt, plan=args.plan,
        min_tile=args.min_tile, max_tile=args.max_tile, workspace_gib=args.workspace,
        timing_cache=args.timing_cache, optimization_level=args.optimization_level,
        version_compatible=args.version_compatible, hardware_compatible=args.hardware_compatible,
        allow_plan_host_code=args.allow_plan_host_code,
        bioimageio=args.bioimageio, authors=args.author, overwrite=args.overwrite,
        halo_tolerance=args.halo_tolerance)
    meta = result.metadata
    _log.log(f"halo {meta.halo} (tolerant {meta.tiling_halo()}), size multiple {meta.size_multiple}, scale {meta.scale}, "
             f"weights sha256 {meta.weights_sha256[:12]}")
    for path in result.files:
        print(path)
    return 0
