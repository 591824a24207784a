"""A model's own Q/DQ run under the int8 labels (target[ort-int8], trt[int8]) as written. A float8
or int4 QDQ model passed there with a row that read as an int8 figure; the rows now name the types
that are not int8. int8 weights and activations, uint8 activations and int32 biases are int8."""

import numpy as np
import onnx
import onnx.parser
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from onnx2trt_check.quant.float_counterpart import non_int8_types, quantized_types


def qdq_matmul(zero_point_type: int | None, *, opset: int = 19, output_dtype: int = 0, bias: bool = False) -> onnx.ModelProto:
    """x -> Q -> DQ -> MatMul(w) [-> Add(DQ(int32 bias))]: the activation quantized to the zero point's
    type (or to `output_dtype`, or to the operator's default uint8 without either)."""
    q_inputs, inits = ["x", "s"], [nh.from_array(np.array(0.05, np.float32), "s"), nh.from_array(np.ones((4, 3), np.float32), "w")]
    if zero_point_type is not None:
        inits.append(h.make_tensor("z", zero_point_type, [], [0]))
        q_inputs.append("z")
    attrs = {"output_dtype": output_dtype} if output_dtype else {}
    nodes = [h.make_node("QuantizeLinear", q_inputs, ["xq"], **attrs), h.make_node("DequantizeLinear", ["xq", "s"], ["xd"]),
             h.make_node("MatMul", ["xd", "w"], ["y" if not bias else "m"])]
    if bias:
        inits += [nh.from_array(np.arange(3, dtype=np.int32), "b"), nh.from_array(np.array(0.01, np.float32), "bs")]
        nodes += [h.make_node("DequantizeLinear", ["b", "bs"], ["bd"]), h.make_node("Add", ["m", "bd"], ["y"])]
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", T.FLOAT, [2, 4])], [h.make_tensor_value_info("y", T.FLOAT, [2, 3])], inits)
    return h.make_model(graph, opset_imports=[h.make_opsetid("", opset)])


@pytest.mark.parametrize(
    ("model", "types", "not_int8"),
    [
        (qdq_matmul(T.INT8), ["INT8"], []),
        (qdq_matmul(None), ["UINT8"], []),  # no zero point: QuantizeLinear writes uint8
        (qdq_matmul(T.INT8, bias=True), ["INT32", "INT8"], []),
        (qdq_matmul(T.FLOAT8E4M3FN), ["FLOAT8E4M3FN"], ["FLOAT8E4M3FN"]),
        (qdq_matmul(T.INT16, opset=21), ["INT16"], ["INT16"]),
        (qdq_matmul(None, opset=21, output_dtype=T.INT4), ["INT4"], ["INT4"]),
    ],
)
def test_the_quantized_types_are_read_from_the_graph(model, types, not_int8):
    assert quantized_types(model) == types
    assert non_int8_types(model) == not_int8


def test_a_dequantized_constant_counts_by_its_own_type():
    model = onnx.parser.parse_model("""
    <ir_version: 10, opset_import: ["": 21]>
    g (float[2,4] x) => (float[2,3] y) {
      wq = Constant<value = int4[4,3] {1,2,3,4,5,6,7,-1,-2,-3,-4,-5}>()
      s = Constant<value = float {0.1}>()
      w = DequantizeLinear(wq, s)
      y = MatMul(x, w)
    }""")
    assert quantized_types(model) == ["INT4"]


def test_the_int8_row_of_a_float8_qdq_model_says_it_is_not_int8(tmp_path, capsys):
    onnx.save(qdq_matmul(T.FLOAT8E4M3FN), tmp_path / "f8.onnx")
    code = pytest.main([f"--model={tmp_path / 'f8.onnx'}", "-p", "no:cacheprovider", "-q", "--target", "ort-int8", "-k", "accuracy"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "target[ort-int8]" in out and "own Q/DQ in FLOAT8E4M3FN, not int8" in out, out


def test_the_int8_row_of_an_int8_qdq_model_says_nothing_more(tmp_path, capsys):
    onnx.save(qdq_matmul(T.INT8), tmp_path / "i8.onnx")
    code = pytest.main([f"--model={tmp_path / 'i8.onnx'}", "-p", "no:cacheprovider", "-q", "--target", "ort-int8", "-k", "accuracy"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "target[ort-int8]" in out and "not int8" not in out, out


def test_the_trt_int8_row_of_a_float8_qdq_model_names_its_file_and_types(rtx, tmp_path, capsys):
    onnx.save(qdq_matmul(T.FLOAT8E4M3FN), tmp_path / "f8.onnx")
    code = pytest.main([f"--model={tmp_path / 'f8.onnx'}", "-p", "no:cacheprovider", "-q", "--target", "trt-int8", "-k", "build"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "trt[int8]" in out and "the model's own Q/DQ (FLOAT8E4M3FN, not int8)" in out, out
