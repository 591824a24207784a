"""`onnx2trt-check quantize IN.onnx -o OUT.onnx --calibration-data calib.npz`: post-training int8
quantization by TensorRT's Q/DQ placement rules; writes the QDQ model, prints the quantizer's report
and the int8 model's SQNR and top-1 agreement against fp32 (both run by ONNX Runtime on the CPU).

Exit codes: 0 written, 4 misuse (bad options or data, an existing output without --force).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..errors import CheckError, ConfigError
from .common import checked_output

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
    from ..data import feeds_from_npz, read_feeds
    from ..fileio import atomic_write_bytes
    from ..model import load_model, parse_shape, resolve_input_specs
    from ..quant.float_counterpart import has_qdq
    from ..targets.ort_int8 import quantize_for_tensorrt

    if extra:
        raise CheckError(f"unrecognized arguments: {' '.join(extra)}")
    settings = _settings(args)
    output = checked_output(args.model, args.output, force=args.force)
    loaded = load_model(args.model)
    if has_qdq(loaded.proto):
        raise ConfigError(f"'{args.model}' already holds Q/DQ nodes; quantize its float model instead")
    specs = resolve_input_specs(loaded.proto, dict(parse_shape(t) for t in args.input_shape))
    calibration = read_feeds(args.calibration_data, specs)
    test, source = _test_feeds(args, specs, calibration, feeds_from_npz)
    print(f"quantize '{args.model}': {settings.label}, calibrated on {len(calibration)} feed(s) of '{args.calibration_data}'")
    build = quantize_for_tensorrt(loaded.proto, calibration, settings)
    atomic_write_bytes(output, build.model.SerializeToString())
    for line in report_lines(build):
        print(line)
    for line in accuracy_lines(loaded.proto, build.model, test, source):
        print(line)
    print(f"wrote '{output}'")
    return 0


def _settings(args: argparse.Namespace):
    import re

    from ..targets.ort_int8 import Int8Settings

    if not 0.0 < args.percentile <= 100.0:
        raise ConfigError(f"--percentile {args.percentile} is outside (0, 100]; pass e.g. 99.99")
    for pattern in args.exclude:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"--exclude '{pattern}' is not a valid regex ({exc}); escape it or pass the exact node name") from None
    return Int8Settings(method=args.method, percentile=args.percentile, per_channel=not args.per_tensor, cle=args.cle,
                        cle_relu6=args.cle_relu6, bias_correction=args.bias_correction, exclude=tuple(args.exclude))


def _test_feeds(args, specs, calibration, feeds_from_npz):
    if args.inputs:
        return feeds_from_npz(Path(args.inputs), specs), f"test inputs '{args.inputs}'"
    return calibration, "the calibration data (no --inputs given: pass test inputs for an unbiased figure)"


def report_lines(build) -> list[str]:
    """The quantizer's report: what was quantized with which amax, the steps, what was skipped."""
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


def accuracy_lines(float_model, int8_model, feeds, source: str) -> list[str]:
    """Per output: SQNR, cosine and (class scores) top-1 agreement of int8 against fp32."""
    from ..compare import cosine_similarity, sqnr_db, top_k_agreement
    from ..runtime import run_model

    reference = run_model(float_model, feeds, optimized=False)
    quantized = run_model(int8_model, feeds, optimized=True)
    lines = [f"int8 vs fp32 on {len(feeds)} feed(s) of {source} (both on ONNX Runtime CPU):"]
    for name in reference[0]:
        ref, got = [r[name] for r in reference], [q[name] for q in quantized]
        flat_ref, flat_got = np.concatenate([r.ravel() for r in ref]), np.concatenate([g.ravel() for g in got])
        top1, _ = top_k_agreement(ref, got)
        agreement = f", top-1 agreement {top1:.1%}" if top1 is not None else ""
        lines.append(f"  {name}: SQNR {sqnr_db(flat_ref, flat_got):.1f} dB, cosine {cosine_similarity(flat_ref, flat_got):.5f}{agreement}")
    return lines
