"""Red team 7: `--report-json` was written in pytest_sessionfinish, before the end of the run was
decided: a baseline that could not be written (the run then exits 1) or a SIGTERM during the
summary (exit 2) left a report saying `exit_status: 0`, the figure a CI dashboard reads. The report
is now written last, with the status the process returns."""

import json

import pytest
from tiny_models import classifier, save

from onnx2trt_check.baseline import baseline_path
from onnx2trt_check.environment import environment_key

SIGNAL_IN_SUMMARY = """
import os, signal, time
def pytest_terminal_summary(terminalreporter):
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.2)
"""


@pytest.mark.parametrize("workers", [[], ["-n", "2", "--dist", "loadfile"]])
def test_a_baseline_that_cannot_be_written_fails_the_run_and_the_report_says_so(pytester, workers):
    save(classifier(), pytester.path / "m.onnx")
    store = pytester.path / "bl"
    blocked = baseline_path(store, model_name="m.onnx", target="ort", environment=environment_key())
    blocked.mkdir(parents=True)  # a folder where the file goes: the write fails at session end
    result = pytester.runpytest_subprocess("--model", "m.onnx", "--target", "ort", "--baseline-dir", "bl", "--baseline-update",
                                           "--report-json", "r.json", "-p", "no:cacheprovider", *workers)
    assert result.ret == 1
    assert "could not write baseline" in result.stdout.str()
    assert json.loads((pytester.path / "r.json").read_text())["exit_status"] == 1


def test_a_signal_in_the_summary_is_the_reports_exit_status_too(pytester):
    save(classifier(), pytester.path / "m.onnx")
    pytester.makeconftest(SIGNAL_IN_SUMMARY)
    result = pytester.runpytest_subprocess("--model", "m.onnx", "--target", "ort", "--report-json", "r.json", "-p", "no:cacheprovider")
    assert result.ret == 2
    assert json.loads((pytester.path / "r.json").read_text())["exit_status"] == 2
