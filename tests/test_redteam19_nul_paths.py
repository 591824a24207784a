"""Red team 19: a path holding a NUL character (an API argument built from data, a pyproject.toml
"\\u0000") was a ValueError 'embedded null byte' from deep inside a read or a write (api.quantize,
api.bisect, api.optimize's output) and an INTERNALERROR in pytest (baseline_dir); it is now a
CheckError / a usage error naming the option."""

import numpy as np
import pytest
from tiny_models import classifier, save

import onnx2trt_check
from onnx2trt_check.errors import CheckError


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save(classifier(batch=1), tmp_path / "m.onnx")
    np.savez(tmp_path / "c.npz", x=np.random.default_rng(0).random((8, 1, 3, 8, 8), dtype=np.float32))
    return tmp_path


@pytest.mark.parametrize(("call", "option"), [
    (lambda: onnx2trt_check.optimize("m.onnx", output="o\0.onnx"), "-o"),
    (lambda: onnx2trt_check.optimize("m.onnx", inputs="c\0.npz"), "--inputs"),
    (lambda: onnx2trt_check.quantize("m.onnx", calibration_data="c\0.npz"), "--calibration-data"),
    (lambda: onnx2trt_check.quantize("m.onnx", calibration_data="c.npz", inputs="c.npz", labels="l\0.npy"), "--labels"),
    (lambda: onnx2trt_check.bisect("m.onnx", target="ort", inputs="c\0.npz"), "--inputs"),
])
def test_a_nul_in_a_path_argument_is_a_check_error(files, call, option):
    with pytest.raises(CheckError, match=f"^{option} '.*' holds a NUL character, which no file name can; pass the path without it$"):
        call()
    assert sorted(p.name for p in files.iterdir()) == ["c.npz", "m.onnx"]


def test_a_nul_in_the_pyproject_baseline_dir_is_a_usage_error(pytester):
    save(classifier(), pytester.path / "m.onnx")
    pytester.makepyprojecttoml('[tool.onnx2trt_check]\nbaseline_dir = "base\\u0000line"\n')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--model", "m.onnx", "--target", "ort")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: baseline_dir '*' holds a NUL character, which no file name can; pass the path without it"])
    assert "INTERNALERROR" not in result.stderr.str() + result.stdout.str()
