"""Second foreign-model pass, finding 3: an output whose shape depends on the data (NonZero over a
threshold) came back with another shape from cpu-fp16-emu (fp16 rounding moved a value onto the
threshold). The item failed rightly, but its summary row read `max abs 0, min SQNR inf dB`: the
shape-mismatched output's NaN figures were dropped by Python's min/max, so the row claimed a
perfect result on the FAILED line. NaN now wins, and the row names the mismatched output."""

import math

import numpy as np

from onnx2trt_check.compare import Tolerance, compare_output
from onnx2trt_check.report import accuracy_figures


def test_a_shape_mismatch_is_not_summarised_as_a_perfect_result():
    exact = compare_output("vals", [np.ones((1, 5), np.float32)], [np.ones((1, 5), np.float32)], Tolerance(atol=1e-4, rtol=1e-4))
    moved = compare_output("nz", [np.zeros((2, 11), np.int64)], [np.zeros((2, 5), np.int64)], Tolerance(atol=1e-4, rtol=1e-4))
    assert not moved.passed and math.isnan(moved.sqnr_db)
    for order in ((exact, moved), (moved, exact)):
        row = accuracy_figures({"engine": "onnxruntime", "outputs": {s.name: s.figures() for s in order}})
        assert "SQNR inf" not in row and "max abs 0," not in row, row
        assert "shape differs: 'nz'" in row, row
