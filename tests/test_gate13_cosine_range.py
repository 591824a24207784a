"""gate13: cosine similarity of identical outputs came out 1.0000000000000002 (rounding); the
baseline schema holds cosine to [-1, 1], so `--baseline-update` of an exact target failed with
"not recorded as the baseline: ... outside [-1.0, 1.0] (the target's outputs are not finite)"
(tests/test_mutation_baselines.py::test_an_exact_target_records_zero_errors_in_its_baseline failed
the same way with numpy 2.4)."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from onnx2trt_check import baseline_schema
from onnx2trt_check.compare import cosine_similarity

ROUNDS_ABOVE_ONE = np.array([0.5436249914654229, 0.9350724237877682, 0.8158535541215322, 0.002738500170148095])


def test_identical_outputs_measure_a_cosine_the_baseline_accepts():
    cosine = cosine_similarity(ROUNDS_ABOVE_ONE, ROUNDS_ABOVE_ONE)
    assert cosine == 1.0
    assert baseline_schema.accuracy_problem({"y": {"cosine": cosine}}) is None


@given(arrays(np.float64, st.integers(1, 16), elements=st.floats(-1e3, 1e3)), arrays(np.float64, st.integers(1, 16), elements=st.floats(-1e3, 1e3)))
def test_cosine_is_always_within_its_range(a, b):
    n = min(a.size, b.size)
    assert -1.0 <= cosine_similarity(a[:n], b[:n]) <= 1.0
    assert -1.0 <= cosine_similarity(a, a) <= 1.0
