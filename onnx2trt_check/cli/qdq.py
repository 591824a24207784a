"""`onnx2trt-check qdq check|optimize`: TensorRT's Q/DQ placement rules and the verified Q/DQ
optimizer, for a model that already holds Q/DQ nodes.

  qdq check MODEL                      prints every finding and, where a TensorRT flavour is
                                       installed, its builder's verdict; exit 1 when that builder
                                       rejects the model (without TensorRT: when a rule says error)
  qdq optimize IN -o OUT [--inputs X]  rewrites the Q/DQ flow, each rewrite verified on input data
                                       against its bound, writes OUT atomically (never over an
                                       existing file without --force); exit 0 when written
                                       and free of placement errors, exit 1 when errors that
                                       TensorRT rejects remain (the file is written all the same)
Misuse (missing file, no Q/DQ nodes to optimize, existing OUT) is exit 4.
"""

from __future__ import annotations

import argparse
import os

from ..errors import ConfigError
from .common import add_input_options, feeds_from_args, no_extra


def register(subparsers) -> None:
    parser = subparsers.add_parser("qdq", help="check a QDQ model against TensorRT's Q/DQ placement rules, or optimize its Q/DQ flow")
    commands = parser.add_subparsers(dest="qdq_command", required=True)
    check = commands.add_parser("check", help="list Q/DQ placement errors (TensorRT rejects) and warnings (slower or less accurate)")
    check.add_argument("model", help="ONNX model with Q/DQ nodes")
    check.add_argument("--trt-flavour", choices=("auto", "tensorrt", "tensorrt-rtx"),
                       help="which TensorRT builds the model when both are installed (or set ONNX2TRT_CHECK_TRT). Defaults to auto")
    add_input_options(check)  # sizes dynamic and shape-tensor inputs for the build's optimization profile
    check.set_defaults(handler=run_check)
    optimize = commands.add_parser("optimize", help="rewrite the Q/DQ flow for TensorRT, verify every rewrite, write the result")
    optimize.add_argument("model", help="ONNX model with Q/DQ nodes (never modified)")
    optimize.add_argument("-o", "--output", required=True, help="where to write the optimized model")
    add_input_options(optimize)
    optimize.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    optimize.set_defaults(handler=run_optimize)


def run_check(args: argparse.Namespace, extra: list[str]) -> int:
    from ..model import load_model
    from ..quant.float_counterpart import has_qdq
    from ..quant.qdq_rules import format_findings, validate_qdq

    no_extra(extra)
    proto = load_model(args.model).proto
    if not has_qdq(proto):
        print(f"'{args.model}' holds no Q/DQ nodes: no Q/DQ placement to check")
        return 0
    findings = validate_qdq(proto)
    feeds = _builder_feeds(proto, args)  # a dynamic dim without --input-shape is refused before anything is printed
    print(format_findings(findings))
    rule_errors = any(f.severity == "error" for f in findings)
    verdict = builder_verdict(args.model, args.trt_flavour, lambda: feeds)
    if verdict is None:
        return 1 if rule_errors else 0
    label, builds, message = verdict
    print(f"{label} builder: {'builds the model' if builds else 'rejects the model: ' + message}")
    if builds and rule_errors:
        print(f"note: the rules flag errors that {label} builds; another TensorRT (10/11) may reject them")
    return 0 if builds else 1


def _builder_feeds(proto, args: argparse.Namespace) -> list | None:
    """The feeds that size the build's dynamic inputs, or None where no builder is installed (the
    rules then answer alone, and need none)."""
    from ..trt import flavour

    try:
        flavour.select(args.trt_flavour)
    except flavour.TrtUnavailable:
        return None
    return feeds_from_args(proto, args)[0]


def builder_verdict(model: str, choice: str | None, feeds) -> tuple[str, bool, str] | None:
    """(flavour label, builds, first message) from the installed flavour's builder; None without
    one. `feeds()` gives the feeds that size dynamic inputs (made only when a builder is there)."""
    from ..trt import flavour, isolated
    from ..trt.build import build_engine

    try:
        chosen = flavour.select(choice)
    except flavour.TrtUnavailable as error:
        print(f"no TensorRT builder to ask ({error}); the rules answer alone")
        return None
    try:
        result = isolated.call(build_engine, os.path.abspath(model), chosen, feeds=feeds())
    except isolated.TrtCrashed as error:
        return chosen.label, False, str(error)
    if result.ok or result.needs_gpu:  # a build that needs a GPU gave no verdict: the rules answer
        return (chosen.label, True, "") if result.ok else None
    return chosen.label, False, result.failure().splitlines()[1].strip() if not result.parse.ok else result.errors[0]


def run_optimize(args: argparse.Namespace, extra: list[str]) -> int:
    import onnx_ir as ir

    from ..fileio import checked_output, save_model
    from ..model import load_model
    from ..quant.float_counterpart import has_qdq
    from ..quant.qdq_optimize import optimize_qdq
    from ..quant.qdq_rules import format_findings, validate_qdq
    from ..validate import distinct_outputs

    no_extra(extra)
    output = checked_output(args.model, args.output, force=args.force)
    distinct_outputs([("-o", args.output)], {"--inputs": args.inputs})
    proto = load_model(args.model).proto
    if not has_qdq(proto):
        raise ConfigError(f"'{args.model}' holds no Q/DQ nodes; quantize it first (onnx2trt-check quantize) or pass a QDQ model")
    feeds, source = feeds_from_args(proto, args)
    ir_model = ir.from_proto(proto)  # converted once: validated, then handed to the optimizer
    before = validate_qdq(proto, ir_model=ir_model)
    print(f"optimize Q/DQ of '{args.model}', every rewrite verified on {len(feeds)} feed(s) ({source})")
    result = optimize_qdq(proto, feeds, ir_model=ir_model)
    after = validate_qdq(result.model) if result.modified else before
    for line in rewrite_lines(result.report):
        print(line)
    print(f"findings before optimizing:\n{format_findings(before)}")
    print(f"findings after optimizing:\n{format_findings(after)}")
    save_model(result.model, output, force=args.force)
    print(f"wrote '{output}'" if result.modified else f"no rewrite applies; wrote an unchanged copy to '{output}'")
    remaining = sum(f.severity == "error" for f in after)
    if remaining:  # written (the rewrites hold), but not a file to deploy: a script must not go on to build it
        print(f"error: {remaining} placement error(s) remain that TensorRT rejects (listed above); the file is not deployable")
        return 1
    return 0


def rewrite_lines(report) -> list[str]:
    """Each rewrite with its bound and measured change, the undone ones with why, the output change."""
    lines = [f"{len(report.matches)} rewrite(s):"]
    for name, figure in report.figures.items():
        if isinstance(figure, dict):
            change = "not measured" if figure["max_abs_change"] is None else f"max abs change {figure['max_abs_change']:.3g}"
            lines.append(f"  {name}: {figure['sites']} site(s), {change}, largest bound {figure['max_bound']:.3g}")
    lines += [f"    {', '.join(m.nodes)}: {m.detail}" for m in report.matches]
    lines += [f"  undone at {', '.join(s.nodes)}: {s.reason}" for s in report.skips if " undone: " in s.reason]
    if report.figures.get("model_outputs_max_abs_change") is not None:
        lines.append(f"model outputs: max abs change {report.figures['model_outputs_max_abs_change']:.3g} against the input model")
    return lines


