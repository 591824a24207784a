"""`onnx2trt-check bisect MODEL --target NAME`: where a target's accuracy loss comes from.

Three modes (bisection.modes), each on the ONNX artifact the target deploys (built as `pytest
--model` builds it):
  (default)      the accuracy verdict of the target, then the layerwise report of its artifact
                 against the reference model (bisect.layerwise); --plot writes the HTML plot.
  --sensitivity  the smallest set of nodes to keep in fp32 so the output SQNR meets --min-sqnr
                 (bisect.sensitivity.search_fallback), printed as --fp16-block / --exclude flags.
  --reduce       a minimal failing subgraph with its inputs, saved as DIR/model.onnx + inputs.npz.

Exit codes: 0 nothing failing found or the report printed, 1 the comparison fails the tolerance
(or the fallback search cannot meet the floor), 4 misuse.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import input_shapes, no_extra

# Written out rather than imported: the library modules that define them are heavy, and `--help`
# should not pay for them (tests/test_cli.py holds them equal to bisection.modes.LOWERINGS).
LOWERINGS = ("fp16_emulation", "fp16_converter", "int8_quantizer")
CALIBRATION_METHODS = ("auto", "max", "percentile", "entropy", "mse")
DEFAULT_MAX_FEEDS = 4


def register(subparsers) -> None:
    parser = subparsers.add_parser("bisect", help="find the layer, the fallback set or the subgraph behind a target's accuracy loss")
    parser.add_argument("model", help="ONNX model (never modified)")
    parser.add_argument("--target", required=True, help="an ONNX Runtime target: ort, ort-fp16, cpu-fp16-emu, ort-int8")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--sensitivity", action="store_true", help="search the nodes to keep in fp32 (fp16 and int8 targets)")
    mode.add_argument("--reduce", action="store_true", help="save a minimal failing subgraph and its inputs into -o DIR")
    _add_input_options(parser)
    _add_int8_options(parser)
    parser.add_argument("--fp16-block", action="append", default=[], metavar="NODE", help="node kept in fp32 by the fp16 artifact and lowerings (repeatable); an unnamed node is OpType(first output)")
    parser.add_argument("--fp16-no-fallback", action="store_true", help="build the fp16 artifact without the data-driven fallback and the sensitive-op list, as TensorRT 10's fp16 builder flag keeps no layer in fp32: its overflows show on the CPU")
    parser.add_argument("--lowering", choices=LOWERINGS, help="how --sensitivity and --reduce lower a model. Defaults to fp16_emulation for fp16 targets, int8_quantizer for int8")
    parser.add_argument("--min-sqnr", type=float, metavar="DB", help="SQNR floor: per tensor for the layerwise report (Defaults to 20), on the outputs for --sensitivity and --reduce (Defaults to 30)")
    parser.add_argument("--atol", type=float, help="absolute tolerance of the accuracy verdict. Defaults to the target's precision profile")
    parser.add_argument("--rtol", type=float, help="relative tolerance of the accuracy verdict. Defaults to the target's precision profile")
    parser.add_argument("--max-feeds", type=int, default=DEFAULT_MAX_FEEDS, metavar="N", help=f"feeds the layerwise comparison, search and reduction use (the first N). Defaults to {DEFAULT_MAX_FEEDS}")
    parser.add_argument("--labels", metavar="FILE.npy", help="--sensitivity: ground truth, one label per --inputs row; the search then scores the task figure (top-1, or --metric's first figure), ties by output SQNR")
    parser.add_argument("--metric", metavar="FILE.py[:FUNC]", help="--sensitivity: task metric func(outputs, labels) -> {name: figure}, higher is better; its first figure is scored")
    parser.add_argument("--max-metric-drop", type=float, metavar="D", help="--sensitivity with --labels/--metric: the floor is the float model's figure less D. Defaults to 0")
    parser.add_argument("--rank", action="store_true", help="--sensitivity: rank nodes first (2 model runs per node) before minimizing")
    parser.add_argument("--plot", metavar="HTML", help="write the layerwise plot here")
    parser.add_argument("--json", metavar="PATH", help="write the result as JSON here")
    parser.add_argument("-o", "--output", metavar="DIR", help="--reduce: folder for model.onnx and inputs.npz")
    parser.add_argument("--force", action="store_true", help="overwrite existing output files")
    parser.set_defaults(handler=run)


def _add_int8_options(parser) -> None:
    """The int8 artifact's options, named and meaning as in `pytest --model` and `quantize`."""
    parser.add_argument("--calibration-data", metavar="NPZ|FILE.py[:FUNC]", help="int8 calibration inputs (ort-int8 on a float model)")
    parser.add_argument("--calibration-method", choices=CALIBRATION_METHODS, help="int8 activation range method. Defaults to auto")
    parser.add_argument("--percentile", type=float, help="percentile of |x| for the percentile method. Defaults to 99.99")
    parser.add_argument("--per-tensor", action="store_true", help="int8 weights per tensor instead of per output channel")
    parser.add_argument("--cle", action="store_true", help="cross-layer equalization before int8 quantization")
    parser.add_argument("--cle-relu6", choices=("skip", "swap_to_relu"), help="ReLU6 between equalized convs: skip the pair, or swap it to Relu. Defaults to skip")
    parser.add_argument("--bias-correction", action="store_true", help="int8 bias correction, kept per layer only where it lowers the held-out error")
    parser.add_argument("--exclude", action="append", default=[], metavar="NODE_OR_REGEX", help="node left in float by int8 quantization (repeatable); an unnamed node is OpType(first output)")


def _add_input_options(parser) -> None:
    parser.add_argument("--inputs", metavar="NPZ", help="input data: keys are input names; an extra leading axis gives one feed per slice")
    parser.add_argument("--input-shape", action="append", default=[], metavar="NAME:1x3x224x224", help="shape for an input with dynamic dims")
    parser.add_argument("--input-range", action="append", default=[], metavar="[NAME:]LOW,HIGH", help="value range of generated inputs. Defaults to 0,1 (0,255 for a uint8 input)")
    parser.add_argument("--seed", type=int, default=0, help="seed of generated inputs. Defaults to 0")
    parser.add_argument("--num-feeds", type=int, default=4, help="number of generated feeds. Defaults to 4")


def run(args: argparse.Namespace, extra: list[str]) -> int:
    from ..bisection.options import input_files, refuse_existing
    from ..fileio import checked_output, renamed_together

    no_extra(extra)
    mode = "sensitivity" if args.sensitivity else "reduce" if args.reduce else "layerwise"
    if args.json:
        checked_output(args.model, args.json, force=args.force, option="--json")
    # here, on the final paths: the library sees the plot's hidden staged path only
    refuse_existing(args.model, args.plot, args.output, force=args.force, json=args.json,
                    inputs=input_files(args.inputs, args.calibration_data, args.labels, args.metric))
    outputs = [Path(p) for p in (args.plot, args.json) if p]
    with renamed_together(outputs) as staged:  # the plot and the JSON are one result: both or neither
        plot = staged[Path(args.plot)] if args.plot else None
        outcome = _bisect(args, mode, plot)
        if args.json:
            _write_json(staged[Path(args.json)], outcome.document)
    for line in outcome.lines:
        print(line.replace(str(plot), args.plot) if plot else line)
    if args.json:
        print(f"wrote '{args.json}'")
    return 1 if outcome.failed else 0


def _bisect(args: argparse.Namespace, mode: str, plot: Path | None):
    from ..api import bisect
    from ..data import parse_range
    from ..validate import once_per_name

    return bisect(
        args.model, target=args.target, mode=mode, inputs=args.inputs, input_shapes=input_shapes(args),
        input_ranges=once_per_name(args.input_range, parse_range, "--input-range"), seed=args.seed, num_feeds=args.num_feeds,
        calibration_data=args.calibration_data, calibration_method=args.calibration_method, percentile=args.percentile,
        per_channel=not args.per_tensor, cle=args.cle, cle_relu6=args.cle_relu6, bias_correction=args.bias_correction,
        fp16_block=args.fp16_block, fp16_no_fallback=args.fp16_no_fallback, exclude=args.exclude, lowering=args.lowering, min_sqnr_db=args.min_sqnr, atol=args.atol, rtol=args.rtol,
        max_feeds=args.max_feeds, rank=args.rank, plot=plot, output_dir=args.output, force=args.force,
        labels=args.labels, metric=args.metric, max_metric_drop=args.max_metric_drop,
    )


def _write_json(path: str, document: dict) -> None:
    from ..fileio import atomic_write_text
    from ..report import json_safe

    atomic_write_text(path, json.dumps(json_safe(document), indent=2, allow_nan=False, default=str) + "\n")
