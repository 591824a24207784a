"""review9: reference::run's "ignores its inputs" failed healthy models. A confident binary
classifier's sigmoid is exactly 1.0 in float32 above a logit of ~17, so two or three confident feeds
gave bit-identical outputs and reference::run failed, calling it a dead network. And an output that
differs (a class id) did not clear a model whose one float output is the same on every feed."""

import numpy as np
import onnx
import onnx.parser
import pytest

from onnx2trt_check.liveness import ignores_its_inputs as _ignores_its_inputs

# Logits 19..31 on the feeds below: Sigmoid gives 1.0 exactly in float32 on each.
BINARY = """
<ir_version: 8, opset_import: ["": 17]>
g (float[1,4] x) => (float[1,1] p) <float[4,1] w = {1.0, 2.0, 3.0, 4.0}, float[1] b = {0.5}> {
  z = MatMul(x, w)
  zb = Add(z, b)
  p = Sigmoid(zb)
}"""
# The class id follows the input; the float output is the input's width, the same on same-shaped feeds.
LABEL_AND_WIDTH = """
<ir_version: 8, opset_import: ["": 17]>
g (float[1,4] x) => (int64[1] k, float[1] width) {
  k = ArgMax<axis = -1, keepdims = 0>(x)
  s = Shape<start = 1>(x)
  width = Cast<to = 1>(s)
}"""
FEEDS = np.array([[[2, 3, 1, 4]], [[5, 1, 2, 3]], [[3, 3, 3, 3]]], np.float32)


def _run(tmp_path, text: str) -> int:
    onnx.save(onnx.parser.parse_model(text), tmp_path / "m.onnx")
    np.savez(tmp_path / "m.npz", x=FEEDS)
    return pytest.main([f"--model={tmp_path / 'm.onnx'}", f"--inputs={tmp_path / 'm.npz'}", "-p", "no:cacheprovider", "-q", "-k", "reference"])


def test_a_confident_sigmoid_classifier_passes_reference_run(tmp_path, capsys):
    assert _run(tmp_path, BINARY) == 0, capsys.readouterr().out


def test_an_output_that_follows_the_feeds_clears_the_model(tmp_path, capsys):
    assert _run(tmp_path, LABEL_AND_WIDTH) == 0, capsys.readouterr().out


def test_a_dead_output_is_still_caught_beside_saturated_and_discrete_ones():
    feeds = [{"x": np.full(3, float(i), np.float32)} for i in range(3)]
    dead = [np.full(4, 0.25, np.float32)] * 3
    one_hot = [np.array([0, 1, 0], np.float32)] * 3
    label = [np.array([1])] * 3
    assert _ignores_its_inputs(feeds, [dead, one_hot, label])
    assert not _ignores_its_inputs(feeds, [one_hot, label])  # saturated alone: no evidence either way
    assert not _ignores_its_inputs(feeds, [dead, [np.array([1]), np.array([1]), np.array([2])]])
    assert _ignores_its_inputs(feeds, [[np.zeros(4, np.float32)] * 3])  # all zero: no detection, a dead head
