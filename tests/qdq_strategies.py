"""Builders of small QDQ graphs and hypothesis strategies over them, for test_qdq_*.py.

`rules_graph` builds one clean TensorRT-style QDQ network (Conv, residual Add, MaxPool, Concat,
Flatten, Gemm) with every rule's violation available as a plant. The `*_case` builders make the
graphs the optimizer rewrites, with the tensors the tests need to state bounds as graph inputs.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

OPSET = 17

VIOLATIONS = {  # planted violation -> the rule ids it must raise, and nothing else
    "uint8_zero_point": {"QDQ001-zero-point"},
    "nonzero_zero_point": {"QDQ001-zero-point"},
    "bad_scale": {"QDQ002-scale"},
    "weight_axis_conv": {"QDQ003-weight-axis"},
    "weight_axis_gemm": {"QDQ003-weight-axis"},
    "int32_bias": {"QDQ004-int32-bias"},
    "unquantized_input": {"QDQ005-unquantized-input"},
    "conv_add_qdq": {"QDQ006-conv-add-qdq"},
    "residual_unquantized": {"QDQ007-residual-unquantized"},
    "concat_scales": {"QDQ008-concat-scales"},
    "passthrough_scale": {"QDQ009-passthrough-scale"},
    "dangling_q": {"QDQ010-dangling-q"},
    "output_qdq": {"QDQ011-output-qdq"},
}


@dataclasses.dataclass
class QDQBuilder:
    """With `float_mode`, the same network as written by hand in float: activation Q/DQ left out,
    weights stored dequantized (q * scale): the expected float counterpart."""

    nodes: list = dataclasses.field(default_factory=list)
    initializers: list = dataclasses.field(default_factory=list)
    float_mode: bool = False

    def const(self, name: str, array) -> str:
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op_type: str, inputs, output: str, **attributes) -> str:
        self.nodes.append(helper.make_node(op_type, list(inputs), [output], name=output, **attributes))
        return output

    def qdq(self, x: str, scale: float, *, zero_point=np.int8(0), name: str | None = None) -> str:
        """x -> Q -> DQ per tensor; returns the DQ output (`{name}_dq`)."""
        if self.float_mode:
            return x
        name = name or x
        s = self.const(f"{name}_scale", np.float32(scale))
        z = self.const(f"{name}_zp", np.asarray(zero_point))
        q = self.node("QuantizeLinear", [x, s, z], f"{name}_q")
        return self.node("DequantizeLinear", [q, s, z], f"{name}_dq")

    def weight(self, name: str, w: np.ndarray, *, axis: int = 0, fold: bool = True) -> str:
        """Symmetric per-channel int8 weight along `axis` -> DQ (or float -> Q -> DQ if not `fold`)."""
        reduce = tuple(a for a in range(w.ndim) if a != axis)
        scale = (np.max(np.abs(w), axis=reduce) / 127).astype(np.float32)
        s = self.const(f"{name}_scale", scale)
        z = self.const(f"{name}_zp", np.zeros(scale.shape, np.int8))
        shape = [1] * w.ndim
        shape[axis] = -1
        q = np.clip(np.rint(w / scale.reshape(shape)), -128, 127).astype(np.int8)
        if self.float_mode:
            return self.const(f"{name}_float", q.astype(np.float32) * scale.reshape(shape) if fold else w)
        source = self.const(f"{name}_int8", q) if fold else self.node("QuantizeLinear", [self.const(f"{name}_float", w), s, z], f"{name}_q", axis=axis)
        return self.node("DequantizeLinear", [source, s, z], f"{name}_dq", axis=axis)

    def model(self, inputs: dict, outputs: dict) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes, "qdq", [_info(n, s) for n, s in inputs.items()], [_info(n, s) for n, s in outputs.items()],
            initializer=self.initializers,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model


def _info(name: str, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


# --- the rules network ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RulesSpec:
    channels: int
    scales: tuple[float, float, float, float]  # x, relu1, relu2 (MaxPool/Concat), flatten
    seed: int
    violation: str | None = None
    bad_scale: float = 0.0


def rules_graph(spec: RulesSpec, *, float_mode: bool = False) -> onnx.ModelProto:
    """The clean network, or with `spec.violation` planted (see QDQBuilder for `float_mode`)."""
    v, c = spec.violation, spec.channels
    sx, s1, s2, s3 = spec.scales
    rng = np.random.default_rng(spec.seed)
    b = QDQBuilder(float_mode=float_mode)
    w = lambda *shape: rng.normal(0, 0.3, shape).astype(np.float32)  # noqa: E731
    zp = np.uint8(128) if v == "uint8_zero_point" else np.int8(0)
    a0 = b.qdq("x", sx, zero_point=zp)
    if v == "int32_bias":
        ints, bias_scale = rng.integers(-50, 50, c).astype(np.int32), np.float32(sx * 0.01)
        bias1 = b.const("b1", ints.astype(np.float32) * bias_scale) if float_mode else \
            b.node("DequantizeLinear", [b.const("b1_int32", ints), b.const("b1_scale", bias_scale)], "b1_dq")
    else:
        bias1 = b.const("b1", w(c))
    r1 = b.node("Relu", [b.node("Conv", [a0, b.weight("w1", w(c, c, 3, 3)), bias1], "conv1", pads=[1] * 4)], "relu1")
    a1 = b.qdq(r1, s1)
    c2 = b.node("Conv", [a1, b.weight("w2", w(c, c, 3, 3), axis=1 if v == "weight_axis_conv" else 0), b.const("b2", w(c))], "conv2", pads=[1] * 4)
    if v == "conv_add_qdq":
        c2 = b.qdq(c2, s1)
    r2 = b.node("Relu", [b.node("Add", [c2, r1 if v == "residual_unquantized" else a1], "add")], "relu2")
    a2 = b.qdq(r2, s2, zero_point=np.int8(3) if v == "nonzero_zero_point" else np.int8(0))
    pooled = b.node("MaxPool", [a2], "pool", kernel_shape=[2, 2], strides=[2, 2])
    a3 = b.qdq(pooled, s3 if v == "passthrough_scale" else s2)
    c3 = b.node("Conv", [a2, b.weight("w3", w(c, c, 3, 3)), b.const("b3", w(c))], "conv3", pads=[1] * 4, strides=[2, 2])
    a4 = b.qdq(c3, s3 if v in ("concat_scales", "passthrough_scale") else s2)
    cat = b.node("Concat", [a3, a4], "concat", axis=1)
    a5 = cat if v == "unquantized_input" else b.qdq(cat, spec.bad_scale if v == "bad_scale" else s2)
    c4 = b.node("Conv", [a5, b.weight("w4", w(c, 2 * c, 1, 1)), b.const("b4", w(c))], "conv4")
    flat = b.node("Flatten", [b.qdq(c4, s3)], "flatten")
    gemm_w = b.weight("w5", w(5, 9 * c), axis=1 if v == "weight_axis_gemm" else 0)
    y = b.node("Gemm", [b.qdq(flat, s3), gemm_w, b.const("b5", w(5))], "y_float" if v == "output_qdq" else "y", transB=1)
    outputs = {"y": [1, 5]}
    if v == "output_qdq":
        b.qdq(y, s3, name="y")
        b.nodes[-1].output[0] = "y"
    if v == "dangling_q":
        b.node("Cast", [b.node("QuantizeLinear", [r2, b.const("dangling_scale", np.float32(s2)), b.const("dangling_zp", np.int8(0))], "dangling_q")], "extra", to=TensorProto.FLOAT)
        outputs["extra"] = [1, c, 6, 6]
    return b.model({"x": [1, c, 6, 6]}, outputs)


scales = st.floats(1e-3, 0.5).map(lambda v: float(np.float32(v)))


@st.composite
def rules_specs(draw, violation=st.sampled_from([None, *VIOLATIONS])) -> RulesSpec:
    s2 = draw(scales)
    s3 = float(np.float32(s2 * draw(st.floats(1.1, 3.0))))
    bad = draw(st.sampled_from([0.0, -0.01, float("inf"), float("nan")]))
    return RulesSpec(draw(st.integers(2, 4)), (draw(scales), draw(scales), s2, s3), draw(st.integers(0, 2**16)), draw(violation), bad)


def input_feeds(model: onnx.ModelProto, seed: int, amplitude: float, count: int = 2) -> list[dict]:
    """`count` feeds of normal values times `amplitude` for every graph input."""
    rng = np.random.default_rng(seed)
    shapes = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    return [{n: (rng.standard_normal(s) * amplitude).astype(np.float32) for n, s in shapes.items()} for _ in range(count)]


# --- optimizer cases: the rewrite's input tensors are graph inputs, so tests can bound the change ---


def chain_case(s1: float, s2: float) -> onnx.ModelProto:
    """x -> Q(s1) -> DQ -> Q(s2) -> DQ -> Relu -> y."""
    b = QDQBuilder()
    b.node("Relu", [b.qdq(b.qdq("x", s1, name="first"), s2, name="second")], "y")
    return b.model({"x": [2, 8]}, {"y": [2, 8]})


def concat_case(s1: float, s2: float) -> onnx.ModelProto:
    """Concat(DQ(Q(x1, s1)), DQ(Q(x2, s2))) -> Relu -> y."""
    b = QDQBuilder()
    b.node("Relu", [b.node("Concat", [b.qdq("x1", s1), b.qdq("x2", s2)], "concat", axis=1)], "y")
    return b.model({"x1": [1, 3, 4], "x2": [1, 5, 4]}, {"y": [1, 8, 4]})


PASSTHROUGH = {  # op -> (attributes, output shape for a [1, 2, 4, 4] input)
    "MaxPool": ({"kernel_shape": [2, 2], "strides": [2, 2]}, [1, 2, 2, 2]),
    "Transpose": ({"perm": [0, 2, 3, 1]}, [1, 4, 4, 2]),
    "Flatten": ({}, [1, 32]),
}


def passthrough_case(op: str, s_in: float, s_out: float) -> onnx.ModelProto:
    """x -> Q(s_in) -> DQ -> op -> Q(s_out) -> DQ -> Relu -> y (Reshape reads a constant shape)."""
    b = QDQBuilder()
    a = b.qdq("x", s_in)
    if op == "Reshape":
        mid, shape = b.node("Reshape", [a, b.const("shape", np.array([1, 8, 4], np.int64))], "op"), [1, 8, 4]
    else:
        attributes, shape = PASSTHROUGH[op]
        mid = b.node(op, [a], "op", **attributes)
    b.node("Relu", [b.qdq(mid, s_out)], "y")
    return b.model({"x": [1, 2, 4, 4]}, {"y": shape})


def fusion_case(weight: np.ndarray, scale: float, residual_quantized: bool, fold: bool = True) -> onnx.ModelProto:
    """x -> 1x1 Conv(weight, float or Q'd weight) -> Q/DQ(scale) -> Add(., r or DQ(Q(r))) -> y."""
    b = QDQBuilder()
    w = b.const("w", weight) if fold else b.weight("w", weight)
    conv = b.node("Conv", ["x", w], "conv")
    residual = b.qdq("r", scale, name="residual") if residual_quantized else "r"
    b.node("Add", [b.qdq(conv, scale), residual], "y")
    c = weight.shape[0]
    return b.model({"x": [1, weight.shape[1], 3, 3], "r": [1, c, 3, 3]}, {"y": [1, c, 3, 3]})


def weight_fold_case(weight: np.ndarray, x_scale: float) -> onnx.ModelProto:
    """x -> Q/DQ -> Conv(float weight -> Q -> DQ, per channel) -> y."""
    b = QDQBuilder()
    b.node("Conv", [b.qdq("x", x_scale), b.weight("w", weight, fold=False)], "y")
    return b.model({"x": [1, weight.shape[1], 3, 3]}, {"y": [1, weight.shape[0], 3, 3]})
