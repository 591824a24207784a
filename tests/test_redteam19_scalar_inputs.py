"""Red team 19: a model with a scalar (rank-0) input (a diffusion UNet's timestep, a temperature)
could not be given data: a data loader yielding {'t': np.float32(1)} and an .npz holding t = 2.0
were refused with "array 't' has shape [], which holds no samples", so only generated data could
check it, and optimize/quantize/bisect refused every real dataset. A 0-d array is one feed of a
scalar input now; a 0-d array for another input, or a name that is no input, says that."""

import numpy as np
import onnx
import pytest

from onnx2trt_check.cli.main import main

MODEL = '<ir_version: 8, opset_import: ["" : 17]> g (float[1,4] x, float t) => (float[1,4] y) { y = Mul(x, t) }'
LOADER = ("import numpy as np\ndef load_data():\n    for i in range(3):\n"
          "        yield {'x': np.random.default_rng(i).random((1, 4), dtype=np.float32), 't': np.float32(i + 1)}\n")


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    onnx.save(onnx.parser.parse_model(MODEL), tmp_path / "m.onnx")
    (tmp_path / "loader.py").write_text(LOADER)
    np.savez(tmp_path / "one.npz", x=np.ones((1, 4), np.float32), t=np.float32(2.0))
    np.savez(tmp_path / "extra.npz", x=np.ones((1, 4), np.float32), t=np.float32(2.0), label=np.int64(3))
    return tmp_path


def test_a_scalar_input_takes_a_loader_and_an_npz(files, capsys):
    assert main(["optimize", "m.onnx", "-o", "o.onnx", "--inputs", "loader.py"]) == 0
    assert "t in [1, 3]" in capsys.readouterr().out
    assert main(["optimize", "m.onnx", "-o", "o2.onnx", "--inputs", "one.npz"]) == 0


def test_a_scalar_that_is_no_input_is_named(files, capsys):
    assert main(["optimize", "m.onnx", "-o", "o.onnx", "--inputs", "extra.npz"]) == 4
    assert "has array 'label', which is not an input of the model" in capsys.readouterr().err


def test_pytest_takes_the_loader(pytester):
    onnx.save(onnx.parser.parse_model(MODEL), pytester.path / "m.onnx")
    (pytester.path / "loader.py").write_text(LOADER)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--model", "m.onnx", "--target", "ort", "--data-loader", "loader.py",
                                          "-k", "target")
    result.assert_outcomes(passed=1, deselected=19)
