"""Red team 19: with one feed (`--inputs sample.npz` of one image, `--num-feeds 1`) liveness cannot
compare feeds, so a dead network (outputs the same on every input: zoo10's random-init MobileNet)
passed reference::run and every target at max abs 0 without a word. The reference row now says
that this was not checked."""

import onnx
from tiny_models import classifier, save

DEAD = """<ir_version: 8, opset_import: ["" : 17]> g (float[1,4] x) => (float[1,4] y) {
  w = Constant<value = float[4,4] {-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1}>()
  b = Constant<value = float[4] {0.1,0.2,0.3,0.4}>()
  h = MatMul(x, w)
  r = Relu(h)
  y = Add(r, b)
}"""
NOTE = "*; one feed: whether the outputs depend on the inputs is not checked (a dead network, *); give 2 or more feeds"


def test_one_feed_says_liveness_was_not_checked(pytester):
    onnx.save(onnx.parser.parse_model(DEAD), pytester.path / "dead.onnx")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--model", "dead.onnx", "--target", "ort", "--num-feeds", "1",
                                          "-k", "reference or target")
    result.stdout.fnmatch_lines([f"  reference *PASSED*1 feed(s), *{NOTE}"])
    failed = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--model", "dead.onnx", "--target", "ort", "--num-feeds", "2",
                                          "-k", "reference or target")
    failed.assert_outcomes(failed=2, deselected=18)  # two feeds show it


def test_several_feeds_say_nothing_of_it(pytester):
    save(classifier(), pytester.path / "m.onnx")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--model", "m.onnx", "--target", "ort", "-k", "reference")
    assert "one feed:" not in result.stdout.str()


def test_optimize_and_quantize_say_it_too(tmp_path, monkeypatch, capsys):
    import numpy as np

    from onnx2trt_check.cli.main import main

    monkeypatch.chdir(tmp_path)
    onnx.save(onnx.parser.parse_model(DEAD), tmp_path / "dead.onnx")
    np.savez(tmp_path / "one.npz", x=np.random.default_rng(0).random((1, 4), dtype=np.float32))
    assert main(["optimize", "dead.onnx", "-o", "o.onnx", "--inputs", "one.npz"]) == 0
    assert "  note: one feed: whether the outputs depend on the inputs is not checked" in capsys.readouterr().out
    save(classifier(batch=1), tmp_path / "m.onnx")
    np.savez(tmp_path / "c.npz", x=np.random.default_rng(1).random((16, 1, 3, 8, 8), dtype=np.float32))
    np.savez(tmp_path / "x.npz", x=np.random.default_rng(2).random((1, 3, 8, 8), dtype=np.float32))
    assert main(["quantize", "m.onnx", "-o", "q.onnx", "--calibration-data", "c.npz", "--inputs", "x.npz"]) == 0
    assert "  note: one feed: whether the outputs depend on the inputs is not checked" in capsys.readouterr().out


DEAD_BATCH = DEAD.replace("float[1,4] x) => (float[1,4] y)", "float[N,4] x) => (float[N,4] y)")


def test_one_feed_of_a_batch_is_checked_row_by_row(pytester, tmp_path):
    """A batch of 16 samples given as one .npz feed (an array shaped [16, 4] for an input [N, 4]) left
    liveness unchecked, and the dead network passed; its rows are samples where the graph names
    the first dimension of every input and output alike, and they show it."""
    import numpy as np

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
