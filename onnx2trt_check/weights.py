"""Non-finite values in a model's constants, and which of them are a failure.

NaN in any constant is a failure: no export writes one on purpose. An infinity is a failure in a
learned parameter (the weights of Conv/Gemm/MatMul, normalization and recurrent layers: the export
or training diverged), but an ordinary value elsewhere: transformers exports fill attention masks
with -inf (`masked_fill(mask, -inf)` becomes a Constant read by Where or Add), and clip bounds may be
+-inf. Those are reported, not failed.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx

# Ops whose non-data inputs are learned parameters; an infinity there is a diverged weight.
PARAMETER_OPS = frozenset({
    "Conv", "ConvTranspose", "Gemm", "MatMul", "BatchNormalization", "LayerNormalization", "InstanceNormalization",
    "GroupNormalization", "LSTM", "GRU", "RNN", "PRelu", "Einsum", "MatMulInteger", "ConvInteger",
})


@dataclasses.dataclass(frozen=True)
class NonFinite:
    """A constant holding NaN or +-inf: its name (the Constant node's output when it has no name),
    the counts, and whether a learned-parameter input reads it."""

    name: str
    nan: int
    inf: int
    parameter: bool

    @property
    def is_failure(self) -> bool:
        return self.nan > 0 or (self.inf > 0 and self.parameter)


def nonfinite_constants(proto: onnx.ModelProto) -> list[NonFinite]:
    """Every float constant of the top-level graph (initializers and Constant nodes) with NaN/inf."""
    parameters = _parameter_inputs(proto.graph)
    found = []
    for name, tensor in _constant_tensors(proto.graph):
        array = onnx.numpy_helper.to_array(tensor)
        if array.dtype.kind not in "fc":
            continue
        nan, inf = int(np.count_nonzero(np.isnan(array))), int(np.count_nonzero(np.isinf(array)))
        if nan or inf:
            found.append(NonFinite(name, nan, inf, name in parameters))
    return found


def _constant_tensors(graph: onnx.GraphProto):
    """(value name, tensor): initializers by their name, Constant nodes by their output's name."""
    yield from ((t.name, t) for t in graph.initializer)
    for node in graph.node:
        if node.op_type == "Constant":
            yield from ((node.output[0], a.t) for a in node.attribute if a.name == "value")


def _parameter_inputs(graph: onnx.GraphProto) -> set[str]:
    """Names read as a non-data input (index >= 1) of a parameter op."""
    return {name for node in graph.node if node.op_type in PARAMETER_OPS for name in node.input[1:] if name}
