"""`onnx2trt-check ops MODEL`: the nodes TensorRT cannot take (exit 1 when any), from the real
parser of the installed TensorRT flavour, else from the op table."""

from __future__ import annotations

import argparse

from .common import no_extra


def register(subparsers) -> None:
    parser = subparsers.add_parser("ops", help="list nodes TensorRT's ONNX parser cannot take (the real parser when TensorRT is installed)")
    parser.add_argument("model")
    parser.add_argument("--trt-flavour", choices=("auto", "tensorrt", "tensorrt-rtx"),
                        help="which TensorRT answers when both are installed (or set ONNX2TRT_CHECK_TRT). Defaults to auto: TensorRT, else TensorRT-RTX")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, extra: list[str]) -> int:
    from ..model import load_model
    from ..trt.ops_check import check_ops

    no_extra(extra)
    report = check_ops(args.model, load_model(args.model).proto, choice=args.trt_flavour)
    print(f"{len(report.errors)} node(s) rejected, {len(report.notes)} note(s), according to {report.source}")
    for line in report.errors:
        print(f"error  {line}")
    for line in report.notes:
        print(f"note   {line}")
    return 1 if report.errors else 0
