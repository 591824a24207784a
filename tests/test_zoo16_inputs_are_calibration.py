"""zoo16: the same file given to --inputs and --calibration-data judged the int8 model on the feeds it
was calibrated on, and the figure read as if on test data ("on 8 feed(s) of test inputs 'x.npz'").
Both faces now say how many test feeds are calibration feeds too."""

import numpy as np
import onnx
import onnx.parser

from onnx2trt_check.cli.main import main
from onnx2trt_check.quant.verify import verification_split

MODEL = """<ir_version: 8, opset_import: ["": 17]>
g (float[N,8] x) => (float[N,4] y) <float[8,4] w = {0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, -0.8, 0.9, 1.0, -1.1, 1.2, 0.1, 0.2, -0.3, 0.4,
 0.5, -0.6, 0.7, 0.8, -0.9, 1.0, 1.1, -1.2, 0.3, 0.2, 0.1, -0.4, 0.5, 0.6, -0.7, 0.8}> { y = MatMul(x, w) }"""


def _files(tmp_path):
    onnx.save(onnx.parser.parse_model(MODEL), tmp_path / "m.onnx")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "calib.npz", x=rng.normal(size=(20, 1, 8)).astype(np.float32))
    np.savez(tmp_path / "other.npz", x=rng.normal(size=(8, 1, 8)).astype(np.float32))


def test_the_split_counts_test_feeds_that_are_calibration_feeds():
    feeds = [{"x": np.full((1, 2), float(i), np.float32)} for i in range(6)]
    assert verification_split(feeds, feeds[:3]).shared == 3
    assert verification_split(feeds, [{"x": np.full((1, 2), 9.0, np.float32)}]).overlap_text() == ""
    assert "1 of 2 test feed(s) are calibration feeds too" in verification_split(feeds, [feeds[0], {"x": np.ones((1, 3), np.float32)}]).overlap_text()


def test_quantize_says_its_test_inputs_are_the_calibration_data(tmp_path, monkeypatch, capsys):
    _files(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["quantize", "m.onnx", "-o", "q.onnx", "--calibration-data", "calib.npz", "--inputs", "calib.npz"]) == 0
    assert "20 of 20 test feed(s) are calibration feeds too, so the int8 figure is not on held-out data" in capsys.readouterr().out
    assert main(["quantize", "m.onnx", "-o", "q2.onnx", "--calibration-data", "calib.npz", "--inputs", "other.npz"]) == 0
    assert "calibration feeds too" not in capsys.readouterr().out


def test_the_ort_int8_row_says_it_too(pytester):
    _files(pytester.path)
    result = pytester.runpytest("--model=m.onnx", "--calibration-data=calib.npz", "--inputs=calib.npz", "--target=ort-int8", "-p", "no:cacheprovider")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*ort-int8*PASSED*20 of 20 test feed(s) are calibration feeds too*"])
