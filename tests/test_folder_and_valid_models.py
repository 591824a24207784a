"""Runs over several models (one that cannot be checked fails alone; --input-shape is scoped per
model) and valid models of every kind, none of which may crash an item."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from bad_input_files import qdq_relu
from bisect_models import qdq_model
from onnx import TensorProto, helper
from tiny_models import classifier, parse, save, two_inputs

HEADER = '<ir_version: 8, opset_import: ["" : 17]>'


def zipmap_model() -> onnx.ModelProto:
    float_map = helper.make_map_type_proto(TensorProto.INT64, helper.make_tensor_type_proto(TensorProto.FLOAT, []))
    graph = helper.make_graph([helper.make_node("ZipMap", ["x"], ["p"], domain="ai.onnx.ml", classlabels_int64s=[0, 1, 2, 3])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_value_info("p", helper.make_sequence_type_proto(float_map))])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 1)])


def dynamic_images() -> onnx.ModelProto:
    return parse(f"{HEADER} g (float[N, 3, H, W] images) => (float[N, 3, H, W] y) {{ y = Relu(images) }}")


@pytest.fixture
def folder(pytester):
    models = pytester.path / "models"
    models.mkdir()
    save(classifier(), models / "a_good.onnx")
    save(dynamic_images(), models / "b_dynamic.onnx")
    save(zipmap_model(), models / "c_zipmap.onnx")
    (models / "d_broken.onnx").write_text("not onnx")
    return models


@pytest.mark.parametrize("xdist", [[], ["-n", "2", "--dist", "loadfile"]], ids=["plain", "xdist"])
def test_a_model_that_cannot_be_checked_fails_alone_and_the_others_run(pytester, folder, xdist):
    result = pytester.runpytest_subprocess("--model", str(folder), "--target", "ort", "-k", "structure or reference or target or model",
                                           "-p", "no:cacheprovider", "-rf", *xdist)
    assert result.ret == 1
    outcomes = result.parseoutcomes()
    assert outcomes["failed"] == 3 and outcomes["passed"] == 8  # a_good: 6 structure + reference + target[ort]
    result.stdout.fnmatch_lines_random([
        "FAILED *b_dynamic.onnx::model::load*", "FAILED *c_zipmap.onnx::model::load*", "FAILED *d_broken.onnx::model::load*",
        "input 'images' has dynamic dim 'H'*",
        "*c_zipmap.onnx' is outside what onnx2trt_check checks: output 'p' is a sequence of maps*",
        "*d_broken.onnx' is not a valid ONNX model*",
    ])
    assert "Traceback" not in result.stdout.str() and "INTERNALERROR" not in result.stdout.str()


def test_input_shape_is_scoped_per_model_in_a_folder(pytester, folder):
    (folder / "c_zipmap.onnx").unlink()
    (folder / "d_broken.onnx").unlink()
    result = pytester.runpytest("--model", str(folder), "--target", "ort", "-k", "reference or target", "--input-shape", "images:1x3x5x6")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines_random([
        "*note: --input-shape 'images' ignored: the model has no input 'images'",
        "*note: inputs: random(seed=0, n=4), 4 feed(s)",
    ])
    typo = pytester.runpytest("--model", str(folder), "--input-shape", "image:1x3x5x6")
    assert typo.ret == 4
    typo.stderr.fnmatch_lines(["ERROR: --input-shape names 'image', which is an input of none of the models (inputs: images, x)"])


def test_an_input_shape_that_does_not_fit_a_model_with_that_input_is_ignored_for_it(pytester):
    models = pytester.path / "models"
    models.mkdir()
    save(classifier(), models / "fixed.onnx")  # x: [N, 3, 8, 8]
    save(parse(f"{HEADER} g (float[N, 3, H, W] x) => (float[N, 3, H, W] y) {{ y = Relu(x) }}"), models / "open.onnx")
    result = pytester.runpytest("--model", str(models), "--target", "ort", "-k", "reference or target", "--input-shape", "x:1x3x5x6")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines_random([
        "*note: --input-shape x:1x3x5x6 ignored: it sets dim 2 of input 'x' to 5, but the model fixes it at 8",
        "*target[[]ort[]]*PASSED*",
    ])
    alone = pytester.runpytest("--model", str(models / "fixed.onnx"), "--input-shape", "x:1x3x5x6")
    assert alone.ret == 4  # with one model it can only be a mistake
    alone.stderr.fnmatch_lines(["ERROR: --input-shape sets dim 2 of input 'x' to 5, but the model fixes it at 8"])


def test_the_only_model_of_a_run_that_cannot_be_checked_is_a_usage_error(pytester, folder):
    result = pytester.runpytest("--model", str(folder / "c_zipmap.onnx"))
    assert result.ret == 4
    result.stderr.fnmatch_lines(["ERROR: *c_zipmap.onnx' is outside what onnx2trt_check checks: output 'p' is a sequence of maps*"])


def test_dims_the_data_fixes_are_settled_by_it_in_pytest(pytester):
    save(dynamic_images(), pytester.path / "m.onnx")
    np.savez(pytester.path / "d.npz", images=np.random.default_rng(0).random((3, 1, 3, 5, 7), np.float32))
    result = pytester.runpytest("--model", "m.onnx", "--inputs", "d.npz", "--target", "ort", "-k", "reference or target")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*note: input 'images': dynamic dim(s) N, H, W set by the input data: shape [[]1, 3, 5, 7[]] (the targets run no other size)"])


def passthrough() -> onnx.ModelProto:
    return parse(f"{HEADER} g (float[1, 4] x) => (float[1, 4] x) {{ }}")


def output_is_input() -> onnx.ModelProto:
    return parse(f"{HEADER} g (float[1, 4] x) => (float[1, 4] x, float[1, 4] y) {{ y = Relu(x) }}")


def fp16_io() -> onnx.ModelProto:
    return parse(f"{HEADER} g (float16[1, 4] x) => (float16[1, 4] y) {{ y = Relu(x) }}")


def int_outputs() -> onnx.ModelProto:
    return parse(f"{HEADER} g (float[2, 5] x) => (int64[2, 1] k, float[2, 5] s, bool[2, 5] b) "
                 "{ k = ArgMax<axis = 1>(x) \n s = Softmax(x) \n z = Constant<value = float {0.5}>() \n b = Greater(x, z) }")


def qdq_at(opset: int) -> onnx.ModelProto:
    model = qdq_model(4)
    model.opset_import[0].version = opset
    return model


VALID = {
    "fp16_io": fp16_io,
    "passthrough": passthrough,
    "output_is_input": output_is_input,
    "int_bool_inputs": two_inputs,
    "int_bool_outputs": int_outputs,
    "qdq_relu_opset17": qdq_relu,
    "qdq_chain_opset17": lambda: qdq_at(17),
    "qdq_chain_opset19": lambda: qdq_at(19),
    "dynamic_batch": classifier,
}


@pytest.mark.parametrize("name", list(VALID))
def test_valid_models_of_every_kind_never_crash_an_item(pytester, name):
    save(VALID[name](), pytester.path / "m.onnx")
    result = pytester.runpytest("--model", "m.onnx", "-rfs", "-p", "no:randomly")
    text = result.stdout.str() + result.stderr.str()
    crashed = [line for line in text.splitlines() if line.startswith("E ") or "Traceback" in line or "INTERNALERROR" in line]
    assert not crashed, text
    assert result.ret in (0, 1), text
    failed = [line for line in result.outlines if line.startswith("FAILED")]
    assert not [line for line in failed if "fp16" in line], failed  # the fp16 artifact is valid or skips with the reason
