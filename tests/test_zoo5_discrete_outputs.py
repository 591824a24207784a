"""Fifth foreign-model pass: int8 judged an integer label output (ArgMax, TopK indices, an argmax
mask, a bool decision) by SQNR and cosine only, figures of class numbers that say nothing about how
many decisions changed: 4 of 20 labels moved by one (80% agreement) passed at 46 dB, where a
class-score output under the same int8 floor allows one disagreement in 20. A discrete output is
now held to the top-1 floor as the share of its elements that agree."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from onnx2trt_check.compare import allowed_disagreements, compare_output
from onnx2trt_check.config import PRECISION_PROFILES

INT8 = PRECISION_PROFILES["int8"]


def labels(changed: int, rows: int = 20, dtype=np.int64):
    reference = [np.array([90 + i % 10], dtype) for i in range(rows)]
    target = [r + 1 if i < changed else r.copy() for i, r in enumerate(reference)]
    return reference, target


def test_int8_fails_labels_of_which_a_fifth_changed():
    stats = compare_output("label", *labels(4), INT8)
    assert stats.sqnr_db > INT8.min_sqnr_db and stats.cosine > INT8.min_cosine  # the floors that passed it
    assert not stats.passed
    assert "top-1 agreement 80.000% below the floor 95.000% (4 of 20 elements differ" in stats.problems[0]


def test_int8_passes_labels_with_one_near_tie_in_twenty():
    assert compare_output("label", *labels(1), INT8).passed


@given(rows=st.integers(1, 60), changed=st.integers(0, 60), boolean=st.booleans())
def test_a_discrete_output_fails_int8_exactly_when_more_elements_differ_than_the_floor_allows(rows, changed, boolean):
    changed = min(changed, rows)
    reference = [np.array([i % 2 == 0], bool) if boolean else np.array([7 + i % 3]) for i in range(rows)]
    target = [np.logical_not(r) if boolean and i < changed else (r + 1 if i < changed else r.copy()) for i, r in enumerate(reference)]
    stats = compare_output("out", reference, target, INT8.merged(min_cosine=-1.0, min_sqnr_db=-np.inf))
    assert stats.top1 == pytest.approx(1 - changed / rows)
    assert stats.passed == (changed <= allowed_disagreements(INT8.min_top1, rows, alone=True))


def test_a_float_output_keeps_no_agreement_figure_unless_it_is_class_scores():
    ref = [np.array([0.5, 1.5, 2.5], np.float32)]
    assert compare_output("boxes", ref, ref, INT8).top1 is None
