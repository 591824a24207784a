"""float_counterpart: the QDQ network's float counterpart computes exactly what the same network
written in float with the dequantized weights computes (ORT outputs bit-equal)."""

from __future__ import annotations

import numpy as np
import onnx
from hypothesis import given
from hypothesis import strategies as st
from qdq_strategies import (
    VIOLATIONS,
    input_feeds,
    rules_graph,
    rules_specs,
    weight_fold_case,
)

from onnx2trt_check.quant.float_counterpart import float_counterpart, has_qdq
from onnx2trt_check.runtime import run_model

# A dangling Q has no float meaning; every other plant (and the clean net) has a float counterpart.
WITH_COUNTERPART = sorted(set(VIOLATIONS) - {"dangling_q", "bad_scale"})


@given(rules_specs(violation=st.sampled_from([None, *WITH_COUNTERPART])), st.integers(0, 100))
def test_counterpart_equals_float_network_with_dequantized_weights(spec, seed):
    qdq = rules_graph(spec)
    counterpart = float_counterpart(qdq)
    assert has_qdq(qdq) and not has_qdq(counterpart)
    feeds = input_feeds(qdq, seed, amplitude=2.0)
    expected = run_model(rules_graph(spec, float_mode=True), feeds)
    for got, want in zip(run_model(counterpart, feeds), expected):
        np.testing.assert_array_equal(got["y"], want["y"])


def test_float_weight_behind_q_is_restored_unquantized():
    weight = np.random.default_rng(0).normal(size=(3, 2, 1, 1)).astype(np.float32)
    counterpart = float_counterpart(weight_fold_case(weight, 0.05))
    feeds = input_feeds(counterpart, 0, amplitude=1.0)
    x = feeds[0]["x"]
    expected = np.einsum("oi,bihw->bohw", weight[:, :, 0, 0], x)
    np.testing.assert_allclose(run_model(counterpart, feeds)[0]["y"], expected, rtol=1e-5, atol=1e-6)


def test_qdq_on_graph_output_keeps_the_output_name():
    model = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[4] x) => (float[4] y) <float s = {0.1}, int8 z = {0}> {
        q = QuantizeLinear(x, s, z)
        y = DequantizeLinear(q, s, z)
    }""")
    counterpart = float_counterpart(model)
    assert [o.name for o in counterpart.graph.output] == ["y"] and not has_qdq(counterpart)
    x = np.array([0.123, -5.0, 20.0, 1e-3], np.float32)
    np.testing.assert_array_equal(run_model(counterpart, [{"x": x}])[0]["y"], x)


def test_input_model_not_mutated_and_unrelated_initializers_kept():
    model = rules_graph(_spec())
    extra = onnx.numpy_helper.from_array(np.zeros(2, np.float32), "unused_but_kept")
    model.graph.initializer.append(extra)
    before = model.SerializeToString()
    counterpart = float_counterpart(model)
    assert model.SerializeToString() == before
    assert "unused_but_kept" in {i.name for i in counterpart.graph.initializer}
    assert not any(i.data_type == onnx.TensorProto.INT8 for i in counterpart.graph.initializer)


def _spec():
    from qdq_strategies import RulesSpec

    return RulesSpec(2, (0.02, 0.03, 0.05, 0.1), 0, "int32_bias")
