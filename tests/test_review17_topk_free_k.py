"""review17: a TopK's indices are compared as the set each row selects (agreement.selection_agreement),
over all feeds joined into one array of rows: a k that depends on the data (min(100, candidates)) gave
feeds of 5 and 3 indices and crashed with numpy's concatenation error, and k = 0 (no candidate) with a
reshape error, in fp32, fp16 and int8 alike."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from onnx2trt_check.agreement import selection_agreement
from onnx2trt_check.compare import compare_output
from onnx2trt_check.config import PRECISION_PROFILES
from onnx2trt_check.output_layout import OutputLayout

FEEDS = [np.array([[4, 1, 7, 0, 2]]), np.array([[3, 0, 1]]), np.zeros((1, 0), np.int64)]


@pytest.mark.parametrize("profile", ["fp32", "fp16", "int8"])
def test_feeds_of_other_k_are_compared(profile):
    same = compare_output("i", FEEDS, [f[:, ::-1].copy() for f in FEEDS], PRECISION_PROFILES[profile], OutputLayout(topk_axis=-1))
    assert same.passed and same.top1 == 1.0
    other = [f.copy() for f in FEEDS]
    other[1][0, 2] = 9
    changed = compare_output("i", FEEDS, other, PRECISION_PROFILES[profile], OutputLayout(topk_axis=-1))
    assert changed.top1 == pytest.approx(7 / 8)


def test_no_selection_has_no_agreement():
    assert selection_agreement([np.zeros((2, 0), np.int64)], [np.zeros((2, 0), np.int64)], 1) is None


@given(st.integers(0, 2**32 - 1), st.integers(1, 6), st.integers(1, 8), st.integers(0, 2))
def test_the_share_of_items_each_row_keeps(seed, rows, k, axis):
    rng = np.random.default_rng(seed)
    reference = np.stack([rng.permutation(20)[:k] for _ in range(rows)])
    target = np.where(rng.random(reference.shape) < 0.3, 20 + rng.integers(0, 3, reference.shape), reference)  # items never selected
    expected = sum(np.intersect1d(r, t).size for r, t in zip(reference, target)) / reference.size
    moved = [np.moveaxis(a[:, None, :], -1, axis) for a in (reference, target)]  # k along `axis`, rows along another
    assert selection_agreement([moved[0]], [moved[1]], axis) == pytest.approx(expected)
