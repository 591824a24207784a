"""`onnx2trt-check bisect MODEL --target NAME`: where a target's accuracy loss comes from.

Three modes, each on the ONNX artifact the target deploys (built as `pytest --model` builds it):
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

from ..errors import CheckError, ConfigError

LOWERINGS = {"fp16_emulation": "fp16", "fp16_converter": "fp16", "int8_quantizer": "int8"}
# fp16 targets search and reduce with the emulation: ONNX Runtime's CPU provider computes most fp16
# ops in fp32, so the converted file in ORT would hide the overflows the search is for.
DEFAULT_LOWERING = {"fp16": "fp16_emulation", "int8": "int8_quantizer"}
DEFAULT_SEARCH_SQNR_DB = 30.0
DEFAULT_MAX_FEEDS = 4


def register(subparsers) -> None:
    parser = subparsers.add_parser("bisect", help="find the layer, the fallback set or the subgraph behind a target's accuracy loss")
    parser.add_argument("model", help="ONNX model (never modified)")
    parser.add_argument("--target", required=True, help="an ONNX Runtime target: ort, ort-fp16, cpu-fp16-emu, ort-int8")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--sensitivity", action="store_true", help="search the nodes to keep in fp32 (fp16 and int8 targets)")
    mode.add_argument("--reduce", action="store_true", help="save a minimal failing subgraph and its inputs into -o DIR")
    _add_input_options(parser)
    parser.add_argument("--calibration-data", metavar="NPZ", help="int8 calibration inputs (ort-int8 on a float model)")
    parser.add_argument("--calibration-method", choices=("entropy", "max", "percentile", "mse"), help="int8 activation range method. Defaults to entropy")
    parser.add_argument("--fp16-block", action="append", default=[], metavar="NODE", help="node kept in fp32 by the fp16 artifact and lowerings (repeatable)")
    parser.add_argument("--exclude", action="append", default=[], metavar="NODE_OR_REGEX", help="node left in float by int8 quantization (repeatable)")
    parser.add_argument("--lowering", choices=tuple(LOWERINGS), help="how --sensitivity and --reduce lower a model. Defaults to fp16_emulation for fp16 targets, int8_quantizer for int8")
    parser.add_argument("--min-sqnr", type=float, metavar="DB", help="SQNR floor: per tensor for the layerwise report (Defaults to 20), on the outputs for --sensitivity and --reduce (Defaults to 30)")
    parser.add_argument("--atol", type=float, help="absolute tolerance of the accuracy verdict. Defaults to the target's precision profile")
    parser.add_argument("--rtol", type=float, help="relative tolerance of the accuracy verdict. Defaults to the target's precision profile")
    parser.add_argument("--max-feeds", type=int, default=DEFAULT_MAX_FEEDS, metavar="N", help=f"feeds the layerwise comparison, search and reduction use (the first N). Defaults to {DEFAULT_MAX_FEEDS}")
    parser.add_argument("--rank", action="store_true", help="--sensitivity: rank nodes first (2 model runs per node) before minimizing")
    parser.add_argument("--plot", metavar="HTML", help="write the layerwise plot here")
    parser.add_argument("--json", metavar="PATH", help="write the result as JSON here")
    parser.add_argument("-o", "--output", metavar="DIR", help="--reduce: folder for model.onnx and inputs.npz")
    parser.add_argument("--force", action="store_true", help="overwrite existing output files")
    parser.set_defaults(handler=run)


def _add_input_options(parser) -> None:
    parser.add_argument("--inputs", metavar="NPZ", help="input data: keys are input names; an extra leading axis gives one feed per slice")
    parser.add_argument("--input-shape", action="append", default=[], metavar="NAME:1x3x224x224", help="shape for an input with dynamic dims")
    parser.add_argument("--input-range", action="append", default=[], metavar="[NAME:]LOW,HIGH", help="value range of generated inputs. Defaults to 0,1")
    parser.add_argument("--seed", type=int, default=0, help="seed of generated inputs. Defaults to 0")
    parser.add_argument("--num-feeds", type=int, default=4, help="number of generated feeds. Defaults to 4")


def run_options(args: argparse.Namespace):
    """The RunOptions `pytest --model` would build from the same options (plugin._run_options):
    feeds, shapes, tolerances from the command line, and the precision families' settings the
    targets read from `extra`."""
    from ..config import ToleranceConfig
    from ..context import RunOptions
    from ..data import FeedOptions, parse_range
    from ..model import parse_shape

    if args.num_feeds < 1 or args.max_feeds < 1:
        raise ConfigError(f"--num-feeds {args.num_feeds} and --max-feeds {args.max_feeds} must be at least 1")
    feeds = FeedOptions(seed=args.seed, num_feeds=args.num_feeds, ranges=dict(parse_range(t) for t in args.input_range),
                        npz=Path(args.inputs) if args.inputs else None)
    tolerances = ToleranceConfig()
    tolerances.layer({k: v for k, v in (("atol", args.atol), ("rtol", args.rtol)) if v is not None}, {}, "command line")
    shapes = dict(parse_shape(t) for t in args.input_shape)
    return RunOptions(feeds=feeds, input_shapes=shapes, tolerances=tolerances, targets=(args.target,), extra=_extra(args))


def _extra(args: argparse.Namespace) -> dict:
    """The option dests of precision_checks and quant_checks that targets/fp16.py and
    targets/ort_int8.py read; absent ones take the targets' defaults."""
    calibration = Path(args.calibration_data) if args.calibration_data else None
    if calibration is not None and not calibration.is_file():
        raise ConfigError(f"calibration data file '{calibration}' does not exist; check the --calibration-data path")
    return {"calibration_data": calibration, "calibration_method": args.calibration_method, "quant_exclude": tuple(args.exclude),
            "fp16_block": tuple(args.fp16_block), "fp16_calibration_data": None, "fp16_no_fallback": False}


def run(args: argparse.Namespace, extra: list[str]) -> int:
    from ..context import ModelContext

    if extra:
        raise CheckError(f"unrecognized arguments: {' '.join(extra)}")
    target = _bisectable(args.target)
    _check_outputs(args)
    ctx = ModelContext(Path(args.model), run_options(args))
    if args.sensitivity:
        return _sensitivity(args, ctx, target)
    if args.reduce:
        return _reduce(args, ctx, target)
    return _layerwise(args, ctx, target)


def _bisectable(name: str):
    from ..bisect_checks import TRT_NEEDED
    from ..targets import get_target

    target = get_target(name)
    if not target.engine.startswith("onnxruntime"):
        raise ConfigError(f"target '{name}' runs on {target.engine}: {TRT_NEEDED}; pick ort, ort-fp16, cpu-fp16-emu or ort-int8")
    return target


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse before any work: an existing output without --force, or an option of another mode."""
    from ..fileio import refuse_overwrite

    if args.reduce != (args.output is not None):
        raise ConfigError("--reduce needs -o DIR and -o is only for --reduce; pass both or neither")
    if args.plot and (args.sensitivity or args.reduce):
        raise ConfigError("--plot draws the layerwise report; leave out --sensitivity/--reduce or --plot")
    outputs = [args.plot, args.json] + ([Path(args.output) / "model.onnx", Path(args.output) / "inputs.npz"] if args.reduce else [])
    for path in filter(None, outputs):
        refuse_overwrite(path, force=args.force)


def _write_json(args: argparse.Namespace, document: dict) -> None:
    from ..fileio import atomic_write_text
    from ..report import json_safe

    if args.json:
        atomic_write_text(args.json, json.dumps(json_safe(document), indent=2, allow_nan=False, default=str) + "\n")
        print(f"wrote '{args.json}'")


# ---------------------------------------------------------------- layerwise


def _layerwise(args: argparse.Namespace, ctx, target) -> int:
    from ..bisect.plot import layerwise_plot_html
    from ..bisect_checks import NotBisectable, layerwise_for, section_text

    failures, outputs = _verdict(ctx, target)
    floor = 20.0 if args.min_sqnr is None else args.min_sqnr
    try:
        report, label, artifact = layerwise_for(ctx, target, min_sqnr_db=floor, max_feeds=args.max_feeds)
    except NotBisectable as exc:
        raise ConfigError(str(exc)) from None
    print(section_text(target.name, report, label, outputs_failed=bool(failures)))
    if args.plot:
        layerwise_plot_html(report, args.plot, title=f"Layerwise error: {ctx.path.name} on {target.name}")
        print(f"wrote '{args.plot}'")
    document = {"target": target.name, "engine": target.engine, "reference": label, "artifact": str(artifact),
                "verdict": "failed" if failures else "passed", "outputs": outputs, "layerwise": report.to_dict()}
    _write_json(args, document)
    return 1 if failures else 0


def _verdict(ctx, target) -> tuple[list[str], dict]:
    """The accuracy item's comparison (outputs of the target's run against the target's reference,
    tolerances by the target's precision), printed; the failed outputs and every output's figures."""
    from ..bisect_checks import NotBisectable, artifact_proto
    from ..compare import compare_output, format_stats

    try:
        _, artifact = artifact_proto(ctx, target)
    except NotBisectable as exc:
        raise ConfigError(str(exc)) from None
    reference, outputs = target.reference(ctx), target.run(artifact, ctx.feeds)
    failures, figures = [], {}
    for name in reference.names:
        tolerance = ctx.options.tolerances.for_output(name, target.precision)
        stats = compare_output(name, reference.per_output(name), [o[name] for o in outputs], tolerance)
        figures[name] = stats.figures()
        if not stats.passed:
            failures.append(format_stats(stats, tolerance))
    verdict = f"{len(failures)} of {len(figures)} output(s) beyond tolerance" if failures else "within tolerance"
    print(f"{target.name} ({target.engine}) on {len(ctx.feeds)} feed(s): {verdict}")
    for text in failures:
        print(text)
    return failures, figures


# ---------------------------------------------------------------- sensitivity


def _sensitivity(args: argparse.Namespace, ctx, target) -> int:
    from ..bisect.sensitivity import search_fallback

    lower, lowering = _lowering(args, ctx, target)
    floor = DEFAULT_SEARCH_SQNR_DB if args.min_sqnr is None else args.min_sqnr
    search = search_fallback(ctx.loaded.proto, ctx.feeds[: args.max_feeds], lower, min_sqnr_db=floor, rank=args.rank)
    print(f"{target.name}: fallback search with the {lowering} lowering on {min(len(ctx.feeds), args.max_feeds)} feed(s)")
    if search.lowered_sqnr_db >= floor:
        print(f"fully lowered output SQNR {search.lowered_sqnr_db:.2f} dB meets the {floor} dB floor: nothing to keep in fp32")
    else:
        print(search.format())
        flag = "--fp16-block" if LOWERINGS[lowering] == "fp16" else "--exclude"
        print("flags: " + " ".join(f"{flag} {name}" for name in search.exclude))
    _write_json(args, {"target": target.name, "lowering": lowering, **search.to_dict()})
    return 0 if search.met or search.lowered_sqnr_db >= floor else 1


def _lowering(args: argparse.Namespace, ctx, target):
    """The lowering function for `target` (or --lowering) and its name; misuse when it does not fit."""
    from ..bisect import sensitivity

    if target.precision not in DEFAULT_LOWERING:
        raise ConfigError(f"target '{target.name}' runs in {target.precision}: nothing to keep in fp32; pick an fp16 or int8 target")
    name = args.lowering or DEFAULT_LOWERING[target.precision]
    if LOWERINGS[name] != target.precision:
        raise ConfigError(f"--lowering {name} lowers to {LOWERINGS[name]}, target '{target.name}' runs in {target.precision}; pick a matching lowering")
    if name != "int8_quantizer":
        return getattr(sensitivity, name), name
    return sensitivity.int8_quantizer(_calibration(args, ctx), method=args.calibration_method or "entropy"), name


def _calibration(args: argparse.Namespace, ctx) -> list:
    from ..data import feeds_from_npz
    from ..quant.float_counterpart import has_qdq

    if has_qdq(ctx.loaded.proto):
        raise ConfigError(f"'{args.model}' already holds Q/DQ nodes; search the fallback on its float model")
    if args.calibration_data is None:
        raise ConfigError("the int8_quantizer lowering needs calibration data; pass --calibration-data calib.npz")
    return feeds_from_npz(Path(args.calibration_data), ctx.specs)


# ---------------------------------------------------------------- reduce


def _reduce(args: argparse.Namespace, ctx, target) -> int:
    from ..bisect.reduce import reduce_failing_subgraph

    model, still_fails, how = _reduction(args, ctx, target)
    feeds = ctx.feeds[: args.max_feeds]
    print(f"{target.name}: reducing {how}")
    if not still_fails(model, feeds):
        print("the whole model does not fail: nothing to reduce")
        return 0
    reduced = reduce_failing_subgraph(model, feeds, still_fails)
    model_path, inputs_path = reduced.save(args.output, force=args.force)
    print(f"{len(reduced.nodes)} of {reduced.original_nodes} node(s) still fail ({reduced.checks} checks): {', '.join(reduced.nodes)}")
    print(f"wrote '{model_path}' and '{inputs_path}'")
    _write_json(args, {"target": target.name, "how": how, "nodes": reduced.nodes, "checks": reduced.checks,
                       "original_nodes": reduced.original_nodes, "model": str(model_path), "inputs": str(inputs_path)})
    return 0


def _reduction(args: argparse.Namespace, ctx, target):
    """(model to reduce, predicate, description). A Q/DQ artifact or an fp32 target's own file is
    reduced as it is: a subgraph fails when the target's run of it is below the floor against its
    reference (the float counterpart for Q/DQ). An fp16 target's float model is reduced with the
    lowering: a subgraph fails when its lowered run is below the floor against its fp32 run."""
    from ..bisect_checks import NotBisectable, artifact_proto
    from ..quant.float_counterpart import has_qdq

    floor = DEFAULT_SEARCH_SQNR_DB if args.min_sqnr is None else args.min_sqnr
    if target.precision == "fp16":
        lower, lowering = _lowering(args, ctx, target)
        return ctx.loaded.proto, _lowered_fails(lower, tuple(args.fp16_block), floor), f"the model with the {lowering} lowering, output SQNR floor {floor} dB"
    try:
        artifact, path = artifact_proto(ctx, target)
    except NotBisectable as exc:
        raise ConfigError(str(exc)) from None
    label = "Q/DQ artifact against its float counterpart" if has_qdq(artifact) else "artifact against its unoptimized run"
    return artifact, _target_fails(target, floor), f"the {label} ('{path}'), output SQNR floor {floor} dB"


def _lowered_fails(lower, keep: tuple[str, ...], floor: float):
    from ..bisect.sensitivity import output_sqnr_db
    from ..runtime import run_model

    def still_fails(model, feeds) -> bool:
        return output_sqnr_db(run_model(model, feeds), run_model(lower(model, keep_fp32=keep), feeds)) < floor

    return still_fails


def _target_fails(target, floor: float):
    import tempfile

    from ..bisect.sensitivity import output_sqnr_db
    from ..bisect_checks import reference_model
    from ..fileio import atomic_write_bytes
    from ..runtime import run_model

    def still_fails(model, feeds) -> bool:
        with tempfile.TemporaryDirectory(prefix="onnx2trt_check-reduce-") as folder:
            path = Path(folder) / "subgraph.onnx"  # targets run files, as they run the deployed one
            atomic_write_bytes(path, model.SerializeToString())
            return output_sqnr_db(run_model(reference_model(model)[0], feeds), target.run(path, feeds)) < floor

    return still_fails
