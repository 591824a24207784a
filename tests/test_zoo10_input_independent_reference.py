"""Tenth foreign-model pass (TensorFlow through tf2onnx): a random-init Keras MobileNetV2 gives the
softmax 0.1 for every class on every input (its last ReLU6 is dead), so every target, int8 included,
passed with max abs 0 and top-1 100%, and a weight error upstream of the dead layer passed as well.
reference::run now fails when differing feeds give bit-identical values in every output."""

import onnx
import onnx.parser
import pytest

# Relu(x - 10) is 0 on inputs in 0..1: the output is Softmax(0 * w) = 0.25 whatever the input is.
DEAD = """
<ir_version: 8, opset_import: ["": 17]>
g (float[1,4] x) => (float[1,4] y) <float[4,4] w = {1,2,3,4,5,6,7,8,9,1,2,3,4,5,6,7}, float ten = {10.0}> {
  s = Sub(x, ten)
  r = Relu(s)
  m = MatMul(r, w)
  y = Softmax<axis = -1>(m)
}"""
# The same graph alive: Relu(x) passes 0..1 through.
ALIVE = DEAD.replace("float ten = {10.0}", "float ten = {0.0}")


def _run(tmp_path, text: str, *options: str):
    onnx.save(onnx.parser.parse_model(text), tmp_path / "m.onnx")
    return pytest.main([f"--model={tmp_path / 'm.onnx'}", "-p", "no:cacheprovider", "-q", "-k", "reference", *options])


def test_a_model_whose_outputs_ignore_differing_feeds_fails_reference_run(tmp_path, capsys):
    code = _run(tmp_path, DEAD)
    out = capsys.readouterr().out
    assert code == 1, out
    assert "every output is the same on all 4 feeds, which differ" in out, out


def test_a_model_whose_outputs_follow_the_feeds_passes_reference_run(tmp_path, capsys):
    assert _run(tmp_path, ALIVE) == 0, capsys.readouterr().out


def test_one_feed_proves_nothing_either_way_and_passes(tmp_path, capsys):
    assert _run(tmp_path, DEAD, "--num-feeds", "1") == 0, capsys.readouterr().out
