"""onnxsim and onnxoptimizer as transforms: they do the work, this module only adapts them to the
`TransformResult` contract (input never mutated, node counts, which passes ran).

Their own checks are off (onnxsim `check_n=0`, no proof attempt): the pipeline verifies every
modifying step with `verify.check_equivalence`, one rule for every transform.
"""

from __future__ import annotations

from collections.abc import Sequence

import onnx
import onnxoptimizer

from onnx2trt_check.transforms.base import TransformReport, TransformResult

# What onnxsim runs, for the report: it has no pass list of its own to ask.
_ONNXSIM_STEPS = ("constant_folding", "shape_inference", "onnxoptimizer fuse_and_elimination")


def simplify(model: onnx.ModelProto, *, fuse_bn: bool = True) -> TransformResult:
    """onnxsim.simplify with its own random-input check disabled (check_n=0). `fuse_bn=False`
    leaves BatchNormalization to our own folds (onnxsim's skip_fuse_bn). Defaults to True."""
    import onnxsim  # here, not at the top: it imports torch where torch is installed (seconds)

    simplified, _ = onnxsim.simplify(_copy(model), check_n=0, skip_fuse_bn=not fuse_bn, certify=False)
    return _result(model, simplified, list(_ONNXSIM_STEPS), tool="onnxsim")


def optimize(model: onnx.ModelProto, *, passes: Sequence[str] | None = None) -> TransformResult:
    """onnxoptimizer.optimize with `passes`. Defaults to onnxoptimizer's fusion and elimination
    passes (onnxoptimizer.get_fuse_and_elimination_passes())."""
    passes = list(onnxoptimizer.get_fuse_and_elimination_passes() if passes is None else passes)
    optimized = onnxoptimizer.optimize(_copy(model), passes)
    return _result(model, optimized, passes, tool="onnxoptimizer")


def _result(before: onnx.ModelProto, after: onnx.ModelProto, passes: list[str], *, tool: str) -> TransformResult:
    report = TransformReport(figures={
        "nodes_before": len(before.graph.node),
        "nodes_after": len(after.graph.node),
        "passes": passes,
    })
    modified = _graph_bytes(before) != _graph_bytes(after)
    if modified:
        report.matched([], f"{tool}: {len(before.graph.node)} -> {len(after.graph.node)} nodes")
    else:
        report.skipped([], f"{tool} found nothing to change")
    return TransformResult(after if modified else _copy(before), modified, report)


def _graph_bytes(model: onnx.ModelProto) -> bytes:
    """The graph without value_info and node names: shape annotations added by inference and
    names given to unnamed nodes (onnxsim does both) are not a change."""
    graph = onnx.GraphProto()
    graph.CopyFrom(model.graph)
    del graph.value_info[:]
    for node in graph.node:
        node.ClearField("name")
    return graph.SerializeToString(deterministic=True)


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy
