"""Red team 19: a Ctrl-C or a CI timeout's SIGTERM while `pytest --model` reads its models and data
(a data loader reading a dataset) ended the run with exit 2 and not a word: pytest reports an
interrupt only once its session has started. The run now says it was stopped and checked nothing."""

import pytest
from tiny_models import classifier, save

LOADER = "def load_data():\n    raise KeyboardInterrupt\n"  # as Ctrl-C lands while the loader reads


def test_an_interrupt_while_reading_the_data_is_said(pytester):
    save(classifier(batch=1), pytester.path / "m.onnx")
    (pytester.path / "loader.py").write_text(LOADER)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--model", "m.onnx", "--target", "ort", "--data-loader", "loader.py")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stderr.fnmatch_lines(["onnx2trt_check: interrupted (Ctrl-C) while reading the models and their data, before the first item: nothing was checked"])
    assert "Traceback" not in result.stderr.str()
