"""A positional argument that names no model of the run dropped every model silently:
`pytest --model m.onnx test_mine.py` ran test_mine.py alone, exit 0, and the JSON report counted
nothing (pytest_plugin/selection.py)."""

import json

from tiny_models import classifier, save


def test_a_model_runs_beside_the_users_own_test_file(pytester):
    save(classifier(), pytester.path / "m.onnx")
    pytester.makepyfile(test_mine="def test_mine():\n    assert True\n")
    result = pytester.runpytest_inprocess("--model", "m.onnx", "test_mine.py", "--target", "ort", "-k", "structure or mine",
                                          "--report-json", "r.json")
    counts = json.loads((pytester.path / "r.json").read_text())["counts"]
    assert counts["passed"] >= 5, result.outlines  # the model's structure items, not test_mine alone
    result.stdout.fnmatch_lines(["*test_mine.py .*"])  # and the user's own test too
