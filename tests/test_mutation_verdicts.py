"""Verdicts (compare.py, task_metrics.py, baseline.py, precision/, bisection/layerwise.py) that
hand-made mutations showed no other test could tell apart; each test names the mutation it kills.
Expected values are worked out by hand, never by the code under test."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.numpy_helper
import onnx.parser
import onnx.shape_inference
import onnx_ir as ir
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from onnx2trt_check.bisection.layerwise import layerwise_compare, match_tensors, node_amplification, relative_l2_error
from onnx2trt_check.compare import Tolerance, compare_output
from onnx2trt_check.precision.activations import TensorStats

FLOORS_ONLY = Tolerance(atol=None, rtol=None)


@given(st.integers(1, 30), st.floats(0.0, 1.0))
def test_an_all_zero_output_against_an_all_zero_reference_passes_a_cosine_floor(size, floor):
    # "two all-zero vectors count as identical": cosine 1. Kills "cosine 0 when a norm is 0" (a
    # ReLU output that is exactly zero everywhere on both sides failed the default cosine floor).
    zeros = np.zeros(size, np.float32)
    stats = compare_output("y", [zeros], [zeros.copy()], FLOORS_ONLY.merged(min_cosine=floor))
    assert stats.cosine == 1.0 and stats.passed


finite_arrays = hnp.arrays(np.float32, st.integers(1, 12), elements=st.floats(-7e4, 7e4, width=32))


@given(finite_arrays, finite_arrays)
def test_merged_activation_statistics_keep_the_largest_magnitude_of_both(first, second):
    # fp16 fallback decides on max|x| over every feed. Kills "merged keeps the later feed's max": an
    # overflow in one feed of several went unblocked when a later feed was small.
    merged = TensorStats.of(first).merged(TensorStats.of(second))
    assert merged.max_abs == max(float(np.max(np.abs(first))), float(np.max(np.abs(second))))
    assert merged == TensorStats.of(np.concatenate([first, second]))


@given(hnp.arrays(np.float64, st.integers(2, 12), elements=st.floats(-100, 100)), st.data())
def test_a_nan_at_the_same_place_on_both_sides_is_no_error(ref, data):
    # "Elements where both are the same non-finite value are equal". Kills "same = ref == got"
    # (NaN != NaN): a model whose output holds a NaN on both sides read as infinitely divergent.
    ref[data.draw(st.integers(0, ref.size - 1))] = np.nan
    assert relative_l2_error([ref], [ref.copy()]) == 0.0


ADD = """<ir_version: 8, opset_import: ["" : 17]>
g (float[4] a, float[4] b) => (float[4] c) {
  c = Add(a, b)
}"""


@given(st.floats(0.0, 1.0), st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_a_nodes_input_error_is_its_worst_input(a_error, b_error, c_error):
    # "over the worst relative L2 error of the float tensors that feed it". Kills "min" for "max":
    # an Add fed by one exact and one broken branch read as an error source, its amplification inflated.
    graph = ir.from_proto(onnx.parser.parse_model(ADD)).graph
    [row] = node_amplification(graph, {"a": a_error, "b": b_error, "c": c_error}, {"add"})
    assert row.input_error == max(a_error, b_error) and row.output_error == c_error


INT8_WEIGHT = """<ir_version: 8, opset_import: ["" : 17]>
g (float[2] x) => (float[2] y) <int8[2] wq = {10, 20}, float s = {0.1}, int8 z = {0}> {
  w = DequantizeLinear(wq, s, z)
  xq = QuantizeLinear(x, s, z)
  xd = DequantizeLinear(xq, s, z)
  y = Mul(xd, w)
}"""


def test_a_dq_of_an_int8_weight_initializer_matches_no_reference_tensor():
    # The stored-int8 form of a weight (no Q before its DQ: ORT's and ModelOpt's QDQ models) is not an
    # activation. Kills "a DQ without a Q matches its input": the weight was matched to a name the
    # reference never had (test_bisect_layerwise covers only the float -> Q -> DQ form).
    graph = ir.from_proto(onnx.shape_inference.infer_shapes(onnx.parser.parse_model(INT8_WEIGHT))).graph
    assert match_tensors({"x", "y"}, graph) == {"x": "x", "xd": "x", "y": "y"}


TWO_SOURCES = """<ir_version: 8, opset_import: ["" : 17]>
g (float[1,4] x) => (float[1,4] y1, float[1,4] y2) <float[1,4] w1 = {1.0, 2.0, 3.0, 4.0}, float[1,4] w2 = {1.0, 2.0, 3.0, 4.0}> {
  y1 = Mul(x, w1)
  y2 = Mul(x, w2)
}"""


@settings(max_examples=10)
@given(st.lists(st.floats(0.01, 0.5), min_size=2, max_size=2, unique=True))
def test_error_sources_are_listed_largest_output_error_first(faults):
    # "error sources ... listed apart by their output error", largest first. Kills sorting them
    # ascending: the summary's top source was the least broken node.
    reference = onnx.parser.parse_model(TWO_SOURCES)
    target = onnx.ModelProto()
    target.CopyFrom(reference)
    for tensor, fault in zip(target.graph.initializer, faults):
        tensor.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(tensor) * np.float32(1 + fault), tensor.name))
    feeds = [{"x": np.array([[1.0, -2.0, 3.0, -4.0]], np.float32)}]
    report = layerwise_compare(reference, target, feeds)
    errors = [source.output_error for source in report.sources]
    assert len(errors) == 2 and errors == sorted(errors, reverse=True)
