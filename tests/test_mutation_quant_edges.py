"""Quantization math (quant/) at the edges no other test reached: hand-made mutations survived every
test until these; each test names the mutation it kills. Expected values come from the documented
rule or plain arithmetic, never from the function under test."""

from __future__ import annotations

import math
from unittest import mock

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from test_quant_calibrate import _reference_divergences

from onnx2trt_check.quant import ranges
from onnx2trt_check.quant.calibrate import TensorStats
from onnx2trt_check.quant.equalize import high_bias_amount
from onnx2trt_check.quant.qdq_math import SYMMETRIC_LEVELS, quantize, symmetric_scale
from onnx2trt_check.quant.ranges import amax_entropy, entropy_divergences

FLOAT32_TINY = float(np.finfo(np.float32).tiny)
# amax whose amax / 127 is a float32 subnormal: positive, below 127 * tiny.
SUBNORMAL_SCALE_AMAX = st.floats(0.0, float(np.float32(SYMMETRIC_LEVELS * FLOAT32_TINY)), width=32, exclude_min=True, exclude_max=True)


@given(SUBNORMAL_SCALE_AMAX)
def test_a_range_whose_scale_would_be_subnormal_gets_scale_one(amax):
    # "A range whose scale would be 0 or subnormal gets scale 1.0 ... Such values quantize to 0."
    # Kills "scale > 0" in place of "scale >= float32 tiny": amax / 127 kept as a subnormal scale,
    # which has too few bits to map amax to 127 (x / scale lands anywhere from 64 to inf).
    assert float(np.float32(amax) / np.float32(SYMMETRIC_LEVELS)) < FLOAT32_TINY  # the case is reached
    assert symmetric_scale(amax) == np.float32(1.0)
    assert symmetric_scale([amax, 127.0]).tolist() == [1.0, 1.0]
    assert quantize(np.float32(amax), symmetric_scale(amax)) == 0


@settings(max_examples=8)
@given(hnp.arrays(np.int64, st.integers(128, 160), elements=st.integers(1, 1000)), st.integers(0, 10**5))
def test_every_entropy_divergence_copies_bin_one_into_the_zero_bin(counts, zero_bin):
    # TensorRT replaces the zero bin by bin 1 (it is huge after a ReLU). hypothesis' arrays mostly
    # repeat one fill value, so bin 0 usually equals bin 1 already and test_quant_calibrate's oracle
    # tests never told "bin 0 kept as counted" apart: here bin 0 is drawn on its own.
    assume(zero_bin != counts[1])
    counts[0] = zero_bin
    _, divergences = entropy_divergences(counts)
    expected = _reference_divergences(counts)
    assert np.allclose(divergences, expected, rtol=1e-9, atol=1e-12)


@given(st.integers(129, 200), st.data())
def test_entropy_takes_the_last_of_equally_divergent_thresholds(bins, data):
    # "entropy takes the last of them (TensorRT's last_argmin)". Exact ties are hard to build from a
    # histogram, so the divergences are given: kills "[0]" (the first tie) for "[-1]".
    candidates = np.arange(128, bins + 1)
    tied = sorted(data.draw(st.sets(st.integers(0, len(candidates) - 1), min_size=2, max_size=4)))
    divergences = np.full(len(candidates), 2.0)
    divergences[tied] = 0.5
    stats = TensorStats(amax=float(bins), width=1.0, counts=np.ones(bins, np.int64))
    with mock.patch.object(ranges, "entropy_divergences", return_value=(candidates, divergences)):
        assert amax_entropy(stats) == float(candidates[tied[-1]])


@given(st.floats(0.5, 100.0), st.floats(0.01, 1.0), st.integers(1, 20))
def test_high_bias_moves_mean_minus_three_std_when_that_is_below_the_minimum(center, spread_ratio, pairs):
    # Values center -/+ d alternating: mean = center, std = d, min = center - d. The amount is
    # clip(mean - 3 std, 0, min) = max(center - 3 d, 0), computed here by hand. Kills "mean + 3 std"
    # (then clipped to the minimum): still exact on the calibration feeds, so no function test saw
    # it, but anything below the calibration minimum is then clipped by the activation.
    d = center * spread_ratio
    values = np.tile([center - d, center + d], pairs).reshape(1, 1, -1)
    amount = high_bias_amount([values])
    assert amount.shape == (1,)
    assert math.isclose(amount[0], max(center - 3 * d, 0.0), rel_tol=1e-9, abs_tol=1e-9 * center)
