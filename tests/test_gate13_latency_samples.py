"""gate13: a latency baseline recorded with fewer rounds than the latency rule compares
(`--latency-rounds 5`, min_samples 20) was written without a word, and every later gate skipped its
latency comparison: a model made 6.7x slower passed the gate, exit 0. Now such a run is a usage
error, and a baseline file holding too few samples fails (it can never be compared)."""

from __future__ import annotations

import json

import scipy.stats  # noqa: F401  (see test_baseline_checks.py: pytester and scipy's C extensions)
from tiny_models import parse, save

MODEL = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 4] x) => (float[N, 4] y) { y = Relu(x) }
"""
ONLY = ("--model", "m.onnx", "--target", "ort", "-k", "latency or baseline", "--baseline-dir", "bl", "--latency", "--latency-warmup", "0")


def test_recording_fewer_rounds_than_the_gate_compares_is_a_usage_error(pytester):
    save(parse(MODEL), pytester.path / "m.onnx")
    result = pytester.runpytest_inprocess(*ONLY, "--latency-rounds", "5", "--baseline-update")
    assert result.ret == 4, result.stdout.str()
    result.stderr.fnmatch_lines(["*--latency-rounds 5 with a baseline folder*at least 20 samples*--latency-rounds 20 or more*"])
    assert not (pytester.path / "bl").exists()
    gate = pytester.runpytest_inprocess(*ONLY, "--latency-rounds", "5")
    assert gate.ret == 4, gate.stdout.str()


def test_a_baseline_of_too_few_samples_fails_rather_than_skipping_every_gate(pytester):
    save(parse(MODEL), pytester.path / "m.onnx")
    recorded = pytester.runpytest_inprocess(*ONLY, "--latency-rounds", "20", "--baseline-update")
    assert recorded.ret == 0, recorded.stdout.str()
    (path,) = (pytester.path / "bl").glob("*.json")
    document = json.loads(path.read_text())
    document["latency"]["data"] = document["latency"]["data"][:5]  # an older baseline, or a hand-edit
    path.write_text(json.dumps(document))
    gate = pytester.runpytest_inprocess(*ONLY, "--latency-rounds", "20", "--report-json", "r.json")
    assert gate.ret == 1, gate.stdout.str()
    checks = json.loads((pytester.path / "r.json").read_text())["models"]["m.onnx"]["families"]["baseline[ort]"]["checks"]
    assert checks["latency"]["outcome"] == "failed"
    assert "holds 5 sample(s), fewer than the 20 the gate compares" in checks["latency"]["message"]
