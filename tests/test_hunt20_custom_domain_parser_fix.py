"""hunt20: TensorRT's ONNX parser dispatches by op type alone, so ONNX Runtime's fused
com.microsoft::Attention (input, packed QKV weights, bias) went to the importer of ONNX's own
Attention (opset 23: Q, K, V) and was rejected with "Q, K, and V inputs must have the same number of
dimensions": a message about inputs the model does not have, with no fix. A custom-domain node that
a standard importer rejected now says so and what to do."""

from onnx2trt_check.trt.parse import ParserIssue

MESSAGE = ("Assertion failed: inputs.at(0).shape().nbDims == inputs.at(1).shape().nbDims && "
           "inputs.at(0).shape().nbDims == inputs.at(2).shape().nbDims: Q, K, and V inputs must have the same number of dimensions.")


def test_a_custom_domain_op_rejected_by_a_standard_importer_says_so():
    issue = ParserIssue(0, "Attention_0", "com.microsoft::Attention", MESSAGE, "UNSUPPORTED_NODE")
    assert "com.microsoft::Attention is onnxruntime's fused op, which TensorRT's parser imported as the ONNX op Attention" in issue.line()
    assert "onnxruntime.transformers.optimizer" in issue.fix


def test_a_standard_op_and_a_known_message_keep_their_fix():
    assert ParserIssue(0, "a", "Attention", MESSAGE, "UNSUPPORTED_NODE").fix == ""
    plugin = ParserIssue(0, "b", "com.microsoft::BiasGelu", "Plugin not found", "UNSUPPORTED_NODE").fix
    assert plugin.startswith("this op needs a TensorRT plugin")
    assert ParserIssue(0, "c", "my.plugins::Warp", "field 'mode' has the wrong type", "UNSUPPORTED_NODE").fix == ""
    # the same meaning as the ONNX op: the message is about something else (an int32 bias)
    assert "fused op" not in ParserIssue(0, "d", "com.microsoft::DequantizeLinear", "input has type Int32 but must have type FP8",
                                         "UNSUPPORTED_NODE").fix


def test_an_int32_dequantize_is_told_to_keep_its_bias_float():
    # onnxruntime's quantize_static quantizes biases to int32 DequantizeLinears, which TensorRT cannot take; the
    # rejection ("input has type Int32 but must have type FP8, FP4, Int4, Int8, or UInt8") came with no fix
    message = ("ITensor::getDimensions: Error Code 4: API Usage Error (b_DequantizeLinear: input has type Int32 but must have type "
               "FP8, FP4, Int4, Int8, or UInt8. In checkType at nodeBase.cpp:456)")
    assert "'QuantizeBias': False" in ParserIssue(0, "b_DequantizeLinear", "DequantizeLinear", message, "UNSUPPORTED_NODE").fix
