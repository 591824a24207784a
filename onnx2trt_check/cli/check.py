"""`onnx2trt-check check MODEL... [pytest options]`: the same as `pytest --model MODEL ...`, `--lf`
included (pytest's cache is kept in the user's cache folder: pytest_plugin/workspace.py)."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser("check", help="run every check on a model (pytest --model MODEL ...); other options go to pytest")
    parser.add_argument("model", nargs="+", help="ONNX model(s) or folders")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, extra: list[str]) -> int:
    import pytest  # only this command needs pytest's machinery

    model_args = [f"--model={m}" for m in args.model]
    return int(pytest.main([*model_args, *extra]))
