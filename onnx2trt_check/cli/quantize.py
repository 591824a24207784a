"""`onnx2trt-check quantize IN.onnx -o OUT.onnx --calibration-data calib.npz`: post-training int8
quantization by TensorRT's Q/DQ placement rules, verified before it is written: the int8 model is
measured against the float one (both on ONNX Runtime's CPU) on --inputs, or else on a held-out fifth
of the calibration data, under the int8 floor of `pytest --model`'s ort-int8 item run in the same
folder (the int8 profile, the project's pyproject.toml and pytest ini, then --min-sqnr and the
other floor options); below it nothing is written, the worst tensors are named and the `bisect`
command that explains them is printed.

Exit codes: 0 written (or, with --accept-degraded, written below the floor with a warning), 1 below
the int8 floor (nothing written), 4 misuse (bad options or data, an existing output without --force).
"""

from __future__ import annotations

import argparse

from .common import input_shapes, no_extra

# Written out rather than imported (the quantizer is heavy for --help); tests/test_plugin_options.py
# holds them equal to quant.quantize.CALIBRATION_METHODS.
CALIBRATION_METHODS = ("auto", "max", "percentile", "entropy", "mse")


def register(subparsers) -> None:
    parser = subparsers.add_parser("quantize", help="int8 post-training quantization to a QDQ model TensorRT builds as it is, verified before it is written")
    parser.add_argument("model", help="float ONNX model (never modified)")
    parser.add_argument("-o", "--output", required=True, help="where to write the QDQ model")
    parser.add_argument("--calibration-data", required=True, metavar="NPZ|FILE.py[:FUNC]", help="calibration inputs: a .npz (keys are input names, an extra leading axis gives one feed per slice) or a data-loader script")
    parser.add_argument("--calibration-method", "--method", dest="calibration_method", choices=CALIBRATION_METHODS, default="auto",
                        help="activation range method (--method is an alias); auto picks per tensor the best of the others by output SQNR on held-out calibration feeds. Defaults to auto")
    parser.add_argument("--percentile", type=float, default=99.99, help="percentile of |x| for the percentile method (also one of auto's candidates). Defaults to 99.99")
    parser.add_argument("--per-tensor", action="store_true", help="weights per tensor instead of per output channel")
    parser.add_argument("--cle", action="store_true", help="cross-layer equalization first")
    parser.add_argument("--cle-relu6", choices=("skip", "swap_to_relu"), default="skip", help="ReLU6 between equalized convs: skip the pair, or swap it to Relu (changes the function). Defaults to skip")
    parser.add_argument("--bias-correction", action="store_true", help="correct each layer's mean output error in its bias, layer by layer, kept only where it lowers the layer's error on held-out feeds")
    parser.add_argument("--exclude", action="append", default=[], metavar="NODE_OR_REGEX", help="node name or regex left in float (repeatable); an unnamed node is OpType(first output)")
    parser.add_argument("--inputs", metavar="NPZ", help="test inputs the result is verified on. Defaults to a held-out fifth of the calibration data")
    parser.add_argument("--input-shape", action="append", default=[], metavar="NAME:1x3x224x224", help="shape for an input with dynamic dims")
    parser.add_argument("--labels", metavar="FILE.npy", help="ground truth, one label per --inputs row: auto calibration then maximizes the task figure on --inputs (top-1, or --metric's first figure), ties by output SQNR")
    parser.add_argument("--metric", metavar="FILE.py[:FUNC]", help="task metric func(outputs, labels) -> {name: figure}, higher is better; its first figure is the objective. Defaults to top-1/top-5 with --labels")
    parser.add_argument("--accept-degraded", action="store_true", help="write the result even when it is below the int8 floor")
    _add_floor_options(parser)
    parser.add_argument("--force", action="store_true", help="overwrite OUT.onnx if it exists")
    parser.set_defaults(handler=run)


def _add_floor_options(parser) -> None:
    """The int8 floor's overrides, named and meaning as in `pytest --model`; both read the project's
    pyproject.toml ([tool.onnx2trt_check]) and pytest ini first."""
    parser.add_argument("--atol", type=float, help="absolute tolerance per element. Defaults to none for int8 (the project's setting if it has one)")
    parser.add_argument("--rtol", type=float, help="relative tolerance per element. Defaults to none for int8 (the project's setting if it has one)")
    parser.add_argument("--min-cosine", type=float, help="floor on cosine similarity per output. Defaults to 0.99 for int8 (the project's setting if it has one)")
    parser.add_argument("--min-sqnr", type=float, dest="min_sqnr_db", help="floor on SQNR in dB per output. Defaults to 20 for int8 (the project's setting if it has one)")
    parser.add_argument("--output-tolerance", action="append", default=[], metavar="OUT:key=value,...", help="floor of one output, e.g. logits:min_sqnr_db=25")


def run(args: argparse.Namespace, extra: list[str]) -> int:
    from ..api import quantize

    no_extra(extra)
    result = quantize(args.model, calibration_data=args.calibration_data, output=args.output, force=args.force,
                      calibration_method=args.calibration_method, percentile=args.percentile, per_channel=not args.per_tensor, cle=args.cle,
                      cle_relu6=args.cle_relu6, bias_correction=args.bias_correction, exclude=args.exclude,
                      inputs=args.inputs, input_shapes=input_shapes(args), accept_degraded=args.accept_degraded,
                      atol=args.atol, rtol=args.rtol, min_cosine=args.min_cosine, min_sqnr_db=args.min_sqnr_db, output_tolerances=args.output_tolerance,
                      labels=args.labels, metric=args.metric)
    print(f"quantize '{args.model}': {result.settings.label}, calibrated on {result.calibration_feeds} feed(s) of '{args.calibration_data}'")
    for line in [f"note: {note}" for note in result.notes] + report_lines(result.build) + accuracy_lines(result) + verdict_lines(result, args.output):
        print(line)
    return 0 if result.written is not None else 1


def report_lines(build) -> list[str]:
    """The quantizer's report: what was quantized with which amax (and, for auto, which method and
    the output SQNR each candidate gave), the steps, what was skipped."""
    import numpy as np

    report = build.report
    activations = [t for t in report.tensors if t.kind == "activation"]
    weights = [t for t in report.tensors if t.kind == "weight"]
    lines = [f"quantized {len(activations)} activation(s) ({report.method}) and {len(weights)} weight(s)"]
    if report.selection:
        lines.append(_selection_text(report.selection))
    lines += [f"  activation {t.name}: amax {t.amax:.4g}{_method_text(report, t.name)}" for t in activations]
    for t in weights:
        amax = np.atleast_1d(np.asarray(t.amax, np.float64))
        span = f"amax {amax.min():.4g}..{amax.max():.4g} over {amax.size} channels" if t.axis is not None else f"amax {amax[0]:.4g} per tensor"
        lines.append(f"  weight {t.name}: {span}")
    lines += [f"step {name}: {_step_text(figures)}" for name, figures in build.steps.items()]
    lines += [f"  {line}" for line in build.steps.get("bias_correction", {}).get("kept", []) + build.steps.get("bias_correction", {}).get("skipped", [])]
    lines += [f"skipped {', '.join(s.nodes)}: {s.reason}" for s in report.skips]
    return lines


def _selection_text(selection: dict) -> str:
    if selection.get("on_selection_feeds"):
        where = f"the {selection['selection_feeds']} labelled --inputs feed(s)"
    else:
        where = f"{selection['selection_feeds']} held-out calibration feed(s)" if selection["held_out"] else "the calibration feed(s) they fit (one distinct feed: nothing to hold out)"
    task = selection.get("on_selection_feeds", False)
    unit, digits = ("", ".4g") if task else (" dB", ".1f")
    uniform = ", ".join(f"{m} {score:{digits}}" for m, score in selection["uniform_scores"].items())
    return (f"auto: ranges from {selection['fit_feeds']} feed(s), chosen on {where} by {selection.get('objective', 'output SQNR')}; "
            f"every tensor alike: {uniform}{unit}; per tensor, starting from {selection['start']}: {selection['final_score']:{digits}}{unit} "
            f"({selection['evaluations']} evaluations){_budget_text(selection)}")


def _budget_text(selection: dict) -> str:
    """How much of the per-tensor pass's budget was spent, and how many tensors it left untried."""
    if "trial_budget" not in selection:
        return ""
    untried = len(selection["tensors_untried"])
    text = f"; trials cost {selection['trial_cost']:g} of a budget of {selection['trial_budget']:g} full evaluations"
    if untried:
        text += f"; {untried} of {selection['tensors']} tensor(s) not tried (their trials did not fit in what was left) keep {selection['start']}"
    return text


def _method_text(report, tensor: str) -> str:
    method = report.methods.get(tensor)
    if not method or report.method != "auto":
        return ""
    if tensor in (report.selection or {}).get("tensors_untried", ()):
        return f" by {method} (not tried: the trial budget was spent)"
    task = (report.selection or {}).get("on_selection_feeds", False)
    digits, what, unit = (".4g", "task figure", "") if task else (".1f", "output SQNR", " dB")
    others = ", ".join(f"{m} {s:{digits}}" for m, s in report.scores.get(tensor, {}).items() if m != method)
    return f" by {method}" + (f" ({what} with: {method} {report.scores[tensor][method]:{digits}}, {others}{unit})" if others else "")


def _step_text(figures: dict) -> str:
    return ", ".join(f"{k} {len(v) if isinstance(v, list) else v}" for k, v in figures.items())


def accuracy_lines(result) -> list[str]:
    """Per output: SQNR, cosine and (class scores) top-1 agreement of int8 against fp32."""
    if not result.accuracy:  # the int8 model did not run: verdict_lines says why
        return []
    # ORT's fused int8 kernels saturate on CPUs without VNNI (runtime.create_session): a user who
    # runs q.onnx on ORT with default options there sees less than this line, so it says which it is
    lines = [f"int8 vs fp32 on {result.test_feeds} feed(s) of {result.test_source} (both on ONNX Runtime CPU, "
             "the Q/DQ run as written, not fused into ORT's int8 kernels):"]
    if result.one_feed:
        from ..liveness import ONE_FEED_NOTE

        lines.append(f"  note: {ONE_FEED_NOTE}")
    for name, figures in result.accuracy.items():
        agreement = f", top-1 agreement {figures['top1']:.1%} of {figures['rows']} row(s)" if figures["top1"] is not None else ""
        agreement += f" ({figures['near_ties']} near-tie row(s) not counted)" if figures.get("near_ties") else ""
        verdict = "" if figures["passed"] else "  BELOW the int8 floor"
        floor = result.verdict.floor_text(name)
        if figures.get("discrete"):  # labels, indices: judged by the share of equal elements alone
            lines.append(f"  {name}: agreement {figures['top1']:.1%} of {figures['rows']} element(s) (floor: {floor}){verdict}")
            continue
        lines.append(f"  {name}: SQNR {figures['sqnr_db']:.1f} dB, cosine {figures['cosine']:.5f}{agreement} (floor: {floor}){verdict}")
    task = result.verdict.task
    if task is not None:
        from ..task_metrics import figures_text

        lines.append(f"  task figures ({task['metric']}): int8 {figures_text(task['int8'], task['reference'])}")
    return lines


def verdict_lines(result, output: str) -> list[str]:
    """Written, or refused with the failures, the worst tensors and the bisect command."""
    if result.passed:
        return [f"wrote '{result.written}'"]
    if not result.accuracy:
        lines = [*result.verdict.failures]
        if result.written is not None:
            return lines + [f"WARNING: wrote '{result.written}' unverified (--accept-degraded)"]
        return lines + [f"nothing written to '{output}'; pass --accept-degraded to write it unverified"]
    lines = ["the int8 model is below the int8 floor (the ort-int8 check of `pytest --model` would fail it):"]
    lines += [f"  {line}" for failure in result.verdict.failures for line in failure.splitlines()]
    lines.append("worst tensors (layerwise, int8 vs fp32):")
    lines += [f"  {row.tensor} at {', '.join(row.nodes) or '(graph input)'}: SQNR {row.sqnr_db:.1f} dB" for row in result.verdict.worst]
    lines.append(f"explain it: {result.bisect_command}")
    if result.written is not None:
        return lines + [f"WARNING: wrote '{result.written}' below the int8 floor (--accept-degraded)"]
    return lines + [f"nothing written to '{output}'; pass --accept-degraded to write it anyway, or --exclude the nodes above"]
