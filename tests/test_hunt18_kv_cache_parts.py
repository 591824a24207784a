"""hunt18: a KV cache's present = Concat(past, new) with the past length free was judged whole (the
parts' sizes were unknown to shape inference), so an int8 model whose new token's key was halved
passed at 23.7 dB, its part alone at 6 dB. A part whose size a graph input's free dimension names
now takes the size every feed gives it."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnx2trt_check import api
from onnx2trt_check.output_layout import OutputLayout, Segments, output_layouts


def _kv_model(factor: float, quantized: bool) -> onnx.ModelProto:
    """present [N, P + S, 4] = Concat(past, factor * x @ W) along axis 1, P and S free."""
    w = np.random.default_rng(1).normal(size=(4, 4)).astype(np.float32)
    inits = [numpy_helper.from_array(w * np.float32(factor), "w")]
    nodes, x = [], "x"
    if quantized:
        inits += [numpy_helper.from_array(np.array(0.02, np.float32), "s"), numpy_helper.from_array(np.array(0, np.int8), "z")]
        nodes += [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]), helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"])]
        x = "xd"
    nodes += [helper.make_node("MatMul", [x, "w"], ["new"]), helper.make_node("Concat", ["past", "new"], ["present"], axis=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("past", TensorProto.FLOAT, ["N", "P", 4]),
                                           helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "S", 4])],
                              [helper.make_tensor_value_info("present", TensorProto.FLOAT, ["N", "P_plus_S", 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_the_feeds_size_a_free_part():
    feeds = [{"past": np.zeros((1, 6, 4), np.float32), "x": np.zeros((1, 2, 4), np.float32)}] * 3
    free = {"present": OutputLayout(Segments(1, (("past", None), ("new", 2))))}  # the rest of each feed's output (review17)
    assert output_layouts(_kv_model(1.0, False)) == {}  # P and S free: two parts of no size
    assert output_layouts(_kv_model(1.0, False), feeds) == {"present": OutputLayout(Segments(1, (("past", 6), ("new", 2))))}
    other = [*feeds, {"past": np.zeros((1, 7, 4), np.float32), "x": np.zeros((1, 2, 4), np.float32)}]
    assert output_layouts(_kv_model(1.0, False), other) == free  # feeds of two past lengths: no one size


def test_a_halved_new_key_beside_a_large_past_fails_parity(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", past=rng.normal(0, 30, size=(8, 1, 12, 4)).astype(np.float32),
             x=rng.normal(size=(8, 1, 1, 4)).astype(np.float32))
    onnx.save(_kv_model(1.0, False), tmp_path / "original.onnx")
    for factor, outcome in ((0.5, "failed"), (1.0, "passed")):
        onnx.save(_kv_model(factor, True), tmp_path / "int8.onnx")
        result = api.check(str(tmp_path / "int8.onnx"), pytest_args=[f"--reference-model={tmp_path / 'original.onnx'}", f"--inputs={tmp_path / 'data.npz'}",
                                                                     "-k", "derived and parity", "-p", "no:cacheprovider", "-q"])
        parity = next(iter(result.report["models"].values()))["families"]["derived"]["checks"]["parity"]
        assert parity["outcome"] == outcome, (factor, parity.get("message"))
        assert factor == 1.0 or "SQNR of the part 'new'" in parity["message"]
