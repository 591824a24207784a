"""Quantization math (qdq_math, ranges, equalize, bias_correction) that hand-made mutations showed no other test
could tell apart; each test names the mutation it kills. Expected values come from plain Python
arithmetic or from the definitions, never from the functions under test."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import onnx
import onnx.helper as oh
import onnx.numpy_helper as nh
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from onnx2trt_check.quant.bias_correction import analytic_bias_correction, relu_normal_mean
from onnx2trt_check.quant.calibrate import TensorStats
from onnx2trt_check.quant.equalize import equalization_scales
from onnx2trt_check.quant.qdq_math import dequantize, per_tensor_amax
from onnx2trt_check.quant.ranges import amax_mse, amax_percentile

floats32 = st.floats(-1e4, 1e4, width=32)


@given(hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=5), elements=floats32))
def test_per_tensor_amax_is_the_largest_magnitude(x):
    # max |x|, not max x: an activation whose negative side is the larger one would get a scale
    # that clips it (or a negative amax).
    assert per_tensor_amax(x) == max(abs(float(v)) for v in x.ravel())


@given(
    hnp.arrays(np.int8, st.integers(1, 8), elements=st.integers(-128, 127)),
    st.integers(-128, 127),
    st.floats(2.0**-20, 1e3, width=32),
)
def test_dequantize_subtracts_the_zero_point(q, zero_point, scale):
    # DequantizeLinear: (q - zero_point) * scale; float_counterpart.py dequantizes QAT weights
    # with their (possibly nonzero) zero point through it.
    expected = [np.float32(float(int(v) - zero_point)) * np.float32(scale) for v in q]
    assert dequantize(q, np.float32(scale), np.int8(zero_point)).tolist() == [float(e) for e in expected]


# --------------------------------------------------------------------------------------- ranges


def _stats(counts, *, width=0.25, amax=None) -> TensorStats:
    counts = np.asarray(counts, dtype=np.int64)
    return TensorStats(amax=len(counts) * width if amax is None else amax, counts=counts, width=width)


@given(counts=hnp.arrays(np.int64, st.integers(1, 60), elements=st.integers(0, 50)), percentile=st.floats(0.0, 100.0))
def test_percentile_is_the_lower_edge_of_the_bin_where_the_count_reaches_it(counts, percentile):
    # pytorch-quantization's rule: the first bin k whose cumulative share reaches p, amax = edge k.
    # Worked out in exact fractions; shares within float rounding of p are left out.
    assume(counts.sum() > 0)
    total, target = int(counts.sum()), Fraction(percentile) / 100
    shares = [Fraction(int(c), total) for c in np.cumsum(counts)]
    assume(all(abs(float(s - target)) > 1e-12 for s in shares))
    k = next((i for i, s in enumerate(shares) if s >= target), len(counts))
    stats = _stats(counts)
    assert amax_percentile(stats, percentile) == min(k * 0.25, stats.amax)


def test_percentile_100_never_exceeds_max_abs():
    # Six equal bins: the float cumulative share ends at 0.9999999999999999, short of 1.0, so the
    # search runs past the last bin to the histogram's top edge, above max|x|: capped at max|x|.
    stats = _stats([1] * 6, width=1.0, amax=5.5)
    assert amax_percentile(stats, 100.0) == 5.5


@given(st.integers(1, 1000), st.integers(140, 300), st.sampled_from([2.0**-8, 0.01, 1.0, 3.0]))
def test_mse_takes_the_first_of_equal_errors(zeros, bins, width):
    # Every value in bin 0 (center width/2): from candidate bin 128 on, the scale exceeds the
    # width, so every candidate rounds them to level 0 with the same error. pytorch-quantization's
    # argmin takes the first: the center of bin 128.
    counts = np.zeros(bins, np.int64)
    counts[0] = zeros
    assert amax_mse(_stats(counts, width=width)) == np.float32(128.5 * width)


# -------------------------------------------------------------------------------------- equalize


ranges = st.floats(1e-3, 1e3) | st.just(0.0)  # a subnormal range would overflow the ratio: no weight has one


@given(st.lists(st.tuples(ranges, ranges), min_size=1, max_size=16))
def test_equalization_scales_are_sqrt_of_the_range_ratio_and_1_for_a_dead_channel(pairs):
    # s_i = sqrt(r1_i / r2_i); a channel with a zero range on either side keeps scale 1 (r2 = 0
    # would give s = inf and zero out the live first-layer channel).
    r1, r2 = (np.array(side, np.float64) for side in zip(*pairs))
    expected = [math.sqrt(a / b) if a > 0 and b > 0 else 1.0 for a, b in pairs]
    np.testing.assert_allclose(equalization_scales(r1, r2), expected, rtol=1e-15)


# ------------------------------------------------------------------------------ bias correction


@given(st.floats(-10.0, 10.0))
def test_relu_normal_mean_of_a_constant_is_its_relu(mean):
    # std 0: X is the constant `mean`, and E[max(0, X)] is max(0, mean), negative means included.
    assert relu_normal_mean(mean, 0.0) == max(mean, 0.0)


def _bn_gemm(*, trans_b: int, alpha: float, beta: float) -> onnx.ModelProto:
    """x[8, 3] -> BatchNormalization (shift 1, 2, 3) -> Gemm(B, C) with 2 output columns."""
    weight = np.arange(6, dtype=np.float32).reshape(3, 2)
    arrays = {"gamma": np.ones(3), "shift": np.array([1.0, 2.0, 3.0]), "mean": np.zeros(3), "var": np.ones(3),
              "B": weight.T if trans_b else weight, "C": np.array([10.0, 20.0])}
    nodes = [oh.make_node("BatchNormalization", ["x", "gamma", "shift", "mean", "var"], ["n"]),
             oh.make_node("Gemm", ["n", "B", "C"], ["y"], name="fc", transB=trans_b, alpha=alpha, beta=beta)]
    inits = [nh.from_array(a.astype(np.float32), k) for k, a in arrays.items()]
    graph = oh.make_graph(nodes, "g", [oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [8, 3])],
                          [oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)], inits)
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])


@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize(("alpha", "beta"), [(1.0, 1.0), (0.5, 2.0)])
def test_analytic_gemm_correction_quantizes_per_output_column_and_divides_by_beta(trans_b, alpha, beta):
    # A quantizer that adds 0.25 to every weight: the error of output column n is
    # alpha * E[x] @ 0.25 = alpha * 0.25 * (1 + 2 + 3), and C (scaled by beta in Y) moves by it / beta.
    axes = []

    def quantizer(weight, axis):
        axes.append(axis)
        return weight + np.float32(0.25)

    result = analytic_bias_correction(_bn_gemm(trans_b=trans_b, alpha=alpha, beta=beta), weight_quantizer=quantizer)
    assert axes == [0 if trans_b else 1]  # B is [K, N], or [N, K] with transB: the N axis
    corrected = {t.name: nh.to_array(t) for t in result.model.graph.initializer}["C"]
    np.testing.assert_allclose(corrected, np.array([10.0, 20.0]) - alpha * 0.25 * 6.0 / beta, rtol=1e-6)
