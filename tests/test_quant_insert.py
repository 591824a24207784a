"""QDQ insertion by TensorRT's rules and the quantize_model entry point: structure of the QDQ graph
(which tensors, int8 weights, zero points, axes), the skip reasons, and ORT accuracy vs float."""

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import numpy_helper

from onnx2trt_check.errors import ConfigError, ModelError
from onnx2trt_check.quant.insert_qdq import insert_qdq, plan_qdq
from onnx2trt_check.quant.quantize import quantize_model
from onnx2trt_check.runtime import run_model

RESIDUAL_BLOCK = """<ir_version: 8, opset_import: ["": 17]>
g (float[1,4,8,8] x) => (float[1,4,8,8] y) {
  h = Conv <pads=[1,1,1,1]> (x, w1, b1)
  r = Relu(h)
  c = Conv <pads=[1,1,1,1]> (r, w2)
  y = Add(c, x)
}"""

GEMM = """<ir_version: 8, opset_import: ["": 17]>
g (float[4,16] x) => (float[4,8] y) {
  z = Gemm <transB=%d> (x, w, b)
  y = MatMul(z, m)
}"""


def _with_weights(text: str, seed: int = 0, **shapes) -> onnx.ModelProto:
    model = onnx.parser.parse_model(text)
    rng = np.random.default_rng(seed)
    for name, shape in shapes.items():
        model.graph.initializer.append(numpy_helper.from_array(rng.normal(0, 0.3, shape).astype(np.float32), name))
    onnx.checker.check_model(model)
    return model


def _residual_block(seed: int = 0) -> onnx.ModelProto:
    return _with_weights(RESIDUAL_BLOCK, seed, w1=(8, 4, 3, 3), b1=(8,), w2=(4, 8, 3, 3))


def _gemm(trans_b: int) -> onnx.ModelProto:
    return _with_weights(GEMM % trans_b, w=(8, 16) if trans_b else (16, 8), b=(8,), m=(8, 8))


def _feeds(model: onnx.ModelProto, count: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    return [{model.graph.input[0].name: rng.normal(size=shape).astype(np.float32)} for _ in range(count)]


def _by_output(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {out: node for node in model.graph.node for out in node.output}


def _dq_source(model: onnx.ModelProto, tensor: str) -> tuple[str, onnx.NodeProto]:
    """For a DQ output, the tensor the Q/DQ chain started from and the DQ node."""
    producers = _by_output(model)
    dq = producers[tensor]
    assert dq.op_type == "DequantizeLinear"
    quantized = dq.input[0]
    if quantized in producers:  # activation: Q -> DQ
        assert producers[quantized].op_type == "QuantizeLinear"
        return producers[quantized].input[0], dq
    return quantized, dq  # weight: int8 initializer -> DQ


def _initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _axis(node: onnx.NodeProto) -> int | None:
    return next((a.i for a in node.attribute if a.name == "axis"), None)


def _sqnr_db(reference: np.ndarray, actual: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(reference**2) / np.sum((reference - actual) ** 2)))


def _assert_close_to_float(model: onnx.ModelProto, quantized: onnx.ModelProto, feeds, min_db: float = 25.0):
    for ref, out in zip(run_model(model, feeds), run_model(quantized, feeds)):
        for name in ref:
            assert _sqnr_db(ref[name], out[name]) > min_db, name


# ---------------------------------------------------------------- the residual Conv block


@pytest.fixture(scope="module")
def residual():
    model = _residual_block()
    before = model.SerializeToString()
    result = quantize_model(model, _feeds(model, 4), method="max")
    assert model.SerializeToString() == before, "input model was mutated"
    return model, result


def test_conv_inputs_and_the_residual_get_qdq_but_no_outputs(residual):
    _, result = residual
    q = result.model
    onnx.checker.check_model(q)
    convs = [n for n in q.graph.node if n.op_type == "Conv"]
    add = next(n for n in q.graph.node if n.op_type == "Add")
    assert [_dq_source(q, conv.input[0])[0] for conv in convs] == ["x", "r"]
    assert [_dq_source(q, conv.input[1])[0] for conv in convs] == ["w1_quantized", "w2_quantized"]
    assert convs[0].input[2] == "b1"  # bias stays float
    assert add.input[0] == "c" and _dq_source(q, add.input[1])[0] == "x"  # Conv+Add fusion form
    quantized_sources = {n.input[0] for n in q.graph.node if n.op_type == "QuantizeLinear"}
    assert quantized_sources == {"x", "r"}  # never h, c or y: outputs are not quantized


def test_weights_are_int8_per_output_channel_with_zero_points_zero(residual):
    model, result = residual
    q, inits = result.model, _initializers(result.model)
    float_weights = _initializers(model)
    assert "w1" not in inits and "w2" not in inits
    for name, channels in (("w1", 8), ("w2", 4)):
        dq = next(n for n in q.graph.node if n.op_type == "DequantizeLinear" and n.input[0] == f"{name}_quantized")
        weight, scale, zero_point = (inits[i] for i in dq.input)
        assert weight.dtype == np.int8 and _axis(dq) == 0
        assert scale.shape == (channels,) and zero_point.dtype == np.int8 and not zero_point.any()
        expected_scale = np.abs(float_weights[name]).reshape(channels, -1).max(axis=1) / 127
        np.testing.assert_allclose(scale, expected_scale, rtol=1e-6)
    for node in q.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            assert not inits[node.input[2]].any()


def test_report_lists_amax_and_scale_of_every_quantized_tensor(residual):
    model, result = residual
    feeds = _feeds(model, 4)
    by_name = {t.name: t for t in result.report.tensors}
    assert set(by_name) == {"x", "r", "w1", "w2"}
    x_max = max(float(np.abs(f["x"]).max()) for f in feeds)
    assert by_name["x"].amax == pytest.approx(x_max) and by_name["x"].scale == pytest.approx(x_max / 127)
    assert len(by_name["w1"].scale) == 8 and by_name["w1"].axis == 0
    assert result.report.skips == [] and result.report.method == "max"


@pytest.mark.parametrize("method", ["max", "entropy", "percentile", "mse"])
def test_qdq_model_runs_in_ort_close_to_float(method):
    model = _residual_block(seed=2)
    result = quantize_model(model, _feeds(model, 3), method=method, percentile=99.999)
    _assert_close_to_float(model, result.model, _feeds(model, 3, seed=9))


# ---------------------------------------------------------------- Gemm, MatMul, ConvTranspose


@pytest.mark.parametrize("trans_b, axis", [(1, 0), (0, 1)])
def test_gemm_weight_axis_follows_transb_and_output_stays_close(trans_b, axis):
    model = _gemm(trans_b)
    feeds = _feeds(model, 32)
    result = quantize_model(model, feeds, method="max")
    q = result.model
    gemm = next(n for n in q.graph.node if n.op_type == "Gemm")
    matmul = next(n for n in q.graph.node if n.op_type == "MatMul")
    assert _dq_source(q, gemm.input[0])[0] == "x" and gemm.input[2] == "b"
    source, dq = _dq_source(q, gemm.input[1])
    assert source == "w_quantized" and _axis(dq) == axis
    assert _initializers(q)["w_scale"].shape == (8,)
    source, dq = _dq_source(q, matmul.input[1])
    assert source == "m_quantized" and _axis(dq) == 1  # MatMul B is K x N
    assert _dq_source(q, matmul.input[0])[0] == "z"
    # Batches of 4 rows: unseen ones can go past the max-calibrated range and saturate, so the
    # accuracy is measured on the calibration distribution itself.
    _assert_close_to_float(model, q, feeds[:8])


def test_per_tensor_weights_when_per_channel_is_off():
    model = _gemm(1)
    q = quantize_model(model, _feeds(model, 2), method="max", per_channel=False).model
    _, dq = _dq_source(q, next(n for n in q.graph.node if n.op_type == "Gemm").input[1])
    assert _axis(dq) is None and _initializers(q)["w_scale"].shape == ()


def test_conv_transpose_weights_are_per_channel_on_axis_1():
    text = """<ir_version: 8, opset_import: ["": 17]>
    g (float[1,4,5,5] x) => (float[1,6,7,7] y) { y = ConvTranspose(x, w) }"""
    model = _with_weights(text, w=(4, 6, 3, 3))
    q = quantize_model(model, _feeds(model, 2), method="max").model
    _, dq = _dq_source(q, q.graph.node[-1].input[1])
    assert _axis(dq) == 1 and _initializers(q)["w_scale"].shape == (6,)
    _assert_close_to_float(model, q, _feeds(model, 2, seed=9))


def test_activation_by_activation_matmul_quantizes_both_inputs_per_tensor():
    model = onnx.parser.parse_model("""<ir_version: 8, opset_import: ["": 17]>
    g (float[4,8] a, float[8,3] b) => (float[4,3] y) { y = MatMul(a, b) }""")
    plan = plan_qdq(model)
    assert [(t.tensor, t.kind, t.axis) for t in plan.targets] == [("b", "activation", None), ("a", "activation", None)]


# ---------------------------------------------------------------- skips and misuse


def test_exclude_by_exact_name_and_by_regex():
    model = _with_weights("""<ir_version: 8, opset_import: ["": 17]>
    g (float[1,2,4,4] x) => (float[1,2,4,4] y) {
      [stem] a = Conv (x, w1)
      [head_conv] y = Conv (a, w2)
    }""", w1=(2, 2, 1, 1), w2=(2, 2, 1, 1))
    for exclude in (["head_conv"], [r"head_.*"]):
        plan = plan_qdq(model, exclude=exclude)
        assert {t.tensor for t in plan.targets} == {"x", "w1"}
        assert [(s.nodes, s.reason) for s in plan.skips] == [(("head_conv",), f"excluded by {exclude[0]!r}")]


def test_already_quantized_and_non_constant_weights_are_skipped_with_reasons():
    model = onnx.parser.parse_model("""<ir_version: 8, opset_import: ["": 17]>
    g (float[1,2,4,4] x, float[2,2,1,1] w) => (float[1,2,4,4] y, float[1,2,4,4] z)
    <float s = {0.1}, int8 zp = {0}> {
      q = QuantizeLinear(x, s, zp)
      d = DequantizeLinear(q, s, zp)
      y = Conv (d, w)
      z = Conv (x, w)
    }""")
    plan = plan_qdq(model)
    assert plan.targets == []
    assert [s.reason for s in plan.skips] == ["input 'd' is already quantized", "weight is not a constant initializer"]


def test_ops_no_rule_quantizes_and_linear_layers_inside_subgraphs_are_named_as_left_float():
    # An LSTM/Einsum model reported "1 activation quantized" and nothing about the rest; a MatMul
    # inside an If branch was not mentioned at all.
    model = onnx.parser.parse_model("""<ir_version: 8, opset_import: ["": 17]>
    g (float[1,4] x, bool c) => (float[1,4] y, float[1,4] e) <float[4,4] w = {1.0,0.0,0.0,0.0,0.0,1.0,0.0,0.0,0.0,0.0,1.0,0.0,0.0,0.0,0.0,1.0}> {
      y = If (c) <then_branch = t () => (float[1,4] a) { a = MatMul(x, w) }, else_branch = f () => (float[1,4] b) { b = Relu(x) }>
      e = Einsum <equation = "ij,jk->ik"> (x, w)
      r = If (c) <then_branch = t2 () => (float[1,4] a2) { a2 = Relu(x) }, else_branch = f2 () => (float[1,4] b2) { b2 = Neg(x) }>
    }""")
    plan = plan_qdq(model)
    assert plan.targets == []
    assert [(s.nodes, s.reason) for s in plan.skips] == [
        (("If(y)",), "its subgraph(s) hold 1 MatMul, left float: Q/DQ placement covers the main graph only"),
        (("Einsum(e)",), "no Q/DQ placement rule for Einsum: it stays float (TensorRT computes it in fp32/fp16 in an int8 engine)"),
    ]


def test_add_without_a_conv_input_is_left_alone():
    model = onnx.parser.parse_model("""<ir_version: 8, opset_import: ["": 17]>
    g (float[2] a, float[2] b) => (float[2] y) { y = Add(a, b) }""")
    plan = plan_qdq(model)
    assert plan.targets == [] and plan.skips == []


def test_old_opset_and_missing_amax_are_usage_errors():
    old = onnx.parser.parse_model("""<ir_version: 7, opset_import: ["": 11]>
    g (float[2,2] a, float[2,2] b) => (float[2,2] y) { y = MatMul(a, b) }""")
    with pytest.raises(ModelError, match="version_converter"):
        plan_qdq(old)
    model = _gemm(1)
    with pytest.raises(ConfigError, match="amax"):
        insert_qdq(model, plan_qdq(model), {})
    with pytest.raises(ConfigError, match="method"):
        quantize_model(model, _feeds(model, 1), method="kl")


# ---------------------------------------------------------------- property: weight round trip


@settings(max_examples=10)
@given(seed=st.integers(0, 2**16), scale=st.floats(1e-3, 10.0))
def test_int8_weights_dequantize_within_half_a_step_of_the_float_weights(seed, scale):
    model = _with_weights(GEMM % 1, seed, w=(8, 16), b=(8,), m=(8, 8))
    weight = _initializers(model)["w"] * np.float32(scale)
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(weight, "w"))
    plan = plan_qdq(model)
    q, _ = insert_qdq(model, plan, {name: 1.0 for name in plan.activations})
    inits = _initializers(q)
    step = inits["w_scale"][:, None]
    restored = inits["w_quantized"].astype(np.float32) * step
    # float32 QuantizeLinear: w / scale rounds in float32 (a quotient within half an ulp of a .5
    # tie becomes the tie, then rounds to even) and q * scale rounds again: a few eps32 * |w| more.
    assert np.all(np.abs(restored - weight) <= step / 2 * (1 + 1e-5) + np.abs(weight) * 1e-6)
    assert np.all(np.abs(inits["w_quantized"]).max(axis=1) == 127)
