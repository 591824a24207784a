"""`onnx2trt-check`: the command line over the same functions the pytest plugin uses.

Misuse and broken input end with one line on stderr and exit code 4 (as pytest's usage error),
never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from ..deferred_imports import defer_sympy
from ..errors import USAGE_ERROR_EXIT_CODE, CheckError
from ..leftovers import Terminated, quiet_onnxruntime, stop_on_sigterm
from . import COMMANDS


class _Parser(argparse.ArgumentParser):
    """argparse exits with 2 on misuse; this project's usage error is 4 everywhere."""

    def error(self, message: str):
        """One line (argparse prints the whole usage first: up to 18 lines above the error)."""
        self.exit(USAGE_ERROR_EXIT_CODE, f"{self.prog}: error: {message}; see {self.prog} --help\n")

    def parse_known_args(self, args=None, namespace=None):
        if args is not None:
            self._refuse_repeated(list(args))
        return super().parse_known_args(args, namespace)

    def _refuse_repeated(self, args: list[str]) -> None:
        """An option of one value given twice with different values (`--passes simplify --passes
        optimize`): argparse keeps the last and drops the other without a word."""
        single = {flag: action for action in self._actions if type(action) is argparse._StoreAction for flag in action.option_strings}
        given: dict[str, str] = {}
        for index, token in enumerate(args):
            if token == "--":
                break
            flag, equals, value = token.partition("=")
            action = single.get(flag if token.startswith("--") else token)
            if action is None:
                continue
            value = value if equals else (args[index + 1] if index + 1 < len(args) else "")
            if given.setdefault(action.dest, value) != value:
                self.error(f"argument {'/'.join(action.option_strings)}: given twice ({given[action.dest]!r}, then {value!r}); give it once")

    def _get_value(self, action, arg_string):
        """Every value on the command line, refused when empty: `--json "$OUT"` with OUT unset
        would otherwise be dropped, or read as the current folder."""
        if not arg_string.strip() and action.nargs not in (argparse.PARSER, argparse.REMAINDER):  # a command's own words are its parser's
            name = "/".join(action.option_strings) or action.metavar or action.dest
            self.error(f"argument {name}: is empty; pass a value (is a shell variable unset?)")
        return super()._get_value(action, arg_string)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="onnx2trt-check", description="Verify the ONNX -> TensorRT deployment path.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    defer_sympy()  # before a command imports onnx-ir: its sympy is loaded only if used
    quiet_onnxruntime()
    # onnx-ir's shape inference pass logs a 15-line traceback when onnx's inference fails (an output declared
    # [1, 8] that computes [1, 4]) and goes on with the model unchanged: bisect printed it amid its report.
    logging.getLogger("onnx_ir.passes.common.shape_inference").setLevel(logging.ERROR)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    restore = stop_on_sigterm()  # a stopped command removes its temporary files too (leftovers.py)
    try:
        return args.handler(args, extra)
    except CheckError as exc:
        print(f"onnx2trt-check: error: {exc}", file=sys.stderr)
        return USAGE_ERROR_EXIT_CODE
    except KeyboardInterrupt as exc:
        print(f"onnx2trt-check: interrupted ({str(exc) or 'Ctrl-C'}); nothing more was written", file=sys.stderr)
        return 128 + (signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)
    finally:
        restore()


if __name__ == "__main__":
    sys.exit(main())
