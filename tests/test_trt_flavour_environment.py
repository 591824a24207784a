"""ONNX2TRT_CHECK_TRT chooses the TensorRT flavour when --trt-flavour is not given. A bad value
surfaced as a collection error with a traceback (pytest exit 2) instead of a usage error; a
flavour it names that is not installed skipped every TensorRT item with "TensorRT is not installed",
which hid that the variable, not the machine, decided (TensorRT-RTX installed beside it)."""

import pytest
from tiny_models import classifier, save

from onnx2trt_check.trt import flavour


def test_a_bad_value_in_the_environment_is_a_usage_error_before_any_item(pytester, monkeypatch):
    save(classifier(), pytester.path / "m.onnx")
    monkeypatch.setenv("ONNX2TRT_CHECK_TRT", "bogus")
    result = pytester.runpytest_subprocess("--model", "m.onnx", "-p", "no:cacheprovider")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["ERROR: ONNX2TRT_CHECK_TRT='bogus' is not one of auto, tensorrt, tensorrt-rtx; pick one of them"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


@pytest.mark.parametrize("key", ["tensorrt", "tensorrt-rtx"])
def test_the_reason_names_the_variable_when_it_chose_a_missing_flavour(monkeypatch, key):
    if isinstance(flavour.probe(key), flavour.Flavour):
        pytest.skip(f"{key} is installed here: nothing is missing")
    monkeypatch.setenv("ONNX2TRT_CHECK_TRT", key)
    assert f"ONNX2TRT_CHECK_TRT={key} asks for it" in flavour.unavailable_reason()


def test_the_option_choosing_it_is_not_blamed_on_the_variable(monkeypatch):
    missing = next((key for key in ("tensorrt", "tensorrt-rtx") if not isinstance(flavour.probe(key), flavour.Flavour)), None)
    if missing is None:
        pytest.skip("both flavours are installed here: nothing is missing")
    monkeypatch.setenv("ONNX2TRT_CHECK_TRT", "auto")
    assert "ONNX2TRT_CHECK_TRT" not in flavour.unavailable_reason(missing)
