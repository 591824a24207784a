"""An item whose xdist worker dies (a segfault in a runtime, an OOM kill) is a failure in the
summary and the JSON counts, as pytest counts it: no check wrote a record for it, and the report
said failed 0 while pytest said 1 failed (review8)."""

from __future__ import annotations

import json

from tiny_models import classifier, save

CONFTEST = """
import os
def pytest_runtest_call(item):
    if item.nodeid.endswith("target::accuracy[ort-fp16]"):
        os._exit(1)  # the worker dies in the item
"""


def test_a_worker_crash_is_counted_as_pytest_counts_it(pytester):
    save(classifier(), pytester.path / "m.onnx")
    pytester.makeconftest(CONFTEST)
    result = pytester.runpytest_subprocess("--model", "m.onnx", "--target", "ort", "--target", "ort-fp16", "-n", "2",
                                           "--report-json", "r.json", "-p", "no:cacheprovider")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*target[[]ort-fp16[]] * FAILED * 1 failed*"])
    counts = json.loads((pytester.path / "r.json").read_text())["counts"]
    assert counts["failed"] == 1, counts
    assert counts["passed"] == result.parseoutcomes()["passed"]


def test_a_dead_worker_leaves_no_run_folder_behind(pytester, monkeypatch, tmp_path):
    """A worker that dies removes nothing itself: its run folder lies inside the controller's, which
    the controller removes (one empty-looking `onnx2trt_check-run-*` was left per crashed worker)."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setenv("TMPDIR", str(temporary))
    save(classifier(), pytester.path / "m.onnx")
    pytester.makeconftest(CONFTEST)
    result = pytester.runpytest_subprocess("--model", "m.onnx", "--target", "ort", "--target", "ort-fp16", "-n", "2",
                                           "-p", "no:cacheprovider")
    assert result.ret == 1
    assert sorted(p.name for p in temporary.iterdir()) == [], result.stdout.str()
