"""Found on foreign models (zoo3): `qdq check` of the int8 model `quantize` wrote for a T5 with
dynamic sequence dims printed "Q/DQ placement: no problems found" and then ended with the usage
error for the dynamic dim (exit 4): bad input is refused before any result is printed, so a
script or a reader does not take the first line for the answer."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnx2trt_check.cli.main import main
from onnx2trt_check.trt import flavour


def dynamic_qdq_model() -> onnx.ModelProto:
    weights = [numpy_helper.from_array(np.array(0.02, np.float32), "s"), numpy_helper.from_array(np.array(0, np.int8), "z")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"]),
             helper.make_node("Relu", ["d"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "length"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "length"])], weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_a_dynamic_dim_is_refused_before_the_findings_are_printed(tmp_path, capsys):
    try:
        flavour.select(None)
    except flavour.TrtUnavailable:
        pytest.skip("no TensorRT builder: qdq check needs no input shapes then")
    path = tmp_path / "q.onnx"
    onnx.save(dynamic_qdq_model(), str(path))
    assert main(["qdq", "check", str(path)]) == 4
    captured = capsys.readouterr()
    assert "dynamic dim" in captured.err
    assert captured.out == ""
    assert main(["qdq", "check", str(path), "--input-shape", "x:2x8"]) == 0
    assert "no problems found" in capsys.readouterr().out
