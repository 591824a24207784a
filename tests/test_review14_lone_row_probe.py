"""review14: the batch probe of data at batch B >= 2 was the first row of each feed, so data of one feed
(a --data-loader's single batch of 16) gave a probe of one row. An honest int8 derived classifier whose
logits sit close together within a row (their spread is the row-to-row part) passed derived::parity on
the 16 rows at 40 dB and failed at "batch 1" on its lone row, the varying part at 11.6 dB (the false
failure c021e8a fixed for data of many feeds). The probe holds each row of the feeds on its own, up to
16 feeds."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnx2trt_check import api
from onnx2trt_check.shape_probe import other_batch

K, C = 64, 3


def _model(weights: np.ndarray, quantized: bool) -> onnx.ModelProto:
    inits, nodes, x, w = [], [], "x", "W"
    if quantized:  # int8 Q/DQ of the input and of the weights: an honest quantization
        xs, ws = np.float32(4.0 / 127), np.float32(np.abs(weights).max() / 127)
        inits += [numpy_helper.from_array(np.array(xs), "xs"), numpy_helper.from_array(np.array(0, np.int8), "z"),
                  numpy_helper.from_array(np.array(ws), "ws"), numpy_helper.from_array(np.clip(np.round(weights / ws), -127, 127).astype(np.int8), "Wq")]
        nodes += [helper.make_node("QuantizeLinear", ["x", "xs", "z"], ["xq"]), helper.make_node("DequantizeLinear", ["xq", "xs", "z"], ["xd"]),
                  helper.make_node("DequantizeLinear", ["Wq", "ws", "z"], ["Wd"])]
        x, w = "xd", "Wd"
    else:
        inits.append(numpy_helper.from_array(weights, "W"))
    nodes.append(helper.make_node("MatMul", [x, w], ["logits"]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", K])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", C])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_an_honest_int8_model_on_one_batched_feed_passes_parity_at_batch_1(tmp_path):
    rng = np.random.default_rng(0)
    weights = (rng.normal(size=(K, 1)) + 0.05 * rng.normal(size=(K, C))).astype(np.float32)  # close logits within a row
    onnx.save(_model(weights, False), tmp_path / "float.onnx")
    onnx.save(_model(weights, True), tmp_path / "int8.onnx")
    np.savez(tmp_path / "data.npz", x=rng.normal(size=(1, 16, K)).astype(np.float32))  # one feed of batch 16
    result = api.check(str(tmp_path / "int8.onnx"), pytest_args=[f"--reference-model={tmp_path / 'float.onnx'}", f"--inputs={tmp_path / 'data.npz'}",
                                                                 "-p", "no:cacheprovider", "-q", "-k", "derived and parity"])
    parity = next(iter(result.report["models"].values()))["families"]["derived"]["checks"]["parity"]
    assert parity["outcome"] == "passed", parity["message"]
    assert "at batch 1" in parity["figures"]["summary"]


def test_the_batch_1_probe_holds_each_row_up_to_sixteen():
    model = _model(np.ones((K, C), np.float32), False)
    feeds = [{"x": np.arange(k * 5 * K, (k + 1) * 5 * K, dtype=np.float32).reshape(5, K)} for k in range(4)]
    probe = other_batch(model, feeds)
    assert probe.size == 1 and len(probe.feeds) == 16
    rows = np.concatenate([feed["x"] for feed in feeds])[:16]
    np.testing.assert_array_equal(np.concatenate([made["x"] for made in probe.feeds]), rows)
