"""Red team 19: `-o -` (standard output, to a user) wrote a file named '-' into the current folder
and said "wrote '-'" with exit 0 (optimize, quantize, qdq optimize, bisect --json/--plot, pytest
--report-json). It is now one line naming the option, exit 4, nothing written; './-' still writes
that name."""

import numpy as np
import pytest
from tiny_models import classifier, save

from onnx2trt_check.cli.main import main


@pytest.mark.parametrize("args", [["optimize", "m.onnx", "-o", "-"], ["bisect", "m.onnx", "--target", "ort", "--json", "-"],
                                  ["bisect", "m.onnx", "--target", "ort", "--plot", "-"],
                                  ["bisect", "m.onnx", "--target", "ort", "--reduce", "-o", "-"],
                                  ["quantize", "m.onnx", "-o", "-", "--calibration-data", "c.npz"]])
def test_a_dash_as_an_output_is_a_usage_error(tmp_path, monkeypatch, capsys, args):
    monkeypatch.chdir(tmp_path)
    save(classifier(batch=1), tmp_path / "m.onnx")
    np.savez(tmp_path / "c.npz", x=np.random.default_rng(0).random((8, 1, 3, 8, 8), dtype=np.float32))
    assert main(args) == 4
    err = capsys.readouterr().err
    assert "'-' would be a file or folder named '-' in the current folder, not standard output" in err and "Traceback" not in err
    assert not (tmp_path / "-").exists()


def test_pytest_report_json_dash_is_a_usage_error(pytester):
    save(classifier(batch=1), pytester.path / "m.onnx")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--model", "m.onnx", "--target", "ort", "--report-json", "-")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --report-json '-' would be a file or folder named '-' in the current folder, not standard output*"])
    assert not (pytester.path / "-").exists()


def test_dot_slash_dash_still_names_that_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save(classifier(batch=1), tmp_path / "m.onnx")
    assert main(["optimize", "m.onnx", "-o", "./-", "--passes", "simplify"]) == 0
    assert (tmp_path / "-").is_file()


@pytest.mark.parametrize("option", ["--artifact-dir", "--bisect-plot", "--baseline-dir"])
def test_pytest_folder_options_dash_is_a_usage_error(pytester, option):
    save(classifier(batch=1), pytester.path / "m.onnx")
    extra = ["--baseline-update"] if option == "--baseline-dir" else []
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--model", "m.onnx", "--target", "ort", option, "-", *extra)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {option} '-' would be a file or folder named '-' in the current folder*"])
    assert not (pytester.path / "-").exists()
