"""A target's ONNX artifact against its reference model, layer by layer: what the `bisect` command,
the public API and the `--bisect` option of `pytest --model` share.

Both models run with ONNX Runtime's graph optimizations off, so every tensor exists as written; a
failure that only the optimized run shows is named as such. TensorRT engines are compared with every
tensor marked as an engine output (Polygraphy's mark-all) where TensorRT can run them.
"""

from __future__ import annotations

from pathlib import Path

import onnx

from ..context import ModelContext
from ..errors import CheckFailed, CheckSkipped
from ..protos import read_onnx

TRT_NEEDED = (
    "layerwise comparison of TensorRT engines needs TensorRT and a CUDA device (marks every tensor as an engine output); "
    "elsewhere compare the engine's layers with Polygraphy: polygraphy run MODEL --trt --onnxrt --trt-outputs mark all --onnx-outputs mark all"
)
OPTIMIZED_ONLY = (
    "no tensor is beyond the layerwise tolerance with graph optimizations off: the difference comes from "
    "ONNX Runtime's optimized execution of the artifact (graph rewrites, fused kernels), not from its graph"
)

LOOSE_FLOOR = (
    "no tensor is beyond the layerwise SQNR floor, yet the outputs fail the target's tolerance{where}: their error passes the "
    "floor by SQNR but not an element-wise or cosine limit; raise the floor (--min-sqnr, in pytest --bisect-min-sqnr) to rank the tensors by it"
)
OUTPUTS_PASS = (
    "the target's outputs are within tolerance on its own run: the divergence above does not reach them there "
    "(later nodes absorb it, or ONNX Runtime's optimized kernels, which the target runs, do not show it)"
)


class NotBisectable(Exception):
    """Why a target's artifact cannot be compared layer by layer here (a report line, not misuse)."""


def reference_model(proto: onnx.ModelProto, target) -> tuple[onnx.ModelProto, str]:
    """The model `target`'s artifact is compared with, and its label: what the target's own verdict
    compares with. That is the float counterpart of a model with Q/DQ nodes for the int8 targets
    (ort-int8, trt-int8, trt-best: docs, the reference of a QDQ model), and the model as written for
    the others: an fp16 target on a QDQ model was bisected against the counterpart, and blamed the
    quantization error on fp16 (zoo12), while its verdict had compared with the Q/DQ run."""
    from ..quant.float_counterpart import float_counterpart, has_qdq

    if target.precision == "int8" and has_qdq(proto):
        return float_counterpart(proto), "the model's float counterpart (Q/DQ removed, weights dequantized)"
    return proto, "the model"


def artifact_proto(ctx: ModelContext, target) -> tuple[onnx.ModelProto, Path]:
    """The target's ONNX artifact, built as the target builds it; NotBisectable when it cannot be
    built, or for a TensorRT target where TensorRT is missing."""
    if target.engine == "tensorrt" and target.unavailable_reason():
        raise NotBisectable(TRT_NEEDED)
    try:
        path = target.artifact(ctx)
    except (CheckFailed, CheckSkipped) as exc:
        raise NotBisectable(f"the artifact of {target.name} cannot be built: {exc}") from None
    return (ctx.loaded.proto if Path(path) == ctx.path else read_onnx(path, load_external_data=True)), Path(path)


def layerwise_for(ctx: ModelContext, target, *, min_sqnr_db: float, max_feeds: int):
    """(LayerwiseReport, reference label, artifact path) of `target`'s artifact against the reference
    model, over the first `max_feeds` feeds of the context."""
    from .layerwise import layerwise_compare

    artifact, path = artifact_proto(ctx, target)
    reference, label = reference_model(ctx.loaded.proto, target)
    report = layerwise_compare(reference, artifact, target.feeds(ctx)[:max_feeds], tolerance=min_sqnr_db, run_target=_engine_runner(target, path))
    return report, label, path


def unoptimized_outputs_fail(ctx, target, path: Path) -> bool:
    """Whether the artifact's outputs, run by ONNX Runtime with graph optimizations off (as the
    layerwise comparison runs it), fail the target's tolerances on the target's feeds: then a
    layerwise report without a divergent tensor is not ORT's optimized run's doing (measured: an
    If whose output is off by 4 of 300 at 71 dB, cpu-fp16-emu, which runs unoptimized)."""
    from ..compare import compare_output
    from ..runtime import run_model

    reference = target.reference(ctx)
    outputs = run_model(path, target.feeds(ctx))
    precision, profiles = target.tolerance_precision(ctx), target.output_precisions(ctx)
    return any(not compare_output(name, reference.per_output(name), [o[name] for o in outputs],
                                  ctx.options.tolerances.for_output(name, profiles.get(name, precision)), ctx.output_layouts.get(name)).passed
               for name in reference.names)


def _engine_runner(target, path: Path):
    """For a TensorRT target, its engine with every tensor marked as an output (Polygraphy's
    mark-all); None (ONNX Runtime with every tensor exposed) for the others."""
    if target.engine != "tensorrt":
        return None

    def run(_model, feeds):
        per_feed = target.run_exposed(path, feeds)
        return {name: [outputs[name] for outputs in per_feed] for name in set.intersection(*(set(o) for o in per_feed))}

    return run


def section_text(target_name: str, report, reference_label: str, plot: Path | None = None, *, outputs_failed: bool = True,
                 engine: str = "onnxruntime", unoptimized_failed: bool = False) -> str:
    """The report section; `outputs_failed` says the target's outputs failed (Defaults to True: a
    failed item). Without a divergent tensor, a failure points at ONNX Runtime's optimized run only
    when the artifact's outputs pass with graph optimizations off (`unoptimized_failed` False, see
    unoptimized_outputs_fail); else the floor is looser than the outputs' tolerance. `engine` says
    what ran the artifact. Defaults to onnxruntime."""
    tensorrt = engine == "tensorrt"
    how = "the TensorRT engine with every tensor marked as an output" if tensorrt else "ONNX Runtime with graph optimizations off"
    lines = [f"{target_name}: artifact vs {reference_label}, {how}", report.format()]
    if report.first_divergent is None and outputs_failed:
        loose = tensorrt or unoptimized_failed
        lines.append(LOOSE_FLOOR.format(where="" if tensorrt else " with graph optimizations off too") if loose else OPTIMIZED_ONLY)
    elif report.first_divergent is not None and not outputs_failed:
        lines.append(OUTPUTS_PASS)
    if plot is not None:
        lines.append(f"plot: {plot}")
    return "\n".join(lines)


def bisect_figures(target_name: str, report, reference_label: str, artifact: Path, plot: Path | None) -> dict:
    first = report.first_divergent
    return {
        "target": target_name, "reference": reference_label, "artifact": str(artifact),
        "first_divergent_nodes": first.nodes if first else [], "plot": str(plot) if plot else None,
        **report.to_dict(),
    }
