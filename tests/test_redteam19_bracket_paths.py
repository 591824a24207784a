"""Red team 19: a model whose path holds '[' (`resnet [v2].onnx`, a folder `runs[1]`) or '::' ended
the run with pytest's own "path cannot contain [] parametrization" or "file or directory not
found" (the file exists): pytest reads both as parts of an item id in a path it collects. It is now
one line naming the model and the fix, before anything is written (the --report-json of the failed
run was written)."""

import pytest
from tiny_models import classifier, save


@pytest.mark.parametrize("name", ["resnet [v2].onnx", "a::b.onnx"])
def test_a_model_path_pytest_cannot_collect_is_a_usage_error(pytester, name):
    save(classifier(), pytester.path / name)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--model", name, "--target", "ort", "--report-json", "r.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: model '*{name.replace('[', '[[]')}': pytest reads '[[]' and '::' in a path it collects as part of an item id, "
                                 "so it cannot check a model there; rename it, or link it under another name*"])
    assert not (pytester.path / "r.json").exists()


def test_a_folder_holding_such_a_model_names_it(pytester):
    folder = pytester.mkdir("models")
    save(classifier(), folder / "good.onnx")
    save(classifier(), folder / "old [copy].onnx")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--model", "models", "--target", "ort")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: model '*old [[]copy].onnx': pytest reads*"])
