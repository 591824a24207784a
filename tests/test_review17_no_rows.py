"""review17: class scores of no rows ([0, 80]: a detector's scores gathered for no detection, on every
feed) gave top-1 agreement NaN, and the top-1 floor of fp16 and int8 crashed on it with 'cannot
convert float NaN to integer'. No rows: no top-1 figure."""

import numpy as np
import pytest

from onnx2trt_check.agreement import top_k_agreement
from onnx2trt_check.compare import compare_output
from onnx2trt_check.config import PRECISION_PROFILES


@pytest.mark.parametrize("profile", ["fp32", "fp16", "int8"])
def test_class_scores_of_no_rows_are_compared(profile):
    empty = [np.zeros((0, 80), np.float32)] * 2
    stats = compare_output("scores", empty, [e.copy() for e in empty], PRECISION_PROFILES[profile])
    assert stats.top1 is None and stats.rows == 0


def test_no_rows_no_top1():
    assert top_k_agreement([np.zeros((0, 10))], [np.zeros((0, 10))]) == (None, None)
