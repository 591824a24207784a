"""What several commands share: input-data options and their feeds, stray arguments."""

from __future__ import annotations

import argparse

from ..errors import CheckError


def add_input_options(parser: argparse.ArgumentParser) -> None:
    """--inputs, --input-shape, --seed, --num-feeds: the same meaning as in `pytest --model`."""
    parser.add_argument("--inputs", metavar="NPZ", help="inputs to verify on (keys are input names). Defaults to generated inputs")
    parser.add_argument("--input-shape", action="append", default=[], metavar="NAME:1x3x224x224", help="shape for an input with dynamic dims")
    parser.add_argument("--seed", type=int, default=0, help="seed of generated inputs. Defaults to 0")
    parser.add_argument("--num-feeds", type=int, default=4, help="number of generated feeds. Defaults to 4")


def input_shapes(args: argparse.Namespace) -> dict[str, tuple[int, ...]]:
    """--input-shape NAME:1x3x224x224 (repeatable) as {name: shape}."""
    from ..model import parse_shape
    from ..validate import once_per_name

    return once_per_name(args.input_shape, parse_shape, "--input-shape")


def input_kwargs(args: argparse.Namespace) -> dict:
    """The input options as keyword arguments of the public API."""
    return {"inputs": args.inputs, "input_shapes": input_shapes(args), "seed": args.seed, "num_feeds": args.num_feeds}


def feeds_from_args(proto, args: argparse.Namespace):
    """The feeds the input options describe, and a label saying where they came from."""
    from ..api import input_feeds

    return input_feeds(proto, **input_kwargs(args))


def no_extra(extra: list[str]) -> None:
    if extra:
        raise CheckError(f"unrecognized arguments: {' '.join(extra)}")
