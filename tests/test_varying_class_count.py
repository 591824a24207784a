"""An output read as class scores [N, C] whose C differs between feeds: a QA model's start_logits
[1, S] over a data loader's sequences of different lengths. Top-1 agreement and its near-ties
concatenated the feeds' rows and raised on 4 and 7 columns; each feed's rows are taken on their own."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from onnx2trt_check.agreement import top_k_agreement
from onnx2trt_check.compare import compare_output
from onnx2trt_check.config import PRECISION_PROFILES


@given(st.lists(st.integers(2, 9), min_size=2, max_size=5), st.integers(0, 2**16))
def test_top1_over_feeds_of_different_class_counts_counts_each_row_once(widths, seed):
    rng = np.random.default_rng(seed)
    reference = [rng.normal(size=(2, w)) for w in widths]
    target = [r.copy() for r in reference]
    flipped = rng.random(len(widths)) < 0.5
    for r, t, flip in zip(reference, target, flipped):
        if flip:
            t[0, r[0].argmax()] = -100.0  # row 0's best class drops to last
    top1, _ = top_k_agreement(reference, target)
    assert top1 == pytest.approx(1 - flipped.sum() / (2 * len(widths)))


@pytest.mark.parametrize("profile", ["fp32", "fp16", "int8"])
def test_start_logits_of_sequences_of_different_lengths_are_compared(profile):
    rng = np.random.default_rng(0)
    reference = [rng.normal(size=(1, s)).astype(np.float32) for s in (12, 19, 12, 30)]
    assert compare_output("start_logits", reference, reference, PRECISION_PROFILES[profile]).passed
    reversed_ = compare_output("start_logits", reference, [r[:, ::-1].copy() for r in reference], PRECISION_PROFILES[profile])
    assert not reversed_.passed and reversed_.top1 is not None and reversed_.top1 < 1
