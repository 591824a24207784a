"""`onnx2trt-check quantize IN.onnx -o OUT.onnx --calibration-data calib.npz`: post-training int8
quantization by TensorRT's Q/DQ placement rules; writes the QDQ model, prints the quantizer's report
and the int8 model's SQNR and top-1 agreement against fp32 (both run by ONNX Runtime on the CPU).

Exit codes: 0 written, 4 misuse (bad options or data, an existing output without --force).
"""

from __future__ import annotations

import argparse

from .common import input_shapes, no_extra

METHODS = ("entropy", "max", "percentile", "mse")


def register(subparsers) -> None:
    parser = subparsers.add_parser("quantize", help="int8 post-training quantization to a QDQ model TensorRT builds as it is")
    parser.add_argument("model", help="float ONNX model (never modified)")
    parser.add_argument("-o", "--output", required=True, help="where to write the QDQ model")
    parser.add_argument("--calibration-data", required=True, metavar="NPZ|FILE.py[:FUNC]", help="calibration inputs: a .npz (keys are input names, an extra leading axis gives one feed per slice) or a data-loader script")
    parser.add_argument("--method", choices=METHODS, default="entropy", help="activation range method. Defaults to entropy")
    parser.add_argument("--percentile", type=float, default=99.99, help="percentile of |x| for --method percentile. Defaults to 99.99")
    parser.add_argument("--per-tensor", action="store_true", help="weights per tensor instead of per output channel")
    parser.add_argument("--cle", action="store_true", help="cross-layer equalization first")
    parser.add_argument("--cle-relu6", choices=("skip", "swap_to_relu"), default="skip", help="ReLU6 between equalized convs: skip the pair, or swap it to Relu (changes the function). Defaults to skip")
    parser.add_argument("--bias-correction", action="store_true", help="correct the mean output error of quantized weights in the biases")
    parser.add_argument("--exclude", action="append", default=[], metavar="NODE_OR_REGEX", help="node name or regex left in float (repeatable)")
    parser.add_argument("--inputs", metavar="NPZ", help="test inputs for the SQNR / top-1 figures. Defaults to the calibration data")
    parser.add_argument("--input-shape", action="append", default=[], metavar="NAME:1x3x224x224", help="shape for an input with dynamic dims")
    parser.add_argument("--force", action="store_true", help="overwrite OUT.onnx if it exists")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, extra: list[str]) -> int:
    from ..api import quantize

    no_extra(extra)
    result = quantize(args.model, calibration_data=args.calibration_data, output=args.output, force=args.force,
                      calibration_method=args.method, percentile=args.percentile, per_channel=not args.per_tensor, cle=args.cle,
                      cle_relu6=args.cle_relu6, bias_correction=args.bias_correction, exclude=args.exclude,
                      inputs=args.inputs, input_shapes=input_shapes(args))
    print(f"quantize '{args.model}': {result.settings.label}, calibrated on {result.calibration_feeds} feed(s) of '{args.calibration_data}'")
    for line in report_lines(result.build):
        print(line)
    for line in accuracy_lines(result):
        print(line)
    print(f"wrote '{result.written}'")
    return 0


def report_lines(build) -> list[str]:
    """The quantizer's report: what was quantized with which amax, the steps, what was skipped."""
    import numpy as np

    report = build.report
    activations = [t for t in report.tensors if t.kind == "activation"]
    weights = [t for t in report.tensors if t.kind == "weight"]
    lines = [f"quantized {len(activations)} activation(s) ({report.method}) and {len(weights)} weight(s)"]
    lines += [f"  activation {t.name}: amax {t.amax:.4g}" for t in activations]
    for t in weights:
        amax = np.atleast_1d(np.asarray(t.amax, np.float64))
        span = f"amax {amax.min():.4g}..{amax.max():.4g} over {amax.size} channels" if t.axis is not None else f"amax {amax[0]:.4g} per tensor"
        lines.append(f"  weight {t.name}: {span}")
    lines += [f"step {name}: {_step_text(figures)}" for name, figures in build.steps.items()]
    lines += [f"skipped {', '.join(s.nodes)}: {s.reason}" for s in report.skips]
    return lines


def _step_text(figures: dict) -> str:
    return ", ".join(f"{k} {len(v) if isinstance(v, list) else v}" for k, v in figures.items())


def accuracy_lines(result) -> list[str]:
    """Per output: SQNR, cosine and (class scores) top-1 agreement of int8 against fp32."""
    lines = [f"int8 vs fp32 on {result.test_feeds} feed(s) of {result.test_source} (both on ONNX Runtime CPU):"]
    for name, figures in result.accuracy.items():
        agreement = f", top-1 agreement {figures['top1']:.1%}" if figures["top1"] is not None else ""
        lines.append(f"  {name}: SQNR {figures['sqnr_db']:.1f} dB, cosine {figures['cosine']:.5f}{agreement}")
    return lines
