"""runtime.py: sessions from in-memory models hand large weights to ORT without serializing them."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

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


@pytest.mark.parametrize("numpy_backed", [False, True])
def test_sessions_from_onnx_ir_models_equal_sessions_from_protos_and_leave_the_model_alone(numpy_backed):
    import onnx_ir as ir

    model = _matmul_model(np.float32)
    feed = {"x": np.random.default_rng(1).normal(size=(2, 256)).astype(np.float32)}
    expected = run_model(model, [feed])[0]["y"]
    work = ir.from_proto(model)
    weight = work.graph.initializers["w"]
    if numpy_backed:  # as a transform leaves a weight it rewrote
        weight.const_value = ir.tensor(weight.const_value.numpy().copy(), name="w")
    session = create_session(work, optimized=False)
    assert len(session._onnx2trt_check_weights) == 1
    np.testing.assert_array_equal(run_feeds(session, [feed])[0]["y"], expected)
    assert not isinstance(weight.const_value, ir.ExternalTensor)  # the stub went into a clone only
    np.testing.assert_array_equal(run_model(ir.to_proto(work), [feed])[0]["y"], expected)


def test_an_initializer_that_is_also_an_input_stays_overridable():
    model = _matmul_model(np.float32, as_input=True)
    feed = {"x": np.ones((2, 256), np.float32), "w": np.zeros((256, 160), np.float32)}
    assert not np.any(run_model(model, [feed])[0]["y"])


def test_qdq_runs_as_written_whatever_the_cpu():
    """Activations near 127 times int8 weights near 127: the pair sums that ORT's fused u8s8 kernels
    saturate on x86 CPUs with AVX2 but no VNNI. The result must be the QDQ model's own arithmetic,
    computed here in float64 from the integers."""
    rng = np.random.default_rng(0)
    weight = rng.integers(-127, 128, size=(4, 8)).astype(np.int8)
    x_scale, w_scale = np.float32(1 / 127), np.float32(0.05)
    inits = [numpy_helper.from_array(weight, "w_q"), numpy_helper.from_array(np.array(w_scale), "w_s"),
             numpy_helper.from_array(np.array(x_scale), "x_s"), numpy_helper.from_array(np.array(0, np.int8), "zp")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "x_s", "zp"], ["xq"]), helper.make_node("DequantizeLinear", ["xq", "x_s", "zp"], ["xd"]),
             helper.make_node("DequantizeLinear", ["w_q", "w_s", "zp"], ["w"]), helper.make_node("MatMul", ["xd", "w"], ["y"])]
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    x = rng.uniform(0.75, 1.0, size=(1, 4)).astype(np.float32)
    quantized = np.clip(np.round(x.astype(np.float64) / float(x_scale)), -128, 127)
    expected = (quantized @ weight.astype(np.float64)) * float(x_scale) * float(w_scale)
    for optimized in (False, True):
        (got,) = run_model(model, [{"x": x}], optimized=optimized)
        np.testing.assert_allclose(got["y"], expected, rtol=1e-5, atol=1e-5)


def test_outputs_own_their_memory_so_they_do_not_keep_the_sessions_arena_alive():
    # ORT's arrays are views into its CPU arena; one kept view keeps every activation buffer of the
    # run alive after the session is gone (the reference outputs are kept for the whole run).
    model = _matmul_model(np.float32)
    feed = {"x": np.ones((2, 256), np.float32)}
    for outputs in (run_feeds(create_session(model, optimized=False), [feed]), run_model(model, [feed])):
        assert outputs[0]["y"].flags.owndata and outputs[0]["y"].base is None
