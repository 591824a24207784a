"""redteam14: a free dimension the data gives size 1 (a 1x1 image, a 1-token sequence) is not
varied by the size probe (it only crops, and nothing is below 1), and nothing said so: a derived
model with the data's 1x1 baked into a Reshape passed `derived::parity` with only 'also agrees at
batch 2', and `optimize` said 'also verified at batch 2' alone, as if no other free dimension
existed. Both now name the dimensions left at the data's size."""

import numpy as np
from test_size_probe import CONV_BN, IMAGE, IMAGE_HONEST, _parity, _save

from onnx2trt_check import api
from onnx2trt_check.shape_probe import unvaried

# The data's 1x1 kept: at 1x1 the nearest Resize is the identity; at any other size it is not.
IMAGE_FIXED_AT_ONE = IMAGE.format(weights=", int64[2] hw = {1, 1}",
                                  resize="q = Relu(x)\n  r = Resize<axes = [2, 3], mode = \"nearest\">(q, , , hw)")


def _ones():
    return np.random.default_rng(0).normal(size=(2, 1, 1, 1, 1)).astype(np.float32)


def test_a_derived_model_at_the_datas_size_one_names_the_dimensions_not_varied(tmp_path):
    parity = _parity(tmp_path, IMAGE_FIXED_AT_ONE, IMAGE_HONEST, _ones())
    assert "H, W" in parity["figures"]["other_shapes"] and "size 1" in parity["figures"]["other_shapes"], parity
    assert "size 1" in parity["figures"]["summary"], parity


def test_optimize_names_the_dimensions_not_varied(tmp_path):
    model = _save(tmp_path, CONV_BN, "m.onnx")
    data = tmp_path / "x.npz"
    np.savez(data, x=np.random.default_rng(0).normal(size=(2, 1, 2, 1, 3)).astype(np.float32))
    result = api.optimize(str(model), output=tmp_path / "o.onnx", inputs=str(data), passes=["fold_conv_bn"])
    assert result.passed
    assert "W 3 -> 2" in result.other_shapes and "H" in result.other_shapes.split("W 3 -> 2")[1], result.other_shapes


def test_no_note_where_no_free_dimension_is_one():
    import onnx.parser
    model = onnx.parser.parse_model(CONV_BN)
    assert unvaried(model, [{"x": np.zeros((1, 2, 4, 4), np.float32)}]) == ""
    assert unvaried(model, [{"x": np.zeros((1, 2, 1, 4), np.float32)}]).startswith("not varied: free dimension(s) H of size 1")
