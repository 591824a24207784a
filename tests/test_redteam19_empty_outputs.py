"""redteam19: an output with no element on any feed (Slice to [1, 0]; an NMS that selects nothing on
random inputs) passed every target at 'max abs 0, min SQNR inf dB': agreement over nothing. It fails,
as an output with no finite reference value does; one empty on some feeds only is compared on the rest."""

import numpy as np
import pytest

from onnx2trt_check.compare import compare_output
from onnx2trt_check.config import PRECISION_PROFILES


@pytest.mark.parametrize("profile", ["fp32", "fp16", "int8"])
@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_an_output_empty_on_every_feed_compares_nothing_and_fails(profile, dtype):
    empty = [np.zeros((1, 0), dtype) for _ in range(4)]
    stats = compare_output("y", empty, empty, PRECISION_PROFILES[profile])
    assert not stats.passed and "empty on every feed" in stats.problems[0]


def test_an_output_empty_on_some_feeds_is_compared_on_the_others():
    rng = np.random.default_rng(0)
    reference = [np.zeros((0, 4), np.float32), rng.normal(size=(3, 4)).astype(np.float32)]
    assert compare_output("boxes", reference, reference, PRECISION_PROFILES["fp32"]).passed
    assert not compare_output("boxes", reference, [r * 2 for r in reference], PRECISION_PROFILES["fp32"]).passed
