"""Q/DQ scales fp16 cannot hold: the fp16 artifact keeps their Q/DQ nodes in fp32 (from opset 19, where
Q/DQ take fp16 scales). Below 2**-14 fp16 has only subnormals, with fewer significant bits, then 0: an
int32 bias scale of a 16-bit QDQ model is the product of two small scales (1e-10), which fp16 flushed
to 0, so every bias vanished from the artifact."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

import numpy as np
import onnx_ir as ir

FP16_SMALLEST_NORMAL = 2.0**-14


def tiny_qdq_scales(
    graph: ir.Graph, weights: Mapping[ir.Value, ir.TensorProtocol], qdq_ops: Iterable[str]
) -> Iterator[tuple[ir.Node, str, float, float]]:
    """(node, scale name, max|scale|, share of its values below 2**-14) for each standard-domain Q/DQ
    node of `qdq_ops` whose constant scale (looked up in `weights`) has a non-zero value below 2**-14."""
    ops = set(qdq_ops)
    for node in graph:
        if node.op_type not in ops or node.domain not in ("", "ai.onnx") or len(node.inputs) < 2:
            continue
        tensor = weights.get(node.inputs[1])
        if tensor is None:
            continue
        magnitude = np.abs(np.asarray(tensor.numpy(), np.float64))
        tiny = (magnitude > 0) & (magnitude < FP16_SMALLEST_NORMAL)
        if tiny.size and tiny.any():
            yield node, node.inputs[1].name, float(magnitude.max()), float(tiny.mean())
