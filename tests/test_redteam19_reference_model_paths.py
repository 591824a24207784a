"""Red team 19: a --reference-model path that is missing said "check the --model path", and a
folder said "pass the folder to --model to check every .onnx in it" (which would check it, not
take it as the reference): both now name --reference-model."""

import pytest
from tiny_models import classifier, save


@pytest.mark.parametrize(("given", "message"), [
    ("nope.onnx", "ERROR: model file 'nope.onnx' does not exist; check the --reference-model path"),
    ("originals", "ERROR: --reference-model 'originals' is a folder; pass one ONNX model file"),
])
def test_a_bad_reference_model_path_names_its_option(pytester, given, message):
    save(classifier(), pytester.path / "m.onnx")
    pytester.mkdir("originals")
    save(classifier(), pytester.path / "originals" / "m.onnx")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--model", "m.onnx", "--reference-model", given)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
