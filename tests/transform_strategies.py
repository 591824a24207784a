"""Builders of small Conv/BN/RepConv graphs and hypothesis strategies over them.

Shared by tests/test_transform_fold_conv_bn.py, test_transform_fold_bn_conv.py and
test_transform_fuse_repconv.py. Builders use onnx.helper (the text parser cannot carry random
weights); every tensor is an initializer unless a test says otherwise.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from onnx2trt_check.runtime import run_model

OPSET = 17


# --- tensors and nodes ----------------------------------------------------------------------------


@dataclasses.dataclass
class GraphParts:
    """Nodes and initializers collected while a test model is being built."""

    nodes: list = dataclasses.field(default_factory=list)
    initializers: list = dataclasses.field(default_factory=list)

    def const(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.asarray(array, dtype=np.float32), name))
        return name

    def node(self, op_type: str, inputs, outputs, **attributes):
        self.nodes.append(helper.make_node(op_type, list(inputs), list(outputs), name=outputs[0], **attributes))
        return outputs[0]

    def model(self, inputs, outputs) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, "test", inputs, outputs, initializer=self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        model.ir_version = 8
        return onnx.shape_inference.infer_shapes(model)


def tensor_info(name: str, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape) if shape is not None else None)


@dataclasses.dataclass(frozen=True)
class BNParams:
    gamma: np.ndarray
    beta: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    epsilon: float

    def add(self, parts: GraphParts, x: str, out: str, **attributes) -> str:
        names = [parts.const(f"{out}_{k}", getattr(self, k)) for k in ("gamma", "beta", "mean", "var")]
        return parts.node("BatchNormalization", [x, *names], [out], epsilon=self.epsilon, **attributes)

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Reference BN in float64, written from the ONNX definition, channel axis 1."""
        shape = (1, -1) + (1,) * (x.ndim - 2)
        r = lambda a: a.astype(np.float64).reshape(shape)  # noqa: E731
        return r(self.gamma) * (x - r(self.mean)) / np.sqrt(r(self.var) + self.epsilon) + r(self.beta)


# --- strategies -----------------------------------------------------------------------------------


def float_arrays(shape, *, low=-1.0, high=1.0):
    size = int(np.prod(shape))
    elements = st.floats(low, high, allow_nan=False, width=32)
    return st.lists(elements, min_size=size, max_size=size).map(lambda v: np.array(v, np.float32).reshape(shape))


@st.composite
def bn_params(draw, channels: int) -> BNParams:
    """BN statistics with negative gamma, tiny variance (down to 1e-8) and varied eps."""
    gamma = draw(float_arrays((channels,), low=-2.0, high=2.0))
    beta = draw(float_arrays((channels,), low=-2.0, high=2.0))
    mean = draw(float_arrays((channels,), low=-1.0, high=1.0))
    var = np.array(draw(st.lists(st.sampled_from([1e-8, 1e-3, 0.25, 1.0, 4.0]), min_size=channels,
                                 max_size=channels)), np.float32)
    eps = draw(st.sampled_from([1e-5, 1e-3, 1e-8]))
    # Tiny var with tiny eps makes scale ~1e4: keep such gammas small so outputs stay O(10).
    gamma = np.where(var + eps < 1e-4, gamma * 1e-3, gamma).astype(np.float32)
    return BNParams(gamma, beta, mean, var, eps)


@st.composite
def grouping(draw, *, max_groups=3, max_per_group=3):
    """(groups, c_in, c_out): plain, grouped or depthwise."""
    kind = draw(st.sampled_from(["plain", "grouped", "depthwise"]))
    if kind == "plain":
        return 1, draw(st.integers(1, 4)), draw(st.integers(1, 4))
    groups = draw(st.integers(2, max_groups))
    if kind == "depthwise":
        return groups, groups, groups * draw(st.integers(1, 2))
    return groups, groups * draw(st.integers(1, max_per_group)), groups * draw(st.integers(1, max_per_group))


# --- running --------------------------------------------------------------------------------------


def run(model: onnx.ModelProto, feeds: dict) -> dict:
    return run_model(model, [feeds])[0]


def assert_close(actual: np.ndarray, reference: np.ndarray, *, rtol: float = 1e-4, atol_scale: float = 1e-5) -> None:
    """float32 equivalence: atol = atol_scale * max(1, max|ref|) plus rtol.

    The folded and original graphs sum the same products in a different order and with the BN
    scale applied before instead of after the sum, so each output differs by a few float32 ulps
    of the largest partial sum; 1e-5 relative to the output magnitude is ~100 ulps, far below
    any real folding error (a wrong channel or a missed term is O(1) relative).
    """
    atol = atol_scale * max(1.0, float(np.max(np.abs(reference), initial=0.0)))
    np.testing.assert_allclose(actual, reference, rtol=rtol, atol=atol)


def op_counts(model: onnx.ModelProto) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in model.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts
