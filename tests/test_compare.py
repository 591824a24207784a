"""Accuracy metrics and verdicts (compare.py): properties that hold for any data."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from onnx2trt_check.compare import (
    Tolerance,
    allowed_disagreements,
    compare_output,
    cosine_similarity,
    needed_tolerances,
    sqnr_db,
    top_k_agreement,
)

finite_floats = st.floats(-1e3, 1e3, allow_nan=False, width=32)
arrays = hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=6), elements=finite_floats)


@given(arrays)
def test_identical_outputs_are_exact(ref):
    stats = compare_output("y", [ref], [ref.copy()], Tolerance(atol=0.0, rtol=0.0))
    assert stats.passed and stats.max_abs == 0.0 and stats.mismatches == 0
    assert stats.sqnr_db == math.inf


@given(arrays, st.floats(1e-3, 10.0))
def test_sqnr_of_scaled_copy_matches_formula(ref, factor):
    """got = ref * (1 + f) has noise f^2 * signal, so SQNR = -20 log10(f) whenever ref is not all 0."""
    ref = ref.astype(np.float64)
    if not np.any(ref):
        return
    assert sqnr_db(ref, ref * (1 + factor)) == pytest.approx(-20 * math.log10(factor), abs=1e-6)


@given(arrays, arrays)
def test_cosine_is_bounded_and_symmetric(a, b):
    a, b = a.ravel().astype(np.float64), np.resize(b, a.shape).ravel().astype(np.float64)
    c = cosine_similarity(a, b)
    assert -1.0 <= c <= 1.0  # exactly: a baseline refuses a cosine outside [-1, 1]
    assert cosine_similarity(a, a.copy()) == 1.0
    assert c == pytest.approx(cosine_similarity(b, a), abs=1e-12)


@given(arrays, st.data())
def test_needed_tolerances_pass_and_are_tight(ref, data):
    ref = ref.astype(np.float64)
    noise = data.draw(hnp.arrays(np.float64, ref.shape, elements=st.floats(-1.0, 1.0)))
    got = ref + noise
    rtol = data.draw(st.sampled_from([0.0, 1e-4, 1e-2]))
    need_atol, need_rtol = needed_tolerances(ref, got, atol=1e-6, rtol=rtol)
    assert np.all(np.abs(got - ref) <= need_atol + rtol * np.abs(ref) + 1e-12)
    if need_atol > 1e-9:  # anything visibly smaller fails somewhere
        assert not np.all(np.abs(got - ref) <= 0.99 * need_atol + rtol * np.abs(ref))
    if math.isfinite(need_rtol):
        assert np.all(np.abs(got - ref) <= 1e-6 + need_rtol * np.abs(ref) * (1 + 1e-9) + 1e-15)


@given(arrays, st.integers(0, 10_000))
def test_mismatch_count_and_location(ref, position):
    got = ref.copy()
    flat = position % ref.size
    got.reshape(-1)[flat] += np.float32(1.0 + abs(float(ref.reshape(-1)[flat])))  # far outside 1e-4
    stats = compare_output("y", [ref, ref], [ref, got], Tolerance())
    assert stats.mismatches == 1 and not stats.passed
    mismatch = stats.first_mismatches[0]
    assert mismatch.feed == 1
    assert mismatch.index == tuple(int(i) for i in np.unravel_index(flat, ref.shape))


def test_nan_in_target_fails_even_without_elementwise_tolerance():
    ref = np.ones((2, 3), np.float32)
    got = ref.copy()
    got[1, 2] = np.nan
    stats = compare_output("y", [ref], [got], Tolerance(atol=None, rtol=None))
    assert not stats.passed and stats.target_nonfinite == 1
    assert "NaN/Inf" in stats.problems[0]
    assert stats.max_abs == math.inf and stats.sqnr_db == -math.inf  # not "0 error over the finite rest"


def test_floors_fail_with_their_figures():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(4, 100))
    got = ref + rng.normal(scale=0.1, size=ref.shape)  # about 20 dB
    stats = compare_output("y", [ref], [got], Tolerance(atol=None, rtol=None, min_sqnr_db=30.0, min_cosine=0.9999))
    assert [p.split()[0] for p in stats.problems] == ["cosine", "SQNR"]
    assert 17 < stats.sqnr_db < 23


def test_shape_mismatch_is_a_problem_not_a_crash():
    stats = compare_output("y", [np.zeros((2, 3))], [np.zeros((3, 2))], Tolerance())
    assert not stats.passed and "shape" in stats.problems[0]


@given(st.integers(1, 20), st.integers(2, 12), st.integers(0, 2**31 - 1))
def test_top1_agreement_counts_rows_whose_argmax_matches(rows, classes, seed):
    rng = np.random.default_rng(seed)
    ref = rng.normal(size=(rows, classes)).astype(np.float32)
    got = ref.copy()
    flipped = rng.random(rows) < 0.5
    got[flipped, ref[flipped].argmax(axis=1)] = -100.0  # the best class drops to last in those rows
    top1, top5 = top_k_agreement([ref], [got])
    assert top1 == pytest.approx(1.0 - flipped.mean())
    assert top5 is None if classes <= 5 else top5 == pytest.approx(1.0 - flipped.mean())


def test_top_k_only_for_class_score_outputs():
    assert top_k_agreement([np.zeros((1, 3, 8, 8), np.float32)], [np.zeros((1, 3, 8, 8), np.float32)]) == (None, None)


@given(floor=st.floats(0.5, 0.999), rows=st.integers(1, 5000))
def test_the_top1_floor_is_a_rate_except_that_one_disagreement_is_always_allowed(floor, rows):
    allowed = allowed_disagreements(floor, rows)
    assert allowed >= 1
    if allowed > 1:  # enough rows: the floor holds as a rate
        assert (rows - allowed) / rows >= floor - 1e-9
        assert (rows - allowed - 1) / rows < floor
    assert allowed_disagreements(1.0, rows) == 0


def test_one_near_tie_in_sixteen_rows_passes_the_int8_top1_floor_two_do_not():
    rng = np.random.default_rng(0)
    reference = [rng.normal(size=(1, 10)).astype(np.float32) for _ in range(16)]
    tolerance = Tolerance(atol=np.inf, rtol=np.inf, min_top1=0.95)

    def flipped(count):
        target = [r.copy() for r in reference]
        for r in target[:count]:
            r[0, (r.argmax() + 1) % 10] = r.max() + 1
        return target

    assert compare_output("y", reference, flipped(1), tolerance).passed
    two = compare_output("y", reference, flipped(2), tolerance)
    assert not two.passed and "2 of 16 rows disagree" in two.problems[0]


# Near-ties (compare._near_ties): a flip where the reference's own top-1 margin is within the noise
# the SQNR floor allows on that row is not counted against the top-1 floor. Hand-computed rows:
# [10, 9.99, 0, 0] has RMS sqrt(199.8 / 4) = 7.07; at a 20 dB floor the allowance is
# sqrt(2) x 7.07 x 0.1 = 1.0, so its margin 0.01 is a near-tie; [10, 8, 0, 0] (RMS 6.40, allowance
# 0.905) has margin 2: a real disagreement.
NEAR = np.array([[10.0, 9.99, 0.0, 0.0]], np.float32)
CLEAR = np.array([[10.0, 8.0, 0.0, 0.0]], np.float32)
INT8_LIKE = Tolerance(atol=None, rtol=None, min_sqnr_db=20.0, min_top1=0.95)


def _swap_top_two(row):
    swapped = row.copy()
    swapped[0, [0, 1]] = swapped[0, [1, 0]]
    return swapped


def test_two_near_tie_flips_pass_the_top1_floor_two_clear_ones_fail():
    rows = [NEAR] * 2 + [CLEAR * (1 + i / 100) for i in range(14)]
    near = compare_output("y", rows, [_swap_top_two(r) for r in rows[:2]] + rows[2:], INT8_LIKE)
    assert near.near_ties == 2 and not any("top-1" in p for p in near.problems)
    assert near.near_tie_margins == pytest.approx([0.01, 0.01], abs=1e-5) and near.counted_margins == []
    clear = compare_output("y", rows, rows[:2] + [_swap_top_two(r) for r in rows[2:4]] + rows[4:], INT8_LIKE)
    assert clear.near_ties == 0
    problem = next(p for p in clear.problems if "top-1" in p)
    assert "2 of 16 rows disagree beyond a near-tie" in problem and "margin there: 2, 2.02" in problem


def test_without_an_sqnr_floor_every_flip_counts():
    rows = [NEAR] * 2 + [CLEAR] * 14
    stats = compare_output("y", rows, [_swap_top_two(r) for r in rows[:2]] + rows[2:], Tolerance(atol=None, rtol=None, min_top1=0.95))
    assert stats.near_ties == 0 and any("2 of 16 rows disagree" in p for p in stats.problems)


@given(st.integers(2, 12), st.floats(0.0, 40.0), st.floats(1e-3, 10.0), st.integers(0, 2**31 - 1))
def test_a_flip_is_a_near_tie_exactly_when_the_margin_is_within_the_floor_allowance(classes, floor_db, margin, seed):
    rng = np.random.default_rng(seed)
    row = rng.normal(size=(1, classes))
    row[0, 0] = row.max() + margin + 1.0  # class 0 wins by at least `margin`...
    row[0, 1] = row[0, 0] - margin        # ...over class 1, by exactly `margin`
    target = row.copy()
    target[0, 1] = row[0, 0] + 1.0        # the target picks class 1
    stats = compare_output("y", [row], [target], Tolerance(atol=None, rtol=None, min_sqnr_db=floor_db, min_top1=0.95))
    allowance = math.sqrt(2.0) * math.sqrt(float(np.mean(row**2))) * 10 ** (-floor_db / 20)
    if abs(margin - allowance) > 1e-9 * allowance:
        assert stats.near_ties == (margin < allowance)
    assert stats.near_ties + len(stats.counted_margins) == 1  # every disagreement is one or the other


def test_the_summary_row_says_when_near_ties_were_not_counted():
    from onnx2trt_check.report import accuracy_figures

    rows = [NEAR] * 2 + [CLEAR] * 14
    stats = compare_output("y", rows, [_swap_top_two(r) for r in rows[:2]] + rows[2:], INT8_LIKE)
    text = accuracy_figures({"engine": "onnxruntime", "outputs": {"y": stats.figures()}})
    assert text.endswith("top-1 87.5% (2 near-tie row(s) not counted against the floor)")
