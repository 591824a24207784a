"""fp16 conversion with the data-driven fp32 fallback list, checked in ONNX Runtime on the CPU.

Tolerance for the benign model: max abs error <= 1% of max|y_fp32|. fp16 keeps 11 significant bits
(unit roundoff 2**-11 ~ 4.9e-4); the weights are rounded once and the K-term dot products add
roughly sqrt(K) such errors, so 1% leaves a margin of several fold while any wrong cast, clipped
weight or overflow is far larger.
"""

import numpy as np
import onnx
import onnx.parser
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from onnx import numpy_helper

from onnx2trt_check.errors import ConfigError
from onnx2trt_check.precision.activations import TensorStats
from onnx2trt_check.precision.fp16 import convert_to_fp16, tensor_verdict
from onnx2trt_check.runtime import run_model

FLOAT = onnx.TensorProto.FLOAT


def with_weights(text: str, **weights: np.ndarray) -> onnx.ModelProto:
    model = onnx.parser.parse_model(text)
    model.graph.initializer.extend(numpy_helper.from_array(np.asarray(w, np.float32), name) for name, w in weights.items())
    onnx.checker.check_model(model)
    return model


def benign_model() -> onnx.ModelProto:
    rng = np.random.default_rng(1)
    return with_weights(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[1,3,8,8] x) => (float[1,10] y) {
          c = Conv<pads=[1,1,1,1]>(x, w, cb)
          r = Relu(c)
          f = Flatten(r)
          y = Gemm<transB=1>(f, fc, fb)
        }""",
        w=rng.normal(0, 0.3, (4, 3, 3, 3)),
        cb=rng.normal(0, 0.1, 4),
        fc=rng.normal(0, 0.1, (10, 256)),
        fb=rng.normal(0, 0.1, 10),
    )


def planted_overflow_model() -> tuple[onnx.ModelProto, np.ndarray, np.ndarray]:
    """MatMul to ~1.2e5 (beyond 65504), brought back into range by LayerNormalization: a transformer's
    hidden state before its norm. Transpose keeps the LayerNorm's input stored in fp16 inside ORT
    (ORT runs isolated fp16 nodes without a CPU fp16 kernel in fp32)."""
    rng = np.random.default_rng(0)
    weight = rng.uniform(4000, 6000, (16, 16))
    model = with_weights(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[1,16] x) => (float[16,1] y) {
          h = MatMul(x, W)
          n = LayerNormalization(h, gamma, beta)
          t = Transpose<perm=[1,0]>(n)
          y = Relu(t)
        }""",
        W=weight,
        gamma=rng.uniform(0.5, 2, 16),
        beta=rng.uniform(-1, 1, 16),
    )
    return model, rng.uniform(1, 2, (1, 16)).astype(np.float32), weight


def output(model: onnx.ModelProto, feed: dict) -> np.ndarray:
    return next(iter(run_model(model, [feed])[0].values()))


def io_elem_types(model: onnx.ModelProto) -> set[int]:
    return {value.type.tensor_type.elem_type for value in [*model.graph.input, *model.graph.output]}


def value_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    values = [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    return {value.name: value.type.tensor_type.elem_type for value in values}


def test_plain_fp16_fails_and_the_data_driven_fallback_fixes_the_planted_overflow():
    model, x, weight = planted_overflow_model()
    feed = {"x": x}
    reference = output(model, feed)
    plain = output(convert_to_fp16(model).model, feed)  # no feeds: no data-driven fallback
    assert not np.all(np.isfinite(plain)) or np.max(np.abs(plain - reference)) > 0.5

    result = convert_to_fp16(model, [feed])
    onnx.checker.check_model(result.model, full_check=True)
    np.testing.assert_allclose(output(result.model, feed), reference, atol=1e-2 * np.abs(reference).max())
    blocked = {node.name: node for node in result.report.blocked}
    # unnamed nodes are named by their label, OpType(first output), as every report prints them
    assert set(blocked) == {"MatMul(h)", "LayerNormalization(n)"}
    assert blocked["MatMul(h)"].reasons[0].kind == "overflow" and blocked["MatMul(h)"].reasons[0].tensor == "h"
    assert blocked["MatMul(h)"].max_abs == pytest.approx(np.abs(x.astype(np.float64) @ weight).max(), rel=1e-5)
    assert result.report.converted_ops == {"Relu": 1, "Transpose": 1}


def test_benign_model_converts_fully_stays_close_and_keeps_fp32_io():
    model = benign_model()
    before = model.SerializeToString()
    feed = {"x": np.random.default_rng(2).normal(0, 1, (1, 3, 8, 8)).astype(np.float32)}
    result = convert_to_fp16(model, [feed])
    onnx.checker.check_model(result.model, full_check=True)
    assert io_elem_types(result.model) == {FLOAT}
    reference = output(model, feed)
    converted = output(result.model, feed)
    assert converted.dtype == np.float32
    assert np.max(np.abs(converted - reference)) <= 1e-2 * np.abs(reference).max()
    assert result.report.blocked == []
    assert result.report.converted_ops == {"Conv": 1, "Flatten": 1, "Gemm": 1, "Relu": 1}
    assert all(t.data_type == onnx.TensorProto.FLOAT16 for t in result.model.graph.initializer)
    assert model.SerializeToString() == before


def test_block_nodes_by_name_stay_fp32():
    model = benign_model()
    model.graph.node[0].name = "conv0"
    result = convert_to_fp16(model, block_nodes=["conv0"])
    types = value_types(result.model)
    conv = next(node for node in result.model.graph.node if node.name == "conv0")
    assert {types[name] for name in [*conv.input, *conv.output]} == {FLOAT}
    gemm = next(node for node in result.model.graph.node if node.op_type == "Gemm")
    assert types[gemm.output[0]] == onnx.TensorProto.FLOAT16
    assert [(node.name, node.reasons[0].kind) for node in result.report.blocked] == [("conv0", "user")]
    with pytest.raises(ConfigError, match="'conv9'"):
        convert_to_fp16(model, block_nodes=["conv9"])


def test_weight_beyond_fp16_range_keeps_its_consumer_fp32():
    model = with_weights(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[1,4] x) => (float[1,4] y) {
          y = Mul(x, s)
        }""",
        s=[1e5, 2.0, -3e5, 4.0],
    )
    feed = {"x": np.full((1, 4), 1e-3, np.float32)}
    result = convert_to_fp16(model)
    (blocked,) = result.report.blocked
    assert (blocked.op_type, blocked.reasons[0].kind, blocked.max_abs) == ("Mul", "weight-overflow", 3e5)
    np.testing.assert_allclose(output(result.model, feed), output(model, feed), rtol=1e-6)


def test_sensitive_ops_are_blocked_by_default_and_can_be_released():
    model = with_weights(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[1,4] x) => (float[1,4] y) {
          e = Exp(x)
          y = Add(e, b)
        }""",
        b=[1, 2, 3, 4],
    )
    default = convert_to_fp16(model)
    assert [(node.name, node.reasons[0].kind) for node in default.report.blocked] == [("Exp(e)", "sensitive-op")]
    released = convert_to_fp16(model, block_ops=())
    assert released.report.blocked == [] and released.report.converted_ops == {"Add": 1, "Exp": 1}


BOUNDARY = [0.0, 2.0**-14, 2.0**-15, 1e-7, 1.0, 16376.0, 16377.0, 32752.0, 32753.0, 65504.0, 1e5]
VALUES = st.one_of(st.sampled_from(BOUNDARY), st.floats(0, 1e5, width=32))
SIGNED = hnp.arrays(np.float32, st.integers(1, 12), elements=VALUES).map(lambda a: a * np.where(np.arange(a.size) % 2, -1, 1))


@given(SIGNED, st.sampled_from([1.0, 2.0, 4.0]), st.sampled_from([0.0, 0.1, 0.5, 1.0]))
def test_tensor_verdict_matches_the_threshold_definitions(values, margin, fraction):
    magnitudes = np.abs(values.astype(np.float64))
    nonzero = magnitudes[magnitudes > 0]
    expected = None
    if magnitudes.max() > 65504.0 / margin:
        expected = "overflow"
    elif nonzero.size and np.mean(nonzero < 2.0**-14) > fraction:
        expected = "underflow"
    verdict = tensor_verdict(TensorStats.of(values), overflow_limit=65504.0 / margin, underflow_fraction=fraction)
    assert verdict == expected
