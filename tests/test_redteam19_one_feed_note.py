"""Red team 19: with one feed (`--inputs sample.npz` of one image, `--num-feeds 1`) liveness cannot
compare feeds, so a dead network (outputs the same on every input: zoo10's random-init MobileNet)
passed reference::run and every target at max abs 0 without a word. One feed is now judged with
perturbed copies of it (liveness.one_feed_liveness); where those cannot tell, the reference row says
that this was not checked."""

import numpy as np
import onnx
from tiny_models import classifier, save

DEAD = """<ir_version: 8, opset_import: ["" : 17]> g (float[1,4] x) => (float[1,4] y) {
  w = Constant<value = float[4,4] {-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1}>()
  b = Constant<value = float[4] {0.1,0.2,0.3,0.4}>()
  h = MatMul(x, w)
  r = Relu(h)
  y = Add(r, b)
}"""
# One class id in, a dead MLP over its embedding: a shuffled copy of a single id is the same feed,
# so nothing can show whether the outputs depend on it.
DEAD_ID = """<ir_version: 8, opset_import: ["" : 17]> g (int64[1,1] id) => (float[1,4] y) {
  table = Constant<value = float[3,4] {0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0,1.1,1.2}>()
  e = Gather(table, id)
  x = Squeeze(e)
  w = Constant<value = float[4,4] {-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1}>()
  b = Constant<value = float[4] {0.1,0.2,0.3,0.4}>()
  h = MatMul(x, w)
  r = Relu(h)
  s = Add(r, b)
  zero = Constant<value = int64[1] {0}>()
  y = Unsqueeze(s, zero)
}"""
NOTE = "*; one feed: whether the outputs depend on the inputs is not checked (a dead network, *); give 2 or more feeds"


def _dead_id(path):
    onnx.save(onnx.parser.parse_model(DEAD_ID), path)


def test_one_feed_is_judged_with_perturbed_copies_and_the_note_stays_where_they_cannot_tell(pytester):
    onnx.save(onnx.parser.parse_model(DEAD), pytester.path / "dead.onnx")
    failed = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--model", "dead.onnx", "--target", "ort", "--num-feeds", "1",
                                          "-k", "reference or target")
    failed.assert_outcomes(failed=2, deselected=18)
    failed.stdout.fnmatch_lines(["*every output is the same on the one feed and 2 perturbed copies of it*"])
    _dead_id(pytester.path / "dead_id.onnx")
    np.savez(pytester.path / "id.npz", id=np.array([[1]], np.int64))
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--model", "dead_id.onnx", "--target", "ort", "--inputs", "id.npz",
                                          "-k", "reference or target")
    result.stdout.fnmatch_lines([f"  reference *PASSED*1 feed(s), *{NOTE}"])


def test_several_feeds_or_a_live_one_say_nothing_of_it(pytester):
    save(classifier(), pytester.path / "m.onnx")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--model", "m.onnx", "--target", "ort", "-k", "reference")
    assert "one feed:" not in result.stdout.str()
    one = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--model", "m.onnx", "--target", "ort", "--num-feeds", "1", "-k", "reference or target")
    one.assert_outcomes(passed=2, deselected=18)
    assert "one feed:" not in one.stdout.str()


def test_optimize_and_quantize_judge_one_feed_too(tmp_path, monkeypatch, capsys):
    from onnx2trt_check.cli.main import main

    monkeypatch.chdir(tmp_path)
    onnx.save(onnx.parser.parse_model(DEAD), tmp_path / "dead.onnx")
    np.savez(tmp_path / "one.npz", x=np.random.default_rng(0).random((1, 4), dtype=np.float32))
    assert main(["optimize", "dead.onnx", "-o", "o.onnx", "--inputs", "one.npz"]) == 1
    assert "perturbed copies of it" in capsys.readouterr().out and not (tmp_path / "o.onnx").exists()
    _dead_id(tmp_path / "dead_id.onnx")
    np.savez(tmp_path / "id.npz", id=np.array([[1]], np.int64))
    assert main(["optimize", "dead_id.onnx", "-o", "o.onnx", "--inputs", "id.npz"]) == 0
    assert "  note: one feed: whether the outputs depend on the inputs is not checked" in capsys.readouterr().out
    save(classifier(batch=1), tmp_path / "m.onnx")
    np.savez(tmp_path / "c.npz", x=np.random.default_rng(1).random((16, 1, 3, 8, 8), dtype=np.float32))
    np.savez(tmp_path / "x.npz", x=np.random.default_rng(2).random((1, 3, 8, 8), dtype=np.float32))
    assert main(["quantize", "m.onnx", "-o", "q.onnx", "--calibration-data", "c.npz", "--inputs", "x.npz"]) == 0
    assert "one feed:" not in capsys.readouterr().out  # a live network: its perturbed copies show it


DEAD_BATCH = DEAD.replace("float[1,4] x) => (float[1,4] y)", "float[N,4] x) => (float[N,4] y)")


def test_one_feed_of_a_batch_is_checked_row_by_row(pytester, tmp_path):
    """A batch of 16 samples given as one .npz feed (an array shaped [16, 4] for an input [N, 4]) left
    liveness unchecked, and the dead network passed; its rows are samples where the graph names
    the first dimension of every input and output alike, and they show it."""
    from onnx2trt_check.cli.main import main

    onnx.save(onnx.parser.parse_model(DEAD_BATCH), pytester.path / "dead.onnx")
    np.savez(pytester.path / "batch.npz", x=np.random.default_rng(0).random((16, 4), dtype=np.float32))
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--model", "dead.onnx", "--target", "ort", "--inputs", "batch.npz",
                                          "-k", "reference or target")
    result.assert_outcomes(failed=2, deselected=18)
    result.stdout.fnmatch_lines(["*every output is the same on all 16 rows of the one feed, which differ*"])
    assert main(["optimize", str(pytester.path / "dead.onnx"), "-o", str(tmp_path / "o.onnx"), "--inputs", str(pytester.path / "batch.npz")]) == 1
    assert not (tmp_path / "o.onnx").exists()
    save(classifier(), pytester.path / "live.onnx")  # a live network's one batch says nothing of it
    np.savez(pytester.path / "live.npz", x=np.random.default_rng(1).random((8, 3, 8, 8), dtype=np.float32))
    live = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--model", "live.onnx", "--target", "ort", "--inputs", "live.npz", "-k", "reference")
    live.assert_outcomes(passed=1, deselected=19)
    assert "one feed:" not in live.stdout.str()


# review20: one token through an attention with a float mask: softmax over one key is 1 whatever the
# mask, so the logits read the token id alone, which a shuffled copy of one id cannot change.
ONE_TOKEN = """<ir_version: 8, opset_import: ["" : 17]> g (int64[1,1] ids, float[1,1] mask) => (float[1,1,4] y) {
  table = Constant<value = float[3,4] {0.1,0.9,0.3,0.4,0.5,0.6,0.2,0.8,0.9,1.0,1.1,1.2}>()
  x = Gather(table, ids)
  one = Constant<value = float[1] {1.0}>()
  big = Constant<value = float[1] {-10000.0}>()
  inv = Sub(one, mask)
  add = Mul(inv, big)
  axis = Constant<value = int64[1] {1}>()
  s = Unsqueeze(add, axis)
  p = Softmax<axis = -1>(s)
  y = MatMul(p, x)
}"""


def test_one_feed_whose_copies_could_not_change_an_input_is_not_called_dead():
    """A decoder given one token was called a dead network on its perturbed copies (its float mask moved,
    its one token id could not): the logits depend on the id. Not told, not dead."""
    from onnx2trt_check.liveness import dead_model_problem, one_feed_liveness

    model = onnx.parser.parse_model(ONE_TOKEN)
    feed = {"ids": np.array([[1]], np.int64), "mask": np.ones((1, 1), np.float32)}
    assert one_feed_liveness(model, feed) is None
    assert dead_model_problem(model, [feed], []) is None
    other = {"ids": np.array([[2]], np.int64), "mask": np.ones((1, 1), np.float32)}
    from onnx2trt_check.runtime import run_model
    first, second = run_model(model, [feed, other])
    assert not np.array_equal(first["y"], second["y"]), "the model reads its token id: the test shows nothing"


# review20: a labeler's class id cast to float: the same class on one image and its perturbed copies.
LABELER = """<ir_version: 8, opset_import: ["" : 17]> g (float[1,4] x) => (float[1] label) {
  w = Constant<value = float[4,3] {1,0,0, 1,0,0, 1,0,0, 1,0,-1}>()
  logits = MatMul(x, w)
  best = ArgMax<axis = 1, keepdims = 0>(logits)
  label = Cast<to = 1>(best)
}"""


def test_a_class_id_cast_to_float_is_no_evidence_of_a_dead_network():
    """Class ids are no evidence (README), in a float tensor too: a healthy labeler that keeps its class
    on one image's perturbed copies, or on two feeds of one class, was called a dead network."""
    from onnx2trt_check.liveness import dead_model_problem, one_feed_liveness
    from onnx2trt_check.runtime import run_model

    model = onnx.parser.parse_model(LABELER)
    feeds = [{"x": np.array([[0.5, 0.2, 0.9, 0.4]], np.float32)}, {"x": np.array([[0.6, 0.1, 0.8, 0.3]], np.float32)}]
    assert one_feed_liveness(model, feeds[0]) is None
    assert dead_model_problem(model, feeds[:1], []) is None
    assert dead_model_problem(model, feeds, run_model(model, feeds)) is None
    assert run_model(model, [{"x": np.array([[-1.0, -1.0, -1.0, -1.0]], np.float32)}])[0]["label"][0] == 2, "the model reads x: the test shows nothing"
