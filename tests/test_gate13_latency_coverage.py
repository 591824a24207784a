"""gate13: a gate whose command lost --latency, on the machine whose latency baselines it holds,
compared none of their samples and stayed green (the files were used for accuracy, so not even
listed as unused). `baseline::coverage` now fails for it, naming --latency."""

from __future__ import annotations

import json

import scipy.stats  # noqa: F401  (see test_baseline_checks.py: pytester and scipy's C extensions)
from tiny_models import parse, save

MODEL = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 4] x) => (float[N, 4] y) { y = Relu(x) }
"""
GATE = ("--model", "m.onnx", "-k", "baseline", "--baseline-dir", "bl", "--report-json", "r.json")
LATENCY = ("--latency", "--latency-rounds", "20", "--latency-warmup", "0")


def _coverage(pytester) -> dict:
    return json.loads((pytester.path / "r.json").read_text())["models"]["m.onnx"]["families"]["baseline"]["checks"]["coverage"]


def test_a_gate_that_lost_latency_fails_on_the_machine_that_recorded_it(pytester):
    save(parse(MODEL), pytester.path / "m.onnx")
    assert pytester.runpytest_inprocess(*GATE, *LATENCY, "--baseline-update").ret == 0
    timed = pytester.runpytest_inprocess(*GATE, *LATENCY)
    assert _coverage(pytester)["outcome"] == "passed", timed.stdout.str()
    lost = pytester.runpytest_inprocess(*GATE)
    assert lost.ret == 1
    coverage = _coverage(pytester)
    assert coverage["outcome"] == "failed"
    assert "this run measures no latency (no --latency)" in coverage["message"] and "Pass --latency" in coverage["message"]


def test_accuracy_only_baselines_need_no_latency(pytester):
    save(parse(MODEL), pytester.path / "m.onnx")
    assert pytester.runpytest_inprocess(*GATE, "--baseline-update").ret == 0
    pytester.runpytest_inprocess(*GATE)
    assert _coverage(pytester)["outcome"] == "passed"
