"""hunt20: a model quantized by onnxruntime in operator form (QLinearConv, QGemm: quant_format
QOperator) holds its weights as integer tensors no DequantizeLinear reads; derived::parity against
the float original said "params 78k -> 866 (0.01x)", a 100x pruning that never happened."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnx2trt_check.model_size import parameter_count


def test_operator_form_quantized_weights_are_parameters():
    scalar = {"xs": (np.float32, 0.1), "xz": (np.uint8, 128), "ws": (np.float32, 0.01), "wz": (np.int8, 0), "ys": (np.float32, 0.2),
              "yz": (np.uint8, 128)}
    inits = [numpy_helper.from_array(np.array(v, t), k) for k, (t, v) in scalar.items()]
    inits += [numpy_helper.from_array(np.ones((8, 3, 3, 3), np.int8), "w"), numpy_helper.from_array(np.zeros(8, np.int32), "b")]
    node = helper.make_node("QLinearConv", ["xq", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["yq"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("xq", TensorProto.UINT8, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("yq", TensorProto.UINT8, [1, 8, 6, 6])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    assert parameter_count(model) == 8 * 3 * 3 * 3 + 8


def test_operator_form_layers_have_channels():
    from onnx2trt_check.model_size import layer_channels

    node = helper.make_node("QLinearConv", ["xq", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["yq"], name="conv")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("xq", TensorProto.UINT8, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("yq", TensorProto.UINT8, [1, 8, 6, 6])],
                              [numpy_helper.from_array(np.ones((8, 3, 3, 3), np.int8), "w")])
    assert layer_channels(helper.make_model(graph)) == {"conv": 8}


def test_a_quantized_embedding_gathered_before_its_dequantize_is_parameters():
    # onnxruntime's quantize_dynamic: Gather(uint8 table, ids) -> DequantizeLinear; a 64k-entry table was left out
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "ids"], ["rows"]), helper.make_node("DequantizeLinear", ["rows", "s", "z"], ["e"])],
        "g", [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 5])], [helper.make_tensor_value_info("e", TensorProto.FLOAT, [1, 5, 8])],
        [numpy_helper.from_array(np.zeros((100, 8), np.uint8), "table"), numpy_helper.from_array(np.array(0.1, np.float32), "s"),
         numpy_helper.from_array(np.array(128, np.uint8), "z")])
    assert parameter_count(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])) == 800
