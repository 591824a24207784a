"""`onnx2trt-check ops MODEL`: the nodes TensorRT's ONNX parser cannot take (exit 1 when any)."""

from __future__ import annotations

import argparse

from .common import no_extra


def register(subparsers) -> None:
    parser = subparsers.add_parser("ops", help="list nodes TensorRT's ONNX parser cannot take")
    parser.add_argument("model")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, extra: list[str]) -> int:
    from .. import trt_ops
    from ..model import load_model

    no_extra(extra)
    findings = trt_ops.unsupported_nodes(load_model(args.model).proto, include_notes=True)
    print(f"{len(findings)} finding(s) against {trt_ops.load_op_table().citation}")
    for f in findings:
        print(f"{f.severity:<6} {f.node_name} ({f.domain or 'ai.onnx'}::{f.op_type}): {f.reason}")
    return 1 if any(f.severity == "error" for f in findings) else 0
