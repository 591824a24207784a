"""Second foreign-model pass, finding 6: a weight-only QDQ model (int4 blocked or int8 per-channel
weights as DequantizeLinear(initializer), no activation Q/DQ, as LLM weight quantizers write) passed
target[ort-int8] at `max abs 0, min SQNR inf dB`: its reference, the float counterpart, dequantizes
the same weights, so the item compared a function with itself. It now skips with the reason."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh


def weight_only(tmp_path):
    weight = np.arange(-64, 64, dtype=np.int8).reshape(16, 8)
    graph = h.make_graph(
        [h.make_node("DequantizeLinear", ["wq", "ws"], ["w"], axis=1, name="dq_w"), h.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
        "g",
        [h.make_tensor_value_info("x", T.FLOAT, [2, 16])],
        [h.make_tensor_value_info("y", T.FLOAT, [2, 8])],
        [nh.from_array(weight, "wq"), nh.from_array(np.full(8, 0.01, np.float32), "ws")],
    )
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]), tmp_path / "w.onnx")
    return tmp_path / "w.onnx"


def with_activation_qdq(tmp_path):
    model = onnx.load(weight_only(tmp_path))
    graph = model.graph
    graph.initializer.extend([nh.from_array(np.array(0.02, np.float32), "xs"), nh.from_array(np.array(0, np.int8), "xz")])
    graph.node.insert(0, h.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"], name="q_x"))
    graph.node.insert(1, h.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"], name="dq_x"))
    graph.node[3].input[0] = "xd"
    onnx.save(model, tmp_path / "a.onnx")
    return tmp_path / "a.onnx"


def _int8_item(path, capsys):
    code = pytest.main([f"--model={path}", "-p", "no:cacheprovider", "-q", "-rs", "--target", "ort-int8", "-k", "accuracy"])
    return code, capsys.readouterr().out


def test_a_weight_only_qdq_model_skips_the_int8_comparison_with_the_reason(tmp_path, capsys):
    code, out = _int8_item(weight_only(tmp_path), capsys)
    assert code == 0, out
    assert "1 skipped" in out and "quantizes weights only" in out, out


def test_a_model_quantizing_activations_is_still_compared(tmp_path, capsys):
    code, out = _int8_item(with_activation_qdq(tmp_path), capsys)
    assert code == 0, out
    assert "1 passed" in out and "SQNR inf" not in out, out
