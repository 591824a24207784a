"""`onnx2trt-check`: the command line over the same functions the pytest plugin uses.

Misuse and broken input end with one line on stderr and exit code 4 (as pytest's usage error),
never a traceback.
"""

from __future__ import annotations

import argparse
import sys

from .errors import USAGE_ERROR_EXIT_CODE, CheckError


class _Parser(argparse.ArgumentParser):
    """argparse exits with 2 on misuse; this project's usage error is 4 everywhere."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(USAGE_ERROR_EXIT_CODE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="onnx2trt-check", description="Verify the ONNX -> TensorRT deployment path.")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="run every check on a model (pytest --model MODEL ...)")
    check.add_argument("model", nargs="+", help="ONNX model(s) or folders")
    check.set_defaults(handler=_run_check)
    ops = commands.add_parser("ops", help="list nodes TensorRT's ONNX parser cannot take")
    ops.add_argument("model")
    ops.set_defaults(handler=_run_ops)
    return parser


def _run_check(args: argparse.Namespace, extra: list[str]) -> int:
    import pytest  # only this command needs pytest's machinery

    model_args = [f"--model={m}" for m in args.model]
    return int(pytest.main([*model_args, "-p", "no:cacheprovider", *extra]))


def _run_ops(args: argparse.Namespace, extra: list[str]) -> int:
    from . import trt_ops
    from .model import load_model

    _no_extra(extra)
    findings = trt_ops.unsupported_nodes(load_model(args.model).proto, include_notes=True)
    print(f"{len(findings)} finding(s) against {trt_ops.load_op_table().citation}")
    for f in findings:
        print(f"{f.severity:<6} {f.node_name} ({f.domain or 'ai.onnx'}::{f.op_type}): {f.reason}")
    return 1 if any(f.severity == "error" for f in findings) else 0


def _no_extra(extra: list[str]) -> None:
    if extra:
        raise CheckError(f"unrecognized arguments: {' '.join(extra)}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    try:
        return args.handler(args, extra)
    except CheckError as exc:
        print(f"onnx2trt-check: error: {exc}", file=sys.stderr)
        return USAGE_ERROR_EXIT_CODE


if __name__ == "__main__":
    sys.exit(main())
