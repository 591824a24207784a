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


def test_one_feed_is_judged_with_perturbed_copies_of_it(tmp_path, capsys):
    assert _run(tmp_path, DEAD, "--num-feeds", "1") == 1, capsys.readouterr().out
    assert _run(tmp_path, ALIVE, "--num-feeds", "1") == 0, capsys.readouterr().out


# The class id of the dead model: the same on every feed, as a healthy classifier's may be on 4 feeds.
DEAD_ARGMAX = DEAD.replace("=> (float[1,4] y)", "=> (int64[1] k)").replace("y = Softmax<axis = -1>(m)", "y = Softmax<axis = -1>(m)\n  k = ArgMax<axis = -1, keepdims = 0>(y)")
# An output no input reaches (said in the notes), beside the dead one.
DEAD_AND_WEIGHTS_ONLY = DEAD.replace("=> (float[1,4] y)", "=> (float[1,4] y, float[4,4] c)").replace("y = Softmax<axis = -1>(m)", "y = Softmax<axis = -1>(m)\n  c = Identity(w)")
WEIGHTS_ONLY = ALIVE.replace("=> (float[1,4] y)", "=> (float[4,4] c)").replace("y = Softmax<axis = -1>(m)", "c = Identity(w)")


def test_discrete_outputs_that_coincide_are_not_counted(tmp_path, capsys):
    assert _run(tmp_path, DEAD_ARGMAX) == 0, capsys.readouterr().out


def test_an_output_no_input_reaches_is_left_to_its_note(tmp_path, capsys):
    assert _run(tmp_path, DEAD_AND_WEIGHTS_ONLY) == 1, capsys.readouterr().out
    assert _run(tmp_path, WEIGHTS_ONLY) == 0, capsys.readouterr().out
