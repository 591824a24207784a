"""review8: when --mean/--std cannot be folded, `optimize` and `pytest --model`'s transform[pipeline]
ended with "give one value per input channel, or leave --mean/--std out" whatever the reason: for
a stereo pair both fitting (ambiguous) or an input read by a Pad first, the user had already given
one value per channel and that "fix" could not work. It is offered only for a channel count."""

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from onnx2trt_check.errors import ConfigError
from onnx2trt_check.pytest_plugin import families
from onnx2trt_check.pytest_plugin import transforms as transform_checks
from onnx2trt_check.transforms.run import TransformSettings, folded_as_asked, run_transforms

MEAN, STD = (123.7, 116.3, 103.5), (58.4, 57.1, 57.4)


def _stereo() -> onnx.ModelProto:
    """left and right images, each read by its own Conv: the same 3-channel statistics fit both."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), name) for name in ("wl", "wr")]
    nodes = [helper.make_node("Conv", ["left", "wl"], ["a"], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["right", "wr"], ["b"], pads=[1, 1, 1, 1]), helper.make_node("Sub", ["a", "b"], ["y"])]
    inputs = [helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, [1, 3, 8, 8]) for name in ("left", "right")]
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4, 8, 8])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _refusal(mean, std) -> str:
    model = _stereo()
    feeds = [{name: np.random.default_rng(1).normal(size=(1, 3, 8, 8)).astype(np.float32) for name in ("left", "right")}]
    settings = TransformSettings(mean=mean, std=std)
    with pytest.raises(ConfigError) as error:
        folded_as_asked(run_transforms(model, feeds, settings, names=["fuse_input_normalization"]), settings)
    return str(error.value)


def test_an_ambiguous_fold_does_not_suggest_one_value_per_channel():
    message = _refusal(MEAN, STD)
    assert "ambiguous" in message and "one value per input channel" not in message and message.endswith("Leave --mean/--std out")


def test_a_channel_count_mismatch_still_suggests_it():
    assert "Give one value per input channel, or leave --mean/--std out" in _refusal(MEAN[:2], STD[:2])


def test_the_pipeline_item_says_the_same(pytester, monkeypatch):
    monkeypatch.setattr(families, "FAMILIES", (transform_checks,))
    onnx.save(_stereo(), pytester.path / "m.onnx")
    result = pytester.runpytest_inprocess("--model", "m.onnx", "--mean", ",".join(map(str, MEAN)), "--std", ",".join(map(str, STD)),
                                          "--transform", "fuse_input_normalization")
    result.assert_outcomes(skipped=1, failed=1)
    result.stdout.fnmatch_lines(["*ambiguous*(`optimize` writes nothing for it); leave --mean/--std out"])
    assert "one value per input channel" not in result.stdout.str()
