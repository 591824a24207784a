"""Red-team finding left to the owner of pytest_plugin/ (selection.py): a positional argument that
names no model of the run drops every model silently. `pytest --model m.onnx test_mine.py` runs
test_mine.py alone, exit 0, and the JSON report counts nothing. Strict xfail: it fails once fixed,
so the marker is removed with the fix."""

import json

import pytest
from tiny_models import classifier, save


@pytest.mark.xfail(strict=True, reason="pytest_plugin/selection.py Selection.split keeps only the arguments it is given")
def test_a_model_runs_beside_the_users_own_test_file(pytester):
    save(classifier(), pytester.path / "m.onnx")
    pytester.makepyfile(test_mine="def test_mine():\n    assert True\n")
    result = pytester.runpytest_inprocess("--model", "m.onnx", "test_mine.py", "--target", "ort", "-k", "structure or mine",
                                          "--report-json", "r.json")
    counts = json.loads((pytester.path / "r.json").read_text())["counts"]
    assert counts["passed"] >= 5, result.outlines  # the model's structure items, not test_mine alone
