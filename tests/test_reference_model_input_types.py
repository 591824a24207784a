"""Foreign-model pass 7: an fp16 model (onnxconverter-common, fp16 inputs) checked against its fp32
original with `--reference-model` failed `reference::run` and `derived::parity` ("Unexpected input
data type ... tensor(float16), expected tensor(float)") and every target skipped: the float16 feeds
went to the original as they were. A cast that changes no value is now made and stated; one that
would change values is a usage error before any item runs."""

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

WEIGHT = np.linspace(-1.0, 1.0, 12, dtype=np.float32).reshape(4, 3)


def matmul(element: int, np_type) -> onnx.ModelProto:
    graph = h.make_graph([h.make_node("MatMul", ["x", "w"], ["y"])], "g", [h.make_tensor_value_info("x", element, [2, 4])],
                         [h.make_tensor_value_info("y", element, [2, 3])], [nh.from_array(WEIGHT.astype(np_type), "w")])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _save(pytester, derived: onnx.ModelProto, original: onnx.ModelProto, dtype) -> None:
    onnx.save(derived, str(pytester.path / "derived.onnx"))
    onnx.save(original, str(pytester.path / "original.onnx"))
    np.savez(pytester.path / "in.npz", x=np.random.default_rng(0).uniform(-1, 1, (6, 2, 4)).astype(dtype))


def test_an_fp16_model_is_checked_against_its_fp32_original(pytester):
    _save(pytester, matmul(T.FLOAT16, np.float16), matmul(T.FLOAT, np.float32), np.float16)
    result = pytester.runpytest_inprocess("--model", "derived.onnx", "--reference-model", "original.onnx", "--inputs", "in.npz",
                                          "--target", "ort", "-p", "no:cacheprovider")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*input 'x' cast from float16 to float32 for the original (no value changes)*",
                                 "*derived*PASSED*2 passed*against original model 'original.onnx'*"])


def test_a_wrong_fp16_model_still_fails_against_its_original(pytester):
    wrong = matmul(T.FLOAT16, np.float16)
    wrong.graph.initializer[0].CopyFrom(nh.from_array(-WEIGHT.astype(np.float16), "w"))
    _save(pytester, wrong, matmul(T.FLOAT, np.float32), np.float16)
    result = pytester.runpytest_inprocess("--model", "derived.onnx", "--reference-model", "original.onnx", "--inputs", "in.npz",
                                          "--target", "ort", "-p", "no:cacheprovider")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*derived*FAILED*"])


def test_a_cast_that_changes_values_is_a_usage_error(pytester):
    _save(pytester, matmul(T.FLOAT, np.float32), matmul(T.FLOAT16, np.float16), np.float32)
    result = pytester.runpytest_inprocess("--model", "derived.onnx", "--reference-model", "original.onnx", "--inputs", "in.npz",
                                          "--target", "ort", "-p", "no:cacheprovider")
    assert result.ret == 4, result.stdout.str() + result.stderr.str()
    assert "input 'x' is float32 and original model 'original.onnx''s 'x' is float16" in result.stderr.str()
    assert "Traceback" not in result.stderr.str() + result.stdout.str()
