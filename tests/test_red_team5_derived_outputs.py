"""Red team 5: a derived model that lost one of the original's outputs passed `derived::parity`.
`--model derived.onnx --reference-model original.onnx`, where derived.onnx is the original without
its second output: the outputs matched by name, the one left agreed, and the item passed with no
word of the output nothing computes any more (references.py, pytest_plugin/parity.py)."""

import onnx
from onnx import helper

from onnx2trt_check.references import ReferenceModel


def _two_outputs() -> onnx.ModelProto:
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Neg", ["x"], ["z"])], "g",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [1, 4]) for n in ("y", "z")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_a_derived_model_without_one_of_the_originals_outputs_fails_parity(pytester):
    original = _two_outputs()
    onnx.save(original, str(pytester.path / "original.onnx"))
    derived = _two_outputs()
    derived.graph.output.pop()  # 'z' is gone: the deployment's post-processing reads it
    onnx.save(derived, str(pytester.path / "derived.onnx"))
    result = pytester.runpytest_inprocess("--model", "derived.onnx", "--reference-model", "original.onnx", "--target", "ort", "-rf")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["the derived model lacks output(s) 'z' of original model 'original.onnx': nothing computes them*",
                                 "*note: reference: *outputs matched by name; output(s) 'z' of the original not in the model, not compared*"])


def test_the_same_outputs_under_other_names_are_all_compared(tmp_path):
    original = _two_outputs()
    onnx.save(original, str(tmp_path / "original.onnx"))
    renamed = _two_outputs()
    renamed.graph.output[1].name = renamed.graph.node[1].output[0] = "neg"
    matching = ReferenceModel(tmp_path / "original.onnx").matching(renamed)
    assert matching.outputs == {"y": "y", "neg": "z"} and matching.unmatched == []
