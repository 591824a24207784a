"""runtime.py: sessions from in-memory models hand large weights to ORT without serializing them."""

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from onnx2trt_check.runtime import create_session, run_feeds, run_model


def _matmul_model(dtype: np.dtype, *, as_input: bool = False) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(256, 160)).astype(dtype)  # 160 kB in float32, 80 kB in float16: above the 64 kB hand-over size
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    inputs = [helper.make_tensor_value_info("x", elem, [2, 256])]
    if as_input:  # an initializer that is also an input may be overridden at run time: it must stay
        inputs.append(helper.make_tensor_value_info("w", elem, [256, 160]))
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "g", inputs, [helper.make_tensor_value_info("y", elem, [2, 160])],
        [numpy_helper.from_array(weight, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("optimized", [False, True])
def test_in_memory_sessions_equal_sessions_from_bytes(tmp_path, dtype, optimized):
    model = _matmul_model(dtype)
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    feed = {"x": np.random.default_rng(1).normal(size=(2, 256)).astype(dtype)}
    expected = run_feeds(create_session(path, optimized=optimized), [feed])[0]["y"]
    session = create_session(model, optimized=optimized)
    assert len(session._onnx2trt_check_weights) == 1  # the weight really went the in-memory way
    np.testing.assert_array_equal(run_feeds(session, [feed])[0]["y"], expected)


def test_an_initializer_that_is_also_an_input_stays_overridable():
    model = _matmul_model(np.float32, as_input=True)
    feed = {"x": np.ones((2, 256), np.float32), "w": np.zeros((256, 160), np.float32)}
    assert not np.any(run_model(model, [feed])[0]["y"])
