"""Transform decisions (transforms/verify.py, fuse_input_normalization.py) that hand-made mutations showed no
other test could tell apart; each test names the mutation it kills. Expected values come from the
rule as documented, never from the function under test."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.helper as oh
import onnx.parser
from hypothesis import given
from hypothesis import strategies as st

from onnx2trt_check.transforms.fuse_input_normalization import fuse_input_normalization
from onnx2trt_check.transforms.verify import half_compute_dtype


def _weights_model(half_sizes: list[int], full_sizes: list[int]) -> onnx.ModelProto:
    tensors = [oh.make_tensor(f"h{i}", onnx.TensorProto.FLOAT16, [n], np.zeros(n, np.float16).view(np.uint16).tolist())
               for i, n in enumerate(half_sizes)]
    tensors += [oh.make_tensor(f"f{i}", onnx.TensorProto.FLOAT, [n], [0.0] * n) for i, n in enumerate(full_sizes)]
    return oh.make_model(oh.make_graph([], "g", [], [], initializer=tensors))


@given(st.lists(st.integers(1, 40), min_size=1, max_size=4), st.lists(st.integers(1, 40), min_size=1, max_size=4))
def test_half_compute_when_at_least_half_of_the_weight_elements_are_half(half_sizes, full_sizes):
    # "at least half of the float weights' elements are half": an even split is half compute.
    # Kills "half > full" (a tie read as fp32, so an fp16 model's rewrites were held to fp32's eps).
    expected = np.float16 if sum(half_sizes) >= sum(full_sizes) else None
    assert half_compute_dtype(_weights_model(half_sizes, full_sizes)) is expected


def test_an_even_split_of_half_and_full_weights_is_half_compute():
    assert half_compute_dtype(_weights_model([6], [2, 4])) is np.float16


BATCH_VARYING_MEAN = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1, 2, 4, 4] x) => (float[2, 1, 4, 4] y)
<float[1, 2, 1, 1] w = {1.0, 2.0}, float[2, 1, 1, 1] mean = {0.5, 0.25}> {
  n = Sub(x, mean)
  y = Conv(n, w)
}"""


def test_a_normalization_constant_that_varies_along_the_batch_axis_is_not_per_channel():
    # mean [2, 1, 1, 1] subtracts per batch row (and broadcasts the batch to 2), not per channel.
    # Kills "only axes 2+ must be 1": its two values were read as the two channels' means.
    model = onnx.parser.parse_model(BATCH_VARYING_MEAN)
    result = fuse_input_normalization(model)
    assert not result.modified
    assert any("non-channel axis" in skip.reason for skip in result.report.skips), result.report.skips
