"""Red team 6: NaN/inf in test data (--inputs, --data-loader). `optimize`, `quantize` and `bisect`
verified on such data and wrote their results with exit 0 (the NaN elements were simply left out of
every figure), and `pytest --model` failed reference::run while every other item passed. Refused
now before any work, naming the file, the input and the count (calibration_data.check_values),
unless the model reads NaN/inf as data (IsNaN, IsInf, an imputer, a tree ensemble)."""

import numpy as np
import onnx.parser
import pytest

from onnx2trt_check.cli.main import main

MATMUL = """<ir_version: 8, opset_import: ["" : 17]>
g (float[1,4] x) => (float[1,3] y) {
  w = Constant<value = float[4,3] {0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0,1.1,1.2}>()
  y = MatMul(x, w)
}"""
# Missing values replaced by zero: the model's own use of NaN.
IMPUTE = """<ir_version: 8, opset_import: ["" : 17]>
g (float[1,4] x) => (float[1,4] y) {
  missing = IsNaN(x)
  zero = Constant<value = float {0.0}>()
  y = Where(missing, zero, x)
}"""


def _files(tmp_path, text, bad=(np.nan, np.inf)):
    model = tmp_path / "m.onnx"
    onnx.save(onnx.parser.parse_model(text), model)
    x = np.random.default_rng(0).random((8, 1, 4)).astype(np.float32)
    x[0, 0, 0], x[3, 0, 1] = bad
    np.savez(tmp_path / "nan.npz", x=x)
    np.savez(tmp_path / "good.npz", x=np.random.default_rng(1).random((8, 1, 4)).astype(np.float32))
    return model, tmp_path / "nan.npz"


@pytest.mark.parametrize("command", [["optimize", "-o", "out.onnx"], ["bisect", "--target", "ort-fp16"],
                                     ["quantize", "-o", "out.onnx", "--calibration-data", "good.npz"]])
def test_commands_refuse_nonfinite_test_data(tmp_path, monkeypatch, capsys, command):
    model, data = _files(tmp_path, MATMUL)
    monkeypatch.chdir(tmp_path)
    assert main([command[0], str(model), "--inputs", str(data), *command[1:]]) == 4
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"--inputs '{data}': input 'x' holds 2 NaN/inf value(s) in 2 feed(s) (first: feed #0)" in err
    assert not (tmp_path / "out.onnx").exists()


def test_pytest_refuses_them_before_any_item(pytester, tmp_path):
    model, data = _files(tmp_path, MATMUL)
    result = pytester.runpytest_inprocess("--model", str(model), "--inputs", str(data), "--target", "ort")
    assert result.ret == 4
    assert "input 'x' holds 2 NaN/inf value(s)" in "\n".join(result.errlines)
    assert "passed" not in result.stdout.str()


def test_a_data_loader_is_held_to_it_too(pytester, tmp_path):
    model, _ = _files(tmp_path, MATMUL)
    loader = tmp_path / "load.py"
    loader.write_text("import numpy as np\ndef load_data():\n    yield {'x': np.full((1, 4), np.inf, np.float32)}\n")
    result = pytester.runpytest_inprocess("--model", str(model), "--data-loader", str(loader), "--target", "ort")
    assert result.ret == 4
    assert "input 'x' holds 4 NaN/inf value(s) in 1 feed(s)" in "\n".join(result.errlines)


def test_a_model_that_reads_nan_as_data_is_checked_on_it(tmp_path, monkeypatch, capsys):
    model, data = _files(tmp_path, IMPUTE, bad=(np.nan, np.nan))
    monkeypatch.chdir(tmp_path)
    assert main(["bisect", str(model), "--inputs", str(data), "--target", "ort"]) == 0
