"""Fold an inference BatchNormalization into the Gemm or MatMul (constant weight) that reads it,
directly or through a Flatten/Reshape that keeps the channel axis (a BatchNorm1d or a BatchNorm2d
before the classifier).

The Gemm reads features k of x' = BN(x). A rank-2 BN input [M, C] gives k = c; a BN input
[M, C, *S] flattened to [M, C * prod(S)] gives k = c * prod(S) + s, so feature k carries the BN of
channel k // prod(S). With x' = x * s_k + t_k:

    Gemm:   alpha * (x * s + t) B' + beta * C  =  alpha * x (diag(s) B') + (beta * C + alpha * t B')
    MatMul: (x * s + t) B                      =  x (diag(s) B) + t B       (an Add after it)

exact up to rounding, with no border effect (nothing is padded). The Flatten/Reshape stays, now
reading the BN's input.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnx_ir as ir

from onnx2trt_check.transforms import graph_utils as gu
from onnx2trt_check.transforms.base import TransformReport, TransformResult
from onnx2trt_check.transforms.fold_gemm_bn import gemm_bias, matmul_with_bias, rebuilt_gemm, squeeze_rows

RESHAPERS = ("Flatten", "Reshape")


def fold_bn_gemm(model: onnx.ModelProto) -> TransformResult:
    """Fold every BatchNormalization -> [Flatten|Reshape ->] Gemm/MatMul chain with a constant weight."""
    ir_model = gu.to_ir(model, infer_shapes=True)
    graph = ir_model.graph
    report = TransformReport()
    for bn in gu.live_nodes(graph, "BatchNormalization"):
        chain = _chain(bn)
        if chain is None:
            continue  # not a candidate: no Gemm/MatMul reads this BN
        reshaper, layer = chain
        labels = tuple(gu.node_label(n) for n in (bn, reshaper, layer) if n is not None)
        outcome = _fold(graph, bn, reshaper, layer)
        (report.skipped if outcome.startswith("skip: ") else report.matched)(labels, outcome.removeprefix("skip: "))
    modified = bool(report.matches)
    return TransformResult(gu.to_onnx(ir_model) if modified else gu.copy_model(model), modified, report)


def _chain(bn: ir.Node) -> tuple[ir.Node | None, ir.Node] | None:
    """(reshaper or None, layer) when a Gemm/MatMul reads the BN output as its data input (A)."""
    if not bn.outputs or bn.outputs[0].is_graph_output():
        return None
    reader = gu.sole_consumer(bn.outputs[0])
    reshaper = reader if gu.is_op(reader, *RESHAPERS) else None
    if reshaper is not None:
        reader = gu.sole_consumer(reshaper.outputs[0])
    if not gu.is_op(reader, "Gemm", "MatMul") or reader.inputs[0] is not (reshaper or bn).outputs[0]:
        return None
    return reshaper, reader


def _fold(graph: ir.Graph, bn: ir.Node, reshaper: ir.Node | None, layer: ir.Node) -> str:
    affine = gu.inference_batchnorm(bn)
    if isinstance(affine, str):
        return f"skip: {affine}"
    spread = features_per_channel(bn, reshaper)
    if isinstance(spread, str):
        return f"skip: {spread}"
    scale, shift = (np.repeat(v, spread) for v in affine)
    data = reshaper.outputs[0] if reshaper is not None else bn.inputs[0]
    rewrite = _gemm_nodes if layer.op_type == "Gemm" else _matmul_nodes
    new_nodes = rewrite(graph, layer, data, scale, shift)
    if isinstance(new_nodes, str):
        return f"skip: {new_nodes}"
    _apply(graph, bn, reshaper, layer, new_nodes)
    through = f" through {reshaper.op_type}" if reshaper is not None else ""
    return f"folded BN into {layer.op_type}{through} ({affine[0].size} channels, {scale.size} features)"


def features_per_channel(bn: ir.Node, reshaper: ir.Node | None) -> int | str:
    """prod(S) for a BN input [M, C, *S] that the layer reads as [M, C * prod(S)], or why not."""
    shape = bn.inputs[0].shape
    dims = list(shape) if shape is not None else None
    if reshaper is None:
        return 1 if dims is not None and len(dims) == 2 else f"the BN input has rank {len(dims) if dims else 'unknown'}, not 2"
    if dims is None or len(dims) < 2 or not all(isinstance(d, int) for d in dims[1:]):
        return f"the BN input shape {dims} has dynamic or unknown channel/spatial dims"
    spread = math.prod(dims[2:])
    out = reshaper.outputs[0].shape
    if out is None or len(out) != 2 or out[1] != dims[1] * spread:
        return f"{reshaper.op_type} turns {dims} into {list(out) if out is not None else 'an unknown shape'}, not [M, {dims[1] * spread}]"
    return spread


def _gemm_nodes(graph: ir.Graph, gemm: ir.Node, data: ir.Value, scale: np.ndarray, shift: np.ndarray) -> list[ir.Node] | str:
    if gu.attr(gemm, "transA", 0):
        return "the Gemm has transA=1: the BN channels would be its output rows, not its weight's input features"
    weight = gu.constant_array(gemm.inputs[1])
    if weight is None:
        return "Gemm weight B is not a constant"
    trans_b = bool(gu.attr(gemm, "transB", 0))
    inputs = weight.shape[1] if trans_b else weight.shape[0]
    if scale.size != inputs:
        return f"the BN gives {scale.size} features, the Gemm weight reads {inputs}"
    bias = gemm_bias(gemm)
    if isinstance(bias, str):
        return bias
    b_prime = weight.astype(np.float64).T if trans_b else weight.astype(np.float64)  # [K, N]
    alpha = float(gu.attr(gemm, "alpha", 1.0))
    scaled = b_prime * scale.reshape(-1, 1)
    new_bias = squeeze_rows(np.asarray(bias, dtype=np.float64) + alpha * (shift @ b_prime).reshape(1, -1))
    new_weight = scaled.T if trans_b else scaled
    return [rebuilt_gemm(graph, gemm, data, new_weight.astype(weight.dtype), new_bias.astype(weight.dtype))]


def _matmul_nodes(graph: ir.Graph, matmul: ir.Node, data: ir.Value, scale: np.ndarray, shift: np.ndarray) -> list[ir.Node] | str:
    weight = gu.constant_array(matmul.inputs[1])
    if weight is None or weight.ndim != 2:
        return "MatMul's second input is not a constant 2-D weight"
    if data.shape is None or len(data.shape) != 2:
        return "the MatMul reads the BN output at a rank other than 2: its axis 1 is not the weight's input axis"
    if scale.size != weight.shape[0]:
        return f"the BN gives {scale.size} features, the MatMul weight reads {weight.shape[0]}"
    weight64 = weight.astype(np.float64)
    new_weight = (weight64 * scale.reshape(-1, 1)).astype(weight.dtype)
    return matmul_with_bias(graph, matmul, data, new_weight, (shift @ weight64).astype(weight.dtype))


def _apply(graph: ir.Graph, bn: ir.Node, reshaper: ir.Node | None, layer: ir.Node, new_nodes: list[ir.Node]) -> None:
    """Remove the BN (the reshaper, if any, now reads the BN's input) and swap the layer for `new_nodes`."""
    old_params = layer.inputs[1:] + bn.inputs[1:]
    if reshaper is None:  # the new nodes already read the BN's input
        gu.replace_with_nodes(graph, [bn, layer], new_nodes, layer.outputs[0], new_nodes[-1].outputs[0])
    else:
        reshaper.replace_input_with(0, bn.inputs[0])
        gu.replace_with_nodes(graph, [layer], new_nodes, layer.outputs[0], new_nodes[-1].outputs[0])
        graph.remove(bn, safe=True)
    gu.drop_unused_initializers(graph, old_params)
