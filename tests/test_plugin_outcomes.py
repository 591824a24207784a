"""Every outcome pytest counts is in the summary and the JSON report, with its message: a check that
crashes, an error or a skip in setup (issue 13, point 3)."""

import json

import pytest
from tiny_models import classifier, save

from onnx2trt_check.report import CheckRecord, count_outcomes, summary_lines, verdict

LIGHT = ("--target", "ort", "-k", "structure or reference or target")

# A user's conftest.py that breaks three items three ways: the target's run raises (a crash, not a
# check outcome), the reference item's setup raises, and one structure item is skipped in setup.
CONFTEST = """
import pytest
from onnx2trt_check.targets.ort import OrtTarget

_run = OrtTarget.run

def _crash(self, model_path, feeds):
    raise ZeroDivisionError("boom in the target")

def pytest_configure(config):
    OrtTarget.run = _crash

def pytest_unconfigure(config):
    OrtTarget.run = _run  # in-process runs share the class

def pytest_runtest_setup(item):
    if item.nodeid.endswith("reference::run"):
        raise RuntimeError("setup broke")
    if item.nodeid.endswith("structure::versions"):
        pytest.skip("not today")
"""


@pytest.fixture
def broken(pytester):
    save(classifier(), pytester.path / "m.onnx")
    pytester.makeconftest(CONFTEST)


def _check_report(pytester, result) -> dict:
    outcomes = result.parseoutcomes()
    report = json.loads((pytester.path / "r.json").read_text())
    assert report["counts"] == {"passed": 5, "failed": 0, "error": 2, "skipped": 1}
    assert {k: outcomes.get(k + "s" if k == "error" else k, 0) for k in report["counts"]} == report["counts"]
    families = report["models"]["m.onnx"]["families"]
    assert families["target[ort]"]["checks"]["accuracy"] == {"outcome": "error", "message": "ZeroDivisionError: boom in the target", "figures": {}}
    assert families["reference"]["checks"]["run"]["outcome"] == "error"
    assert "RuntimeError: setup broke" in families["reference"]["checks"]["run"]["message"]
    assert families["structure"]["checks"]["versions"] == {"outcome": "skipped", "message": "not today", "figures": {}}
    return families


@pytest.mark.parametrize("xdist", [False, True])
def test_crashes_and_setup_errors_are_counted_as_pytest_counts_them(pytester, broken, xdist):
    run = pytester.runpytest_subprocess if xdist else pytester.runpytest_inprocess
    result = run("--model", "m.onnx", *LIGHT, "--report-json", "r.json", *(["-n", "2"] if xdist else []))
    result.assert_outcomes(passed=5, skipped=1, errors=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    _check_report(pytester, result)
    result.stdout.fnmatch_lines([
        "*onnx2trt_check summary*", "m.onnx",
        "*structure*PASSED*5 passed, 1 skipped*", "*reference*ERROR*1 error*", "*target[[]ort[]]*ERROR*1 error*",
        "*error in target[[]ort[]]::accuracy: ZeroDivisionError: boom in the target",
    ])
    result.stdout.fnmatch_lines(["ERROR m.onnx::target::accuracy[[]ort[]]*"])


def test_a_failed_check_is_still_failed_not_an_error(pytester):
    save(classifier(), pytester.path / "m.onnx")
    pytester.makeconftest("from onnx2trt_check.targets.ort import OrtTarget\n"
                          "_run = OrtTarget.run\n"
                          "def pytest_configure(config):\n"
                          "    OrtTarget.run = lambda self, path, feeds: [{k: v + 1 for k, v in o.items()} for o in _run(self, path, feeds)]\n"
                          "def pytest_unconfigure(config):\n"
                          "    OrtTarget.run = _run\n")
    result = pytester.runpytest_inprocess("--model", "m.onnx", *LIGHT, "--report-json", "r.json")
    result.assert_outcomes(passed=7, failed=1)
    assert json.loads((pytester.path / "r.json").read_text())["counts"] == {"passed": 7, "failed": 1, "error": 0, "skipped": 0}


def test_verdict_and_counts_of_records():
    records = [CheckRecord("m", "f", n, o, {}) for n, o in (("a", "passed"), ("b", "error"), ("c", "skipped"))]
    assert verdict(r.outcome for r in records) == "error"
    assert verdict(["error", "failed"]) == "failed" and verdict(["skipped"]) == "skipped"
    assert count_outcomes(records) == {"passed": 1, "failed": 0, "error": 1, "skipped": 1}
    assert any("ERROR" in line and "1 passed, 1 error, 1 skipped" in line for line in summary_lines(records, {}))
