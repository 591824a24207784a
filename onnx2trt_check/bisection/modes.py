"""The three ways to bisect a target's accuracy loss, each on the ONNX artifact the target deploys
(built as `pytest --model` builds it): what `onnx2trt_check.bisect` and the `bisect` command run.

  layerwise    the accuracy verdict of the target, then the layerwise report of its artifact
               against the reference model (bisect.layerwise); optionally the HTML plot.
  sensitivity  the smallest set of nodes to keep in fp32 so the output SQNR meets the floor
               (bisect.sensitivity.search_fallback), as --fp16-block / --exclude flags.
  reduce       a minimal failing subgraph with its inputs, saved as DIR/model.onnx + inputs.npz.

Each returns a BisectOutcome: the lines a person reads, the JSON document, and whether something
fails. Misuse (a target that cannot be bisected here, a lowering that does not fit) is a ConfigError.
"""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path

import numpy as np

from .. import validate
from ..errors import ConfigError, first_line
from ..fileio import save_model
from ..leftovers import temporary_folder
from ..runtime import run_model
from .run import TRT_NEEDED, NotBisectable, artifact_proto, layerwise_for, reference_model, section_text, unoptimized_outputs_fail

MODES = ("layerwise", "sensitivity", "reduce")
LOWERINGS = {"fp16_emulation": "fp16", "fp16_converter": "fp16", "int8_quantizer": "int8"}
# fp16 targets search and reduce with the emulation: ONNX Runtime's CPU provider computes most fp16
# ops in fp32, so the converted file in ORT would hide the overflows the search is for.
DEFAULT_LOWERING = {"fp16": "fp16_emulation", "int8": "int8_quantizer"}
DEFAULT_LAYER_SQNR_DB = 20.0
DEFAULT_SEARCH_SQNR_DB = 30.0


@dataclasses.dataclass
class BisectOutcome:
    """What a bisect found: `lines` to print, `document` for JSON, `failed` when the target fails
    its tolerance (layerwise), the floor cannot be met (sensitivity) or a failing subgraph was
    saved (reduce never fails: finding nothing to reduce is an answer too)."""

    mode: str
    target: str
    lines: list[str]
    document: dict
    failed: bool


def bisectable(name: str):
    """The registered target `name`, refused when it does not run on ONNX Runtime."""
    from ..targets import get_target

    target = get_target(name)
    if not target.engine.startswith("onnxruntime"):
        raise ConfigError(f"target '{name}' runs on {target.engine}: {TRT_NEEDED}; pick ort, ort-fp16, cpu-fp16-emu or ort-int8")
    return target


def refuse_unrunnable(ctx) -> None:
    """Misuse, in one line, when ONNX Runtime cannot run the model (two nodes of one name, an
    unknown op): every mode compares against that run. Raised a traceback from ORT before."""
    from ..errors import CheckError

    try:
        ctx.reference
    except CheckError:
        raise
    except Exception as exc:  # noqa: BLE001 - ORT's own load/run failure, whatever its class
        raise ConfigError(f"ONNX Runtime cannot run '{ctx.path}' ({type(exc).__name__}: {first_line(exc)}); "
                          "bisect compares every tensor against that run: fix the model first (pytest --model names the problem in reference::run)") from None


# ---------------------------------------------------------------- layerwise


def layerwise(ctx, target, *, min_sqnr_db: float | None, max_feeds: int, plot: Path | None = None) -> BisectOutcome:
    """The target's verdict, then its artifact against the reference model tensor by tensor."""
    lines, failures, outputs = verdict(ctx, target)
    floor = DEFAULT_LAYER_SQNR_DB if min_sqnr_db is None else min_sqnr_db
    try:
        report, label, artifact = layerwise_for(ctx, target, min_sqnr_db=floor, max_feeds=max_feeds)
    except NotBisectable as exc:
        raise ConfigError(str(exc)) from None
    unoptimized_failed = (bool(failures) and report.first_divergent is None and target.engine != "tensorrt"
                          and unoptimized_outputs_fail(ctx, target, artifact))  # section_text reads it for ORT targets only
    lines.append(section_text(target.name, report, label, outputs_failed=bool(failures), unoptimized_failed=unoptimized_failed))
    if plot is not None:
        from .plot import layerwise_plot_html

        layerwise_plot_html(report, plot, title=f"Layerwise error: {ctx.path.name} on {target.name}")
        lines.append(f"wrote '{plot}'")
    document = {"target": target.name, "engine": target.engine, "reference": label, "artifact": artifact_text(ctx, artifact),
                "verdict": "failed" if failures else "passed", "outputs": outputs, "layerwise": report.to_dict()}
    return BisectOutcome("layerwise", target.name, lines, document, bool(failures))


def artifact_text(ctx, path: Path) -> str:
    """Where the artifact is: the model's own path, or for a file built for the call (in its
    temporary folder, gone when it returns) its name and that fact, never a path that does not exist."""
    folder = ctx.options.artifact_dir
    if folder is not None and Path(path).resolve().is_relative_to(Path(folder).resolve()):
        return f"{Path(path).name} (built for this bisect in a temporary folder, removed when it ends)"
    return str(path)


def verdict(ctx, target) -> tuple[list[str], list[str], dict]:
    """The accuracy item's comparison (outputs of the target's run against the target's reference,
    tolerances by the target's precision): its lines, the failed outputs and every output's figures."""
    from ..compare import accepts_zero_text, compare_output, format_stats

    try:
        _, artifact = artifact_proto(ctx, target)
    except NotBisectable as exc:
        raise ConfigError(str(exc)) from None
    feeds = target.feeds(ctx)
    reference = target.reference(ctx)
    try:
        outputs = target.run(artifact, feeds)
    except Exception as exc:  # noqa: BLE001 - the engine's own failure (ORT's graph optimizer on a fused BERT's fp16 artifact: measured)
        problem = f"{target.name} cannot run its artifact ({type(exc).__name__}: {first_line(exc)})"
        return [f"{target.name} ({target.engine}) on {len(feeds)} feed(s): {problem}"], [problem], {}
    failures, figures, vacuous = [], {}, []
    profiles = target.output_precisions(ctx)
    for name in reference.names:
        tolerance = ctx.options.tolerances.for_output(name, profiles.get(name, target.tolerance_precision(ctx)))
        stats = compare_output(name, reference.per_output(name), [o[name] for o in outputs], tolerance, ctx.output_layouts.get(name))
        figures[name] = stats.figures()
        vacuous += [name] if stats.accepts_zero else []
        if not stats.passed:
            failures.append(format_stats(stats, tolerance))
    summary = f"{len(failures)} of {len(figures)} output(s) beyond tolerance" if failures else "within tolerance"
    summary += f"; {accepts_zero_text(vacuous)}" if vacuous else ""
    where = target.figures(ctx).get("inputs")
    head = f"{target.name} ({target.engine}) on {len(feeds)} feed(s){f' ({where})' if where else ''}: {summary}"
    return [head, *failures], failures, figures


# ---------------------------------------------------------------- sensitivity


def sensitivity(ctx, target, *, lowering: str | None, calibration,
                min_sqnr_db: float | None, max_feeds: int, rank: bool, task: dict | None = None) -> BisectOutcome:
    """The smallest fp32 fallback set that lifts the lowered model's output SQNR to the floor. For
    an fp16 target the nodes it already keeps (--fp16-block) stay kept in the search, and the set
    found is checked on the real artifact before it is printed (verify_fp16_blocks). With `task`
    ({"labels", "metric", "max_metric_drop"}: a task metric) the ranking and the search score the
    metric's first figure on the first `max_feeds` --inputs feeds (ties by output SQNR), and the
    floor is the float model's figure less max_metric_drop (Defaults to 0)."""
    from .sensitivity import search_fallback

    lower, name = lowering_for(ctx, target, lowering, calibration)
    fp16 = LOWERINGS[name] == "fp16"
    given = tuple(ctx.options.extra.get("fp16_block") or ()) if fp16 else ()
    feeds = target.feeds(ctx)[:max_feeds]
    objective, floor, scored_by = search_objective(ctx, target, task, min_sqnr_db, max_feeds)
    search = search_fallback(ctx.loaded.proto, feeds, _keeping(lower, given), min_sqnr_db=floor, rank=rank, objective=objective)
    lines = [f"{target.name}: fallback search with the {name} lowering on {len(feeds)} feed(s), scored by {scored_by}"
             + (f", keeping {', '.join(given)} as --fp16-block asks" if given else "")]
    document = {"target": target.name, "lowering": name, "objective": scored_by, **search.to_dict()}
    if search.lowered_sqnr_db >= floor:
        lines.append(f"fully lowered {_score(search.lowered_sqnr_db, search.figure)} meets the {_floor(floor, search.figure)}: nothing to keep in fp32")
        return BisectOutcome("sensitivity", target.name, lines, document, False)
    flag = "--fp16-block" if fp16 else "--exclude"
    lines.append(search.format())
    verified = verify_fp16_blocks(ctx, feeds, [*given, *search.exclude], floor, objective) if fp16 and search.met else None
    if verified is not None:
        document["verified"] = verified
        lines.append(_verified_text(verified, floor, search.figure))
    if search.met and (verified is None or verified["met"]):
        lines.append("flags: " + " ".join(f"{flag} {shlex.quote(node)}" for node in search.exclude))
    failed = not search.met or (verified is not None and not verified["met"])
    return BisectOutcome("sensitivity", target.name, lines, document, failed)


def task_options(mode, inputs, labels, metric, max_metric_drop, min_sqnr_db) -> dict | None:
    """The task options of a bisect (None without labels and metric); misuse outside --sensitivity on --inputs."""
    if labels is None and metric is None:
        if max_metric_drop is not None:
            raise ConfigError("--max-metric-drop needs task figures; pass --labels FILE.npy and/or --metric FILE.py[:func]")
        return None
    if mode != "sensitivity" or inputs is None or min_sqnr_db is not None:
        raise ConfigError("--labels/--metric score --sensitivity on the --inputs feeds, with --max-metric-drop as the floor; "
                          "pass --sensitivity and --inputs, without --min-sqnr")
    validate.number(max_metric_drop, "--max-metric-drop", low=0.0, example="0.01")  # inf: a floor of -inf, nothing kept
    return {"labels": labels, "metric": metric, "max_metric_drop": max_metric_drop}


def search_objective(ctx, target, task: dict | None, min_sqnr_db: float | None, max_feeds: int):
    """(objective, floor, what scores): the output SQNR against --min-sqnr (Defaults to 30 dB), or
    with a task metric its first figure against the float model's figure less the allowed drop."""
    from ..quant.objective import output_sqnr_db
    from ..task_metrics import task_objective, unfailable_text

    if not task:  # task_options gives None without labels and metric
        floor = DEFAULT_SEARCH_SQNR_DB if min_sqnr_db is None else min_sqnr_db
        return output_sqnr_db, floor, "the worst output SQNR (dB)"
    _, objective = task_objective(ctx.loaded.proto, labels=task.get("labels"), metric=task.get("metric"), model=ctx.path,
                                  feeds=target.feeds(ctx), count=max_feeds)
    reference = objective.figures(run_model(ctx.loaded.proto, target.feeds(ctx)[:max_feeds]))[objective.figure]
    drop = task.get("max_metric_drop") or 0.0
    # A budget no drop exceeds keeps nothing in fp32 whatever the lowering does: say so (left16).
    vacuous = unfailable_text({objective.figure: reference}, drop, bounded=task.get("metric") is None)
    return objective, reference - drop, f"{objective.describe()} (float model {reference:.4g}, allowed drop {drop:g})" + (f"; {vacuous}" if vacuous else "")


def _score(value: float, figure: str | None) -> str:
    from .sensitivity import score_text

    return score_text(value, figure)


def _floor(floor: float, figure: str | None) -> str:
    return f"{floor} dB floor" if figure is None else f"{figure} >= {floor:.4g} floor"


def _keeping(lower, given: tuple[str, ...]):
    """`lower` with the nodes `given` always kept in fp32 (the user's own --fp16-block)."""
    if not given:
        return lower

    def lower_keeping(model, *, keep_fp32=()):
        return lower(model, keep_fp32={*keep_fp32, *given})

    return lower_keeping


def verify_fp16_blocks(ctx, feeds, blocks: list[str], floor: float, objective=None) -> dict:
    """The fp16 artifact as the target builds it (precision/fp16.py with the run's fallback
    setting) with `blocks` kept in fp32, fp16 storage emulated on it as cpu-fp16-emu runs it, and
    its score against the model on `feeds` by `objective` (Defaults to the output SQNR): whether
    the suggestion really fixes the file."""
    import dataclasses as dc

    from ..quant.objective import output_sqnr_db
    from ..targets.fp16 import Fp16Settings, convert_with_settings, fp16_storage_emulation

    settings = dc.replace(Fp16Settings.from_extra(ctx.options.extra), block_nodes=tuple(dict.fromkeys(blocks)))
    data = ctx.read_feeds(settings.calibration_data) if settings.calibration_data else ctx.feeds
    artifact = convert_with_settings(ctx.loaded.proto, data, settings).model
    with np.errstate(all="ignore"):
        sqnr = (objective or output_sqnr_db)(run_model(ctx.loaded.proto, feeds), run_model(fp16_storage_emulation(ctx.loaded.proto, artifact), feeds))
    return {"blocks": list(settings.block_nodes), "fallback": settings.describe_fallback(), "sqnr_db": float(sqnr), "met": sqnr >= floor}


def _verified_text(verified: dict, floor: float, figure: str | None = None) -> str:
    verdict = f"meets the {_floor(floor, figure)}" if verified["met"] else f"MISSES the {_floor(floor, figure)}: these blocks do not fix the artifact, nothing to suggest"
    return (f"checked on the fp16 artifact with {', '.join(verified['blocks'])} blocked (fallback: {verified['fallback']}), "
            f"fp16 storage emulated as cpu-fp16-emu runs it: {_score(verified['sqnr_db'], figure)}, {verdict}")


def lowering_for(ctx, target, lowering: str | None, calibration):
    """The lowering function for `target` (or `lowering`) and its name; misuse when it does not fit.
    `calibration` is the calibration data source (a .npz or a data-loader script), read by the
    int8_quantizer lowering only."""
    from . import sensitivity as search

    if target.precision not in DEFAULT_LOWERING:
        raise ConfigError(f"target '{target.name}' runs in {target.precision}: nothing to keep in fp32; pick an fp16 or int8 target")
    name = lowering or DEFAULT_LOWERING[target.precision]
    if name not in LOWERINGS:
        raise ConfigError(f"lowering '{name}' is unknown; choose from {', '.join(LOWERINGS)}")
    if LOWERINGS[name] != target.precision:
        raise ConfigError(f"--lowering {name} lowers to {LOWERINGS[name]}, target '{target.name}' runs in {target.precision}; pick a matching lowering")
    if name != "int8_quantizer":
        return getattr(search, name), name
    return _int8_lowering(ctx, calibration), name


def _int8_lowering(ctx, calibration):
    """The int8_quantizer lowering with the run's int8 settings (method, percentile, granularity,
    excluded nodes), calibrated on the feeds the ort-int8 artifact is calibrated on."""
    from ..quant.pipeline import settings_from
    from ..targets.ort_int8 import verification
    from .sensitivity import int8_quantizer

    _calibration_feeds(ctx, calibration)  # refuses a Q/DQ model and missing calibration data
    feeds, settings = verification(ctx).calibration, settings_from(ctx.options.extra)
    return int8_quantizer(feeds, exclude=settings.exclude, method=settings.method, percentile=settings.percentile, per_channel=settings.per_channel)


def _calibration_feeds(ctx, calibration) -> list:
    from ..quant.float_counterpart import has_qdq

    if has_qdq(ctx.loaded.proto):
        raise ConfigError(f"'{ctx.path}' already holds Q/DQ nodes; search the fallback on its float model")
    if calibration is None:
        raise ConfigError("the int8_quantizer lowering needs calibration data; pass --calibration-data calib.npz")
    return ctx.read_feeds(calibration)


# ---------------------------------------------------------------- reduce


def reduce(ctx, target, *, output_dir: Path, force: bool, lowering: str | None, calibration,
           fp16_block: tuple[str, ...], min_sqnr_db: float | None, max_feeds: int) -> BisectOutcome:
    """A minimal subgraph that still fails, saved into `output_dir` with its inputs."""
    from .reduce import reduce_failing_subgraph

    floor = DEFAULT_SEARCH_SQNR_DB if min_sqnr_db is None else min_sqnr_db
    model, still_fails, how = _reduction(ctx, target, floor, lowering, calibration, fp16_block)
    feeds = target.feeds(ctx)[:max_feeds]
    lines = [f"{target.name}: reducing {how}"]
    if not still_fails(model, feeds):
        lines.append("the whole model does not fail: nothing to reduce")
        return BisectOutcome("reduce", target.name, lines, {"target": target.name, "how": how, "nodes": []}, False)
    reduced = reduce_failing_subgraph(model, feeds, still_fails)
    model_path, inputs_path = reduced.save(output_dir, force=force)
    lines.append(f"{len(reduced.nodes)} of {reduced.original_nodes} node(s) still fail ({reduced.checks} checks): {', '.join(reduced.nodes)}")
    lines.append(f"wrote '{model_path}' and '{inputs_path}'")
    document = {"target": target.name, "how": how, "nodes": reduced.nodes, "checks": reduced.checks,
                "original_nodes": reduced.original_nodes, "model": str(model_path), "inputs": str(inputs_path)}
    return BisectOutcome("reduce", target.name, lines, document, False)


def _reduction(ctx, target, floor: float, lowering, calibration, fp16_block):
    """(model to reduce, predicate, description). A Q/DQ artifact or an fp32 target's own file is
    reduced as it is: a subgraph fails when the target's run of it is below the floor against its
    reference (the float counterpart for an int8 target's Q/DQ: run.reference_model). An fp16
    target's float model is reduced with the lowering: a subgraph fails when its lowered run is
    below the floor against its fp32 run."""
    from ..quant.float_counterpart import has_qdq

    if target.precision == "fp16":
        lower, name = lowering_for(ctx, target, lowering, calibration)
        inputs = {value.name for value in ctx.loaded.proto.graph.input}
        return ctx.loaded.proto, _lowered_fails(lower, fp16_block, floor, inputs), f"the model with the {name} lowering, output SQNR floor {floor} dB"
    try:
        artifact, path = artifact_proto(ctx, target)
    except NotBisectable as exc:
        raise ConfigError(str(exc)) from None
    label = "Q/DQ artifact against its float counterpart" if target.precision == "int8" and has_qdq(artifact) else "artifact against its unoptimized run"
    return artifact, _target_fails(target, floor), f"the {label} ('{artifact_text(ctx, path)}'), output SQNR floor {floor} dB"


def _lowered_fails(lower, keep: tuple[str, ...], floor: float, model_inputs: set[str]):
    """A subgraph fails when its lowered run is below the floor, unless a tensor it takes as an
    input (not one of the model's) already holds values beyond the fp16 range: any reader of it
    fails then, and the overflow is its producer's (bart_ts with an overflowing MatMul planted was
    reduced to the LayerNorm three nodes later, fed 1e5)."""
    from ..precision.fp16 import FP16_MAX
    from ..quant.objective import output_sqnr_db

    def out_of_range(feeds) -> bool:
        return any(name not in model_inputs and np.issubdtype(np.asarray(array).dtype, np.floating)
                   and np.any(np.abs(array[np.isfinite(array)]) > FP16_MAX) for feed in feeds for name, array in feed.items())

    def still_fails(model, feeds) -> bool:
        if out_of_range(feeds):
            return False
        return output_sqnr_db(run_model(model, feeds), run_model(lower(model, keep_fp32=keep), feeds)) < floor

    return still_fails


def _target_fails(target, floor: float):
    from ..quant.objective import output_sqnr_db

    def still_fails(model, feeds) -> bool:
        with temporary_folder("onnx2trt_check-reduce-") as folder:
            path = Path(folder) / "subgraph.onnx"  # targets run files, as they run the deployed one
            save_model(model, path)
            return output_sqnr_db(run_model(reference_model(model, target)[0], feeds), target.run(path, feeds)) < floor

    return still_fails
