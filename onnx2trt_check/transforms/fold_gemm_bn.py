"""Fold an inference BatchNormalization into the Gemm or MatMul (constant weight) that feeds it.

A BN on a rank-2 output [M, N] normalizes axis 1, the output's columns, so with BN(y) = s * y + t per
column:

    Gemm:   s * (alpha * A' B' + beta * C) + t  =  alpha * A' (B' diag(s)) + (s * beta * C + t)
    MatMul: s * (A B) + t                       =  A (B diag(s)) + t            (an Add of t after it)

exact up to rounding. B' diag(s) scales B's rows when transB=1 and its columns otherwise. A MatMul
output of rank 3 or more puts another axis at 1 (rows, not the weight's columns), which a constant
weight cannot absorb: such a BN is skipped with that reason.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir

from onnx2trt_check.transforms import graph_utils as gu
from onnx2trt_check.transforms.base import TransformReport, TransformResult


def fold_gemm_bn(model: onnx.ModelProto) -> TransformResult:
    """Fold every Gemm/MatMul -> BatchNormalization pair whose weight is a constant."""
    ir_model = gu.to_ir(model, infer_shapes=True)
    graph = ir_model.graph
    report = TransformReport()
    for bn in gu.live_nodes(graph, "BatchNormalization"):
        layer = bn.inputs[0].producer() if bn.inputs and bn.inputs[0] is not None else None
        if not gu.is_op(layer, "Gemm", "MatMul"):
            continue  # not a candidate
        labels = (gu.node_label(layer), gu.node_label(bn))
        outcome = _fold_pair(graph, layer, bn)
        (report.skipped if outcome.startswith("skip: ") else report.matched)(labels, outcome.removeprefix("skip: "))
    modified = bool(report.matches)
    return TransformResult(gu.to_onnx(ir_model) if modified else gu.copy_model(model), modified, report)


def _fold_pair(graph: ir.Graph, layer: ir.Node, bn: ir.Node) -> str:
    """Rewrite layer -> bn and say what was done, or 'skip: <reason>'."""
    problem = wiring_problem(layer, bn)
    if problem:
        return f"skip: {problem}"
    scale, shift = gu.inference_batchnorm(bn)
    rewrite = _gemm_rewrite if layer.op_type == "Gemm" else _matmul_rewrite
    outcome = rewrite(graph, layer, scale, shift)
    if isinstance(outcome, str):
        return f"skip: {outcome}"
    old_params = layer.inputs[1:] + bn.inputs[1:]
    gu.replace_with_nodes(graph, [layer, bn], outcome, bn.outputs[0], outcome[-1].outputs[0])
    gu.drop_unused_initializers(graph, old_params)
    return f"folded into {layer.op_type} ({scale.size} output columns)"


def wiring_problem(layer: ir.Node, bn: ir.Node) -> str:
    """Why the pair's wiring or the BN's form forbids the fold ("" when nothing does)."""
    out = layer.outputs[0]
    if out.is_graph_output():
        return f"{layer.op_type} output '{out.name}' is a graph output"
    if not gu.only_feeds(out, bn):
        return f"{layer.op_type} output '{out.name}' has {gu.consumer_count(out)} consumers"
    form = gu.inference_batchnorm(bn)
    return form if isinstance(form, str) else ""


def _gemm_rewrite(graph: ir.Graph, gemm: ir.Node, scale: np.ndarray, shift: np.ndarray) -> list[ir.Node] | str:
    weight = gu.constant_array(gemm.inputs[1])
    if weight is None:
        return "Gemm weight B is not a constant"
    trans_b = bool(gu.attr(gemm, "transB", 0))
    columns = weight.shape[0] if trans_b else weight.shape[1]
    if scale.size != columns:
        return f"BatchNormalization has {scale.size} channels, Gemm outputs {columns}"
    bias = gemm_bias(gemm)
    if isinstance(bias, str):
        return bias
    axis = 0 if trans_b else 1  # the axis of B that indexes output columns
    new_weight = weight.astype(np.float64) * np.expand_dims(scale, 1 - axis)
    new_bias = squeeze_rows(scale.reshape(1, -1) * bias + shift.reshape(1, -1))
    return [rebuilt_gemm(graph, gemm, gemm.inputs[0], new_weight.astype(weight.dtype), new_bias.astype(weight.dtype))]


def gemm_bias(gemm: ir.Node) -> np.ndarray | float | str:
    """beta * C in float64 (0.0 without C), or why C cannot be folded into."""
    value = gemm.inputs[2] if len(gemm.inputs) > 2 else None
    if value is None:
        return 0.0
    bias = gu.constant_array(value)
    if bias is None:
        return "Gemm bias C is not a constant"
    return float(gu.attr(gemm, "beta", 1.0)) * bias.astype(np.float64)


def squeeze_rows(bias: np.ndarray) -> np.ndarray:
    """A bias shaped [1, N] as [N] (Gemm's usual C); an [M, N] bias stays as it is."""
    return bias.reshape(-1) if bias.shape[0] == 1 else bias


def rebuilt_gemm(graph: ir.Graph, gemm: ir.Node, data: ir.Value, weight: np.ndarray, bias: np.ndarray) -> ir.Node:
    """A Gemm with `gemm`'s alpha and transposes reading `data`, the new weight and bias (beta 1)."""
    base = gemm.name or gemm.outputs[0].name
    attributes = {k: v for k, v in gemm.attributes.items() if k != "beta"}
    inputs = [data, gu.add_initializer(graph, weight, name_hint=f"{base}_bnfold_weight"),
              gu.add_initializer(graph, bias, name_hint=f"{base}_bnfold_bias")]
    return ir.node("Gemm", inputs, attributes=attributes, name=gemm.name or None)


def _matmul_rewrite(graph: ir.Graph, matmul: ir.Node, scale: np.ndarray, shift: np.ndarray) -> list[ir.Node] | str:
    weight = gu.constant_array(matmul.inputs[1])
    if weight is None or weight.ndim != 2:
        return "MatMul's second input is not a constant 2-D weight"
    rank = output_rank(matmul)
    if rank != 2:
        return (f"the MatMul output has rank {rank or 'unknown'}: BatchNormalization normalizes its axis 1, "
                "which is the weight's column axis only for a rank-2 output")
    if scale.size != weight.shape[1]:
        return f"BatchNormalization has {scale.size} channels, MatMul outputs {weight.shape[1]}"
    new_weight = (weight.astype(np.float64) * scale.reshape(1, -1)).astype(weight.dtype)
    return matmul_with_bias(graph, matmul, matmul.inputs[0], new_weight, shift.astype(weight.dtype))


def output_rank(node: ir.Node) -> int | None:
    shape = node.outputs[0].shape
    return None if shape is None else len(shape)


def matmul_with_bias(graph: ir.Graph, matmul: ir.Node, data: ir.Value, weight: np.ndarray, bias: np.ndarray) -> list[ir.Node]:
    """MatMul(data, weight) + bias: what TensorRT and onnxoptimizer fuse into one layer."""
    base = matmul.name or matmul.outputs[0].name
    weight_value = gu.add_initializer(graph, weight, name_hint=f"{base}_bnfold_weight")
    bias_value = gu.add_initializer(graph, bias, name_hint=f"{base}_bnfold_bias")
    product = ir.node("MatMul", [data, weight_value], name=matmul.name or None)
    return [product, ir.node("Add", [product.outputs[0], bias_value], name=f"{base}_bnfold_add")]
