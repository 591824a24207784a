"""`pytest --model` started beside a project's own conftest.py."""

import shutil
from pathlib import Path

MODEL = Path(__file__).resolve().parents[1] / "models" / "convbn_classifier.onnx"


def test_a_run_in_a_folder_with_its_own_conftest_has_no_internal_error(pytester, monkeypatch):
    # A conftest.py that does not cover the model's folder makes pytest ask pluggy for a subset hook
    # caller, which keeps every registered plugin in a set: a family's session plugin that was an
    # eq-dataclass (unhashable) broke such runs with an INTERNALERROR.
    project = pytester.mkdir("project")
    (project / "conftest.py").write_text("")
    shutil.copy(MODEL, pytester.path / "m.onnx")
    monkeypatch.chdir(project)
    result = pytester.runpytest_inprocess("--model", str(pytester.path / "m.onnx"), "--target", "ort", "-k", "accuracy")
    assert result.ret == 0 and "INTERNALERROR" not in result.stdout.str()
