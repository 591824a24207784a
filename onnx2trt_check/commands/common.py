"""What several commands share: input-data options, the output-path rule, stray arguments."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import CheckError, ConfigError
from ..fileio import refuse_overwrite


def add_input_options(parser: argparse.ArgumentParser) -> None:
    """--inputs, --input-shape, --seed, --num-feeds: the same meaning as in `pytest --model`."""
    parser.add_argument("--inputs", metavar="NPZ", help="inputs to verify on (keys are input names). Defaults to generated inputs")
    parser.add_argument("--input-shape", action="append", default=[], metavar="NAME:1x3x224x224", help="shape for an input with dynamic dims")
    parser.add_argument("--seed", type=int, default=0, help="seed of generated inputs. Defaults to 0")
    parser.add_argument("--num-feeds", type=int, default=4, help="number of generated feeds. Defaults to 4")


def feeds_from_args(proto, args: argparse.Namespace):
    """The feeds the input options describe, and a label saying where they came from."""
    from ..data import FeedOptions, make_feeds
    from ..model import parse_shape, resolve_input_specs

    if args.num_feeds < 1:
        raise ConfigError(f"--num-feeds {args.num_feeds} must be at least 1")
    specs = resolve_input_specs(proto, dict(parse_shape(text) for text in args.input_shape))
    options = FeedOptions(seed=args.seed, num_feeds=args.num_feeds, npz=Path(args.inputs) if args.inputs else None)
    return make_feeds(specs, options), options.source


def checked_output(model: str, output: str, *, force: bool) -> Path:
    """The output path, refused when it is the input model or exists without --force."""
    path = Path(output)
    if path.resolve() == Path(model).resolve():
        raise ConfigError(f"-o '{output}' is the input model; write the result to another path")
    refuse_overwrite(path, force=force)
    return path


def no_extra(extra: list[str]) -> None:
    if extra:
        raise CheckError(f"unrecognized arguments: {' '.join(extra)}")
