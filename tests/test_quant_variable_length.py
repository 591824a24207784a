"""Calibration feeds of several sequence lengths (what an NLP calibration set is): the automatic
calibration's per-tensor trials typed each suffix's inputs from the first feed's values, and ONNX
Runtime refused every other feed ("Got invalid dimensions ... Got: 9 Expected: 26"): `quantize` of
a GPT-2 ended in a traceback. The dims that differ between feeds are now free."""

import contextlib
import io

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnx2trt_check.quant.pipeline import Int8Settings, quantize_for_tensorrt
from onnx2trt_check.quant.probe import _value_info
from onnx2trt_check.runtime import run_model


def _sequence_model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w1, w2 = (numpy_helper.from_array(rng.standard_normal((8, 8)).astype(np.float32), n) for n in ("w1", "w2"))
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["m"]), helper.make_node("Softmax", ["m"], ["y"], axis=-1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, "seq", 8])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, "seq", 8])], [w1, w2])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_auto_calibration_takes_feeds_of_several_lengths():
    rng = np.random.default_rng(1)
    feeds = [{"x": rng.standard_normal((1, int(n), 8)).astype(np.float32)} for n in rng.integers(3, 30, 24)]
    model = _sequence_model()
    with contextlib.redirect_stderr(io.StringIO()):
        build = quantize_for_tensorrt(model, feeds, Int8Settings())
    assert build.report.selection["held_out"]
    for feed in feeds[:3]:  # the written model runs every length too
        got, want = run_model(build.model, [feed])[0]["y"], run_model(model, [feed])[0]["y"]
        assert got.shape == want.shape and np.abs(got - want).max() < 0.1


def test_a_dim_the_feeds_disagree_on_is_left_free_and_shared_dims_are_kept():
    info = _value_info("v", [np.zeros((1, 5, 8), np.float32), np.zeros((1, 9, 8), np.float32)])
    dims = info.type.tensor_type.shape.dim
    assert [d.dim_value if d.HasField("dim_value") else None for d in dims] == [1, None, 8]
    assert not _value_info("v", [np.zeros((2,)), np.zeros((2, 2))]).type.tensor_type.HasField("shape")
