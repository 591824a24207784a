"""review17: shape_probe._counters takes an integer input for a position counter only where every row's
last steps are 0 or 1; no test failed with that condition removed. Token ids one of whose rows happens
to end counting up (3, 4, 5, 6) are not positions: they repeat their last token, and the probe names
no position input."""

import numpy as np
import onnx.parser

from onnx2trt_check.shape_probe import other_size

MODEL = onnx.parser.parse_model("""<ir_version: 8, opset_import: ["": 18]>
g (int64[N,S] input_ids) => (float[N,S] y) {
  y = Cast<to = 1>(input_ids)
}""")


def test_token_ids_that_end_counting_on_one_row_are_no_counter():
    ids = np.array([[5, 9, 2, 7], [3, 4, 5, 6]])
    probe = other_size(MODEL, [{"input_ids": ids}], grow=True)
    assert probe.feeds[0]["input_ids"].tolist() == [[5, 9, 2, 7, 7, 7], [3, 4, 5, 6, 6, 6]]
    assert probe.counted == () and "position input" not in probe.describe()


def test_positions_count_on():
    ids = np.array([[0, 1, 2, 3], [0, 1, 2, 2]])
    probe = other_size(MODEL, [{"input_ids": ids}], grow=True)
    assert probe.feeds[0]["input_ids"].tolist() == [[0, 1, 2, 3, 4, 5], [0, 1, 2, 2, 2, 2]]
    assert probe.counted == ("input_ids",)
