"""zoo8: `pytest --model --mean/--std` passed transform[pipeline] on a model whose normalization
could not be folded (stylenet: the input goes through a reflect Pad before its first Conv) while
other steps changed it, though `optimize` refuses to write that result: it would compute on raw
pixels as if they were normalized. The pipeline item now fails with the reason."""

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from onnx2trt_check.pytest_plugin import families
from onnx2trt_check.pytest_plugin import transforms as transform_checks


@pytest.fixture
def only_transforms(monkeypatch):
    monkeypatch.setattr(families, "FAMILIES", (transform_checks,))


def _reflect_pad_conv_bn() -> onnx.ModelProto:
    """x -> reflect Pad -> Conv -> BN: fold_conv_bn changes it, the normalization cannot fold."""
    rng = np.random.default_rng(0)
    weights = {"W": rng.normal(size=(4, 3, 3, 3)), "pads": np.array([0, 0, 1, 1, 0, 0, 1, 1]),
               "g": rng.uniform(0.5, 1.5, 4), "b": rng.normal(size=4), "m": rng.normal(size=4), "v": rng.uniform(0.5, 2, 4)}
    inits = [numpy_helper.from_array(v.astype(np.int64 if k == "pads" else np.float32), k) for k, v in weights.items()]
    nodes = [helper.make_node("Pad", ["x", "pads"], ["p"], mode="reflect"), helper.make_node("Conv", ["p", "W"], ["c"]),
             helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4, 8, 8])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_pipeline_fails_when_the_declared_normalization_is_not_folded(pytester, only_transforms):
    onnx.save(_reflect_pad_conv_bn(), pytester.path / "m.onnx")
    result = pytester.runpytest_inprocess("--model", "m.onnx", "--mean", "0.5", "--std", "0.25",
                                          "--transform", "fuse_input_normalization", "--transform", "fold_conv_bn")
    result.assert_outcomes(passed=1, skipped=1, failed=1)
    result.stdout.fnmatch_lines(["*pipeline: --mean/--std could not be folded into the model (*also feeds Pad*)*"])


def test_pipeline_passes_without_mean_std(pytester, only_transforms):
    onnx.save(_reflect_pad_conv_bn(), pytester.path / "m.onnx")
    result = pytester.runpytest_inprocess("--model", "m.onnx", "--transform", "fuse_input_normalization", "--transform", "fold_conv_bn")
    result.assert_outcomes(passed=2, skipped=1)


def test_pipeline_fails_when_the_declared_normalization_is_the_only_step_and_not_folded(pytester, only_transforms):
    """Nothing else changed the model: a skip ("no transform changed the model") would hide that the
    fold asked for did not happen."""
    onnx.save(_reflect_pad_conv_bn(), pytester.path / "m.onnx")
    result = pytester.runpytest_inprocess("--model", "m.onnx", "--mean", "0.5", "--std", "0.25", "--transform", "fuse_input_normalization")
    result.assert_outcomes(skipped=1, failed=1)
    result.stdout.fnmatch_lines(["*pipeline: --mean/--std could not be folded into the model*"])
