"""review17: an atol >= 1 set on an integer output counts elements within it as agreeing (hunt17), but the
target was replaced by the reference there before any figure: every label moved by one read 'max abs 0,
mean abs 0, SQNR inf dB, top-1 agreement 100%'. The agreement counts them; the figures are the target's."""

import numpy as np
import pytest

from onnx2trt_check.compare import Tolerance, compare_output, format_stats
from onnx2trt_check.config import PRECISION_PROFILES


@pytest.mark.parametrize("profile", ["fp16", "int8"])
def test_figures_show_the_moved_elements(profile):
    reference = [np.array([[i % 10]]) for i in range(64)]
    tolerance = PRECISION_PROFILES[profile].merged(atol=2.0)
    stats = compare_output("coords", reference, [r + 1 for r in reference], tolerance)
    assert stats.passed and stats.top1 == 1.0
    assert stats.max_abs == 1.0 and stats.mean_abs == 1.0 and "max abs 1" in format_stats(stats, tolerance)


def test_beyond_the_atol_still_fails():
    reference = [np.array([[i % 10]]) for i in range(64)]
    stats = compare_output("coords", reference, [r + 3 for r in reference], Tolerance(atol=2.0, rtol=None, min_top1=0.95))
    assert not stats.passed and stats.top1 == 0.0
