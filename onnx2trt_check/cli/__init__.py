"""The subcommands of `onnx2trt-check`, in the order `--help` lists them: one explicit registry.

A command module provides `register(subparsers)`, which adds its parser and sets
`handler(args, extra) -> int` with `set_defaults(handler=...)`. Handlers raise CheckError subclasses
for misuse; cli.main turns them into one line and exit code 4.
"""

from . import bisect, check, ops, optimize, qdq, quantize

COMMANDS = (check, ops, optimize, quantize, bisect, qdq)
