"""Red team 19: a pyproject.toml whose `onnx2trt_check` under [tool] is no table (`onnx2trt_check = 3`,
a string) was an INTERNALERROR traceback (AttributeError: 'int' object has no attribute 'get') in
every pytest run of that folder; it is now one line naming the key, exit 4."""

import pytest
from tiny_models import classifier, save


@pytest.mark.parametrize("value", ["3", '"strict"', "[1, 2]"])
def test_a_section_that_is_no_table_is_a_usage_error(pytester, value):
    save(classifier(), pytester.path / "m.onnx")
    pytester.makepyprojecttoml(f"[tool]\nonnx2trt_check = {value}\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--model", "m.onnx", "--target", "ort")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: [[]tool.onnx2trt_check[]] of pyproject.toml is *, not a table; write [[]tool.onnx2trt_check[]] and its keys below it"])
    assert "INTERNALERROR" not in result.stderr.str() + result.stdout.str()

