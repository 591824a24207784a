"""compare.py verdicts that hand-made mutations showed no other test could tell apart (each test
names the mutation it kills). Expected values are worked out by hand, never by compare.py."""

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from onnx2trt_check.compare import Tolerance, compare_output, sqnr_db

FLOORS_ONLY = Tolerance(atol=None, rtol=None)


NONZERO = st.floats(0.125, 1e3, width=32) | st.floats(-1e3, -0.125, width=32)


@given(hnp.arrays(np.float32, st.integers(1, 20), elements=NONZERO))
def test_sqnr_of_any_error_on_an_all_zero_reference_is_minus_infinity(got):
    # No signal and some noise: the worst SQNR there is ("sqnr_db returns +inf when the signal is
    # 0" would pass any SQNR floor on an output the target filled with garbage).
    assert sqnr_db(np.zeros(got.shape), got.astype(np.float64)) == -math.inf
    stats = compare_output("y", [np.zeros_like(got)], [got], FLOORS_ONLY.merged(min_sqnr_db=20.0))
    assert not stats.passed and stats.problems[0].startswith("SQNR")


@given(hnp.arrays(np.float32, st.integers(1, 20), elements=NONZERO))
def test_an_output_against_an_all_zero_reference_has_cosine_zero_and_fails_the_floor(got):
    # Only two all-zero vectors point the same way; a zero reference against a nonzero target is
    # no agreement, and must not pass a cosine floor as "1.0".
    stats = compare_output("y", [np.zeros_like(got)], [got], FLOORS_ONLY.merged(min_cosine=0.99))
    assert stats.cosine == 0.0 and not stats.passed


def test_a_nan_cosine_fails_the_cosine_floor():
    # As many NaN in the target as in the reference, but at another place: the "more NaN/Inf" rule
    # stays quiet and the cosine is NaN (unbounded error). "cosine < floor" is False for NaN;
    # only "not cosine >= floor" fails it.
    ref = np.array([[np.nan, 1.0, 2.0]], np.float32)
    got = np.array([[1.0, np.nan, 2.0]], np.float32)
    stats = compare_output("y", [ref], [got], FLOORS_ONLY.merged(min_cosine=0.9))
    assert math.isnan(stats.cosine)
    assert not stats.passed and any(p.startswith("cosine") for p in stats.problems)


@given(st.floats(1e-3, 1e3), st.integers(1, 10))
def test_max_rel_of_an_error_where_the_reference_is_zero_is_infinite(error, size):
    ref = np.zeros(size, np.float32)
    got = ref.copy()
    got[-1] = error
    assert compare_output("y", [ref], [got], Tolerance()).max_rel == math.inf


@given(rows=st.integers(2, 3000), data=st.data())
def test_the_disagreement_count_under_a_top1_floor_is_exact(rows, data):
    # A floor of 0.999999 allows exactly one disagreement below a million rows, so k rows off must
    # fail with "k of rows disagree" for every k >= 2: truncating (1 - top1) * rows, a float,
    # instead of rounding it loses a row ((1 - 8/10) * 10 is 1.9999999999999996).
    disagree = data.draw(st.integers(0, rows))
    ref = np.zeros((rows, 2), np.float32)
    ref[:, 0] = 1.0  # class 0 wins every row
    got = ref.copy()
    got[:disagree, 1] = 2.0  # class 1 wins the first `disagree` rows
    stats = compare_output("y", [ref], [got], FLOORS_ONLY.merged(min_top1=0.999999))
    assert stats.passed == (disagree <= 1)
    if disagree > 1:
        assert f"({disagree} of {rows} rows disagree beyond a near-tie" in stats.problems[0]


@given(st.integers(1, 40), st.data())
def test_a_nan_in_the_target_is_a_counted_mismatch(size, data):
    # Kills "NaN in the target counts as close": the verdict would still fail on the NaN count,
    # but the message's "k of n elements (p%)" would hide the element.
    ref = np.ones(size, np.float32)
    got = ref.copy()
    got[data.draw(st.integers(0, size - 1))] = np.nan
    stats = compare_output("y", [ref], [got], Tolerance())
    assert stats.mismatches == 1 and stats.mismatch_percent == 100.0 / size
    assert f"1 of {size} elements" in stats.problems[0]


@given(hnp.arrays(np.float32, st.integers(2, 30), elements=st.floats(-100, 100, width=32)), st.data())
def test_max_abs_is_the_worst_element_not_the_mean(ref, data):
    # Baselines gate on max_abs: one element off by 50 among many exact ones is max abs 50.
    got = ref.copy()
    got[data.draw(st.integers(0, ref.size - 1))] += np.float32(50.0)
    stats = compare_output("y", [ref], [got], Tolerance())
    assert stats.max_abs == max(abs(float(g) - float(r)) for g, r in zip(got, ref))


def test_a_target_with_fewer_results_than_feeds_fails_without_a_crash():
    stats = compare_output("y", [np.ones(3, np.float32)] * 2, [np.ones(3, np.float32)], Tolerance())
    assert not stats.passed and stats.problems == ["1 results for 2 reference feeds"]
