"""Verdicts (compare.py, task_metrics.py, baseline.py, precision/, bisection/layerwise.py) that
hand-made mutations showed no other test could tell apart; each test names the mutation it kills.
Expected values are worked out by hand, never by the code under test."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.parser
import onnx_ir as ir
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from onnx2trt_check.bisection.layerwise import node_amplification, relative_l2_error
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
