"""`pytest --model m.onnx --fp16-block NAME` with a NAME that is no node: the fp16 items FAILED
(exit 1, "the fp16 artifact cannot be built") after the other items ran, where a bad --exclude is
the run's usage error (exit 4) before any item. Now the same: checked when the model loads, against
the names the converter blocks by (an unnamed node is OpType(first output), local functions inlined)."""

import onnx
import pytest


def _model(relu_name: str) -> onnx.ModelProto:
    model = onnx.parser.parse_model("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[1,4] x) => (float[1,4] z) { y = Relu(x)\n z = Mul(y, y) }""")
    model.graph.node[0].name = relu_name  # the Mul stays unnamed
    return model


@pytest.fixture
def model(pytester):
    onnx.save(_model("relu1"), pytester.path / "m.onnx")
    return "m.onnx"


def test_an_unknown_name_is_a_usage_error_before_any_item(pytester, model):
    result = pytester.runpytest("-p", "no:cacheprovider", "--model", model, "--target", "ort-fp16", "--fp16-block", "relu_1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --fp16-block 'relu_1' is no node of the model (its nodes are named like 'relu1', 'Mul(z)'*check the spelling"])
    assert "passed" not in result.stdout.str()


@pytest.mark.parametrize("name", ["relu1", "Mul(z)"])
def test_a_node_name_and_an_unnamed_nodes_label_are_accepted(pytester, model, name):
    result = pytester.runpytest("-p", "no:cacheprovider", "--model", model, "--target", "ort-fp16", "--fp16-block", name)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*passed*"])


def test_in_a_run_over_several_models_the_model_without_the_node_fails_its_load_item(pytester, model):
    onnx.save(_model("relu9"), pytester.path / "other.onnx")
    result = pytester.runpytest("-p", "no:cacheprovider", "--model", ".", "--target", "ort-fp16", "--fp16-block", "relu1")
    result.stdout.fnmatch_lines(["FAILED other.onnx::model::load - --fp16-block 'relu1' is no node of the model*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED
