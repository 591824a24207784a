"""Move an inference BatchNormalization across an adjacent MaxPool, to where a fold absorbs it.

max commutes with a per-channel affine map s * x + t when every s > 0: max(s * x + t) = s * max(x) + t
over any window, and MaxPool's padding never wins a max (it acts as -inf), which s * x + t keeps. In
float arithmetic the BN is a non-decreasing function of x (each rounding is monotone), so the same
element wins either way. A negative or zero scale turns max into min (or a constant): skipped.

A BN is moved only when that puts it next to a layer that absorbs it:
  Conv/ConvTranspose -> MaxPool -> BN   becomes  Conv -> BN -> MaxPool  (fold_conv_bn folds it)
  BN -> MaxPool -> Conv / [Flatten|Reshape ->] Gemm/MatMul  becomes  MaxPool -> BN -> ...
                                        (fold_bn_conv / fold_bn_gemm fold it)
so the pipeline runs this before the folds.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir

from onnx2trt_check.transforms import graph_utils as gu
from onnx2trt_check.transforms.base import TransformReport, TransformResult

BACKWARD_ABSORBERS = ("Conv", "ConvTranspose")
FORWARD_ABSORBERS = ("Conv", "Gemm", "MatMul")


def bn_across_maxpool(model: onnx.ModelProto) -> TransformResult:
    """Move every BatchNormalization adjacent to a MaxPool to the side where a layer absorbs it."""
    ir_model = gu.to_ir(model)
    graph = ir_model.graph
    report = TransformReport()
    for pool in gu.live_nodes(graph, "MaxPool"):
        move = _candidate(pool)
        if move is None:
            continue
        direction, bn = move
        labels = (gu.node_label(pool), gu.node_label(bn))
        problem = move_problem(pool, bn)
        if problem:
            report.skipped(labels, problem)
            continue
        detail = f"moved BN {direction} across the MaxPool, next to the {_neighbour(pool, direction)} that folds it"
        _move_backward(graph, pool, bn) if direction == "backward" else _move_forward(graph, bn, pool)
        report.matched(labels, detail)
    modified = bool(report.matches)
    return TransformResult(gu.to_onnx(ir_model) if modified else gu.copy_model(model), modified, report)


def _candidate(pool: ir.Node) -> tuple[str, ir.Node] | None:
    """('backward', BN after the pool) when a Conv feeds the pool; ('forward', BN before it) when
    an absorbing layer reads the pool's output; else None (moving would gain nothing)."""
    after = gu.sole_consumer(pool.outputs[0])
    before = pool.inputs[0].producer() if pool.inputs[0] is not None else None
    if gu.is_op(after, "BatchNormalization") and gu.is_op(before, *BACKWARD_ABSORBERS):
        return "backward", after
    if gu.is_op(before, "BatchNormalization") and _absorber_after(pool) is not None:
        return "forward", before
    return None


def _absorber_after(pool: ir.Node) -> ir.Node | None:
    reader = gu.sole_consumer(pool.outputs[0])
    if gu.is_op(reader, "Flatten", "Reshape"):
        reader = gu.sole_consumer(reader.outputs[0])
    return reader if gu.is_op(reader, *FORWARD_ABSORBERS) else None


def _neighbour(pool: ir.Node, direction: str) -> str:
    return pool.inputs[0].producer().op_type if direction == "backward" else _absorber_after(pool).op_type


def move_problem(pool: ir.Node, bn: ir.Node) -> str:
    """Why the BN may not cross this MaxPool ("" when it may)."""
    if len(pool.outputs) > 1 and (pool.outputs[1].uses() or pool.outputs[1].is_graph_output()):
        return "the MaxPool's Indices output is used; the pair is left as it is"
    inner = bn.outputs[0] if bn.inputs[0] is not pool.outputs[0] else pool.outputs[0]
    if inner.is_graph_output() or gu.consumer_count(inner) != 1:
        return f"'{inner.name}' between the BN and the MaxPool has other readers or is a graph output"
    affine = gu.inference_batchnorm(bn)
    if isinstance(affine, str):
        return affine
    scale = affine[0]
    if not np.all(scale > 0):
        channel = int(np.argmin(scale))
        return (f"BN scale is not positive in every channel (channel {channel}: {scale[channel]:.3g}); "
                "max does not commute with a non-positive scale")
    return ""


def _move_backward(graph: ir.Graph, pool: ir.Node, bn: ir.Node) -> None:
    """x -> MaxPool -> BN  becomes  x -> BN -> MaxPool."""
    new_bn = _copy(bn, [pool.inputs[0], *bn.inputs[1:]])
    new_pool = _copy(pool, [new_bn.outputs[0]])
    gu.replace_with_nodes(graph, [pool, bn], [new_bn, new_pool], bn.outputs[0], new_pool.outputs[0])


def _move_forward(graph: ir.Graph, bn: ir.Node, pool: ir.Node) -> None:
    """x -> BN -> MaxPool  becomes  x -> MaxPool -> BN."""
    new_pool = _copy(pool, [bn.inputs[0]])
    new_bn = _copy(bn, [new_pool.outputs[0], *bn.inputs[1:]])
    gu.replace_with_nodes(graph, [bn, pool], [new_pool, new_bn], pool.outputs[0], new_bn.outputs[0])


def _copy(node: ir.Node, inputs: list[ir.Value]) -> ir.Node:
    """The same op and attributes over `inputs`, with one output (BN's running stats and MaxPool's
    Indices are unused, checked above)."""
    return ir.node(node.op_type, inputs, attributes=dict(node.attributes), name=node.name or None)
