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


# Passes that read the values of large weights; with none of them requested, the large weights
# are left out of what onnxoptimizer sees (its C++ round trip copies every byte four times: that
# was 0.9 s of a 100 MB model, four times onnx.load + onnx.save).
_PASSES_READING_WEIGHTS = frozenset({"fuse_bn_into_conv", "eliminate_duplicate_initializer"})
# Small initializers stay: biases, pads, shapes and scales are what the fusions read.
_LARGE_WEIGHT_BYTES = 64 * 1024


def optimize(model: onnx.ModelProto, *, passes: Sequence[str] | None = None) -> TransformResult:
    """onnxoptimizer.optimize with `passes`. Defaults to onnxoptimizer's fusion and elimination
    passes (onnxoptimizer.get_fuse_and_elimination_passes())."""
    passes = list(onnxoptimizer.get_fuse_and_elimination_passes() if passes is None else passes)
    if _PASSES_READING_WEIGHTS.intersection(passes):
        optimized = onnxoptimizer.optimize(_copy(model), passes)
    else:
        light, stash = _without_large_weights(model)
        optimized = _with_weights(onnxoptimizer.optimize(light, passes), stash)
    return _result(model, optimized, passes, tool="onnxoptimizer")


def _without_large_weights(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, onnx.TensorProto]]:
    """A copy whose large initializers are graph inputs of the same type and shape (no values),
    and the initializers taken out, by name."""
    stash = {t.name: t for t in model.graph.initializer if t.ByteSize() > _LARGE_WEIGHT_BYTES}
    graph = model.graph
    kept = [t for t in graph.initializer if t.name not in stash]
    placeholders = [onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in stash.values()]
    light_graph = onnx.helper.make_graph(graph.node, graph.name, [*graph.input, *placeholders], graph.output, kept, value_info=graph.value_info)
    light = onnx.helper.make_model(light_graph, opset_imports=model.opset_import, ir_version=model.ir_version, functions=model.functions)
    for field in ("producer_name", "producer_version", "domain", "model_version", "doc_string"):
        setattr(light, field, getattr(model, field))
    light.metadata_props.extend(model.metadata_props)
    return light, stash


def _with_weights(optimized: onnx.ModelProto, stash: dict[str, onnx.TensorProto]) -> onnx.ModelProto:
    """The placeholders back into initializers; weights no node reads any more are dropped."""
    graph = optimized.graph
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    inputs = [i for i in graph.input if i.name not in stash]
    del graph.input[:]
    graph.input.extend(inputs)
    graph.initializer.extend(stash[name] for name in stash if name in used)
    return optimized


def _result(before: onnx.ModelProto, after: onnx.ModelProto, passes: list[str], *, tool: str) -> TransformResult:
    report = TransformReport(figures={
        "nodes_before": len(before.graph.node),
        "nodes_after": len(after.graph.node),
        "passes": passes,
    })
    modified = not _same_graph(before, after)
    if modified:
        report.matched([], f"{tool}: {len(before.graph.node)} -> {len(after.graph.node)} nodes")
    else:
        report.skipped([], f"{tool} found nothing to change")
    return TransformResult(after if modified else _copy(before), modified, report)


def _same_graph(before: onnx.ModelProto, after: onnx.ModelProto) -> bool:
    """The same graph, ignoring value_info and node names (onnxsim adds both: annotations are not a
    change), compared without serializing the weights."""
    a, b = before.graph, after.graph
    return (
        len(a.node) == len(b.node)
        and all(_node_key(x) == _node_key(y) for x, y in zip(a.node, b.node))
        and [i.SerializeToString() for i in a.input] == [i.SerializeToString() for i in b.input]
        and [o.SerializeToString() for o in a.output] == [o.SerializeToString() for o in b.output]
        and _initializers(a) == _initializers(b)
    )


def _node_key(node: onnx.NodeProto) -> bytes:
    copy = onnx.NodeProto()
    copy.CopyFrom(node)
    copy.ClearField("name")
    return copy.SerializeToString(deterministic=True)


def _initializers(graph: onnx.GraphProto) -> dict[str, tuple]:
    return {t.name: (t.data_type, tuple(t.dims), t.raw_data, tuple(t.float_data), tuple(t.int64_data), tuple(t.int32_data)) for t in graph.initializer}


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy
