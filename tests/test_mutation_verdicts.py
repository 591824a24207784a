"""Verdicts (compare.py, task_metrics.py, baseline.py, precision/, bisection/layerwise.py) that
hand-made mutations showed no other test could tell apart; each test names the mutation it kills.
Expected values are worked out by hand, never by the code under test."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from onnx2trt_check.compare import Tolerance, compare_output

FLOORS_ONLY = Tolerance(atol=None, rtol=None)


@given(st.integers(1, 30), st.floats(0.0, 1.0))
def test_an_all_zero_output_against_an_all_zero_reference_passes_a_cosine_floor(size, floor):
    # "two all-zero vectors count as identical": cosine 1. Kills "cosine 0 when a norm is 0" (a
    # ReLU output that is exactly zero everywhere on both sides failed the default cosine floor).
    zeros = np.zeros(size, np.float32)
    stats = compare_output("y", [zeros], [zeros.copy()], FLOORS_ONLY.merged(min_cosine=floor))
    assert stats.cosine == 1.0 and stats.passed
