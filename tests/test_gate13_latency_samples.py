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


def test_more_rounds_than_a_baseline_file_stores_are_a_usage_error(pytester):
    """left16: `--latency-rounds 500000 --baseline-update` wrote every sample into the baseline file
    (200000 rounds of this Relu: a 3.4 MB JSON file to commit and review). A summary would not do:
    the gate's Mann-Whitney U test over 1000 stored quantiles instead of 20000 samples fired on 0/20
    of a 6% slowdown where the full samples fired on 15/20 (log-sd 1.0); so with a baseline folder
    the rounds stop at MAX_BASELINE_ROUNDS, every one of them stored, the gate as able as before."""
    from onnx2trt_check.pytest_plugin import baselines

    MAX_BASELINE_ROUNDS = getattr(baselines, "MAX_BASELINE_ROUNDS", 10_000)  # noqa: N806  (10_000: the value it states)
    save(parse(MODEL), pytester.path / "m.onnx")
    for flags in (["--baseline-update"], []):
        result = pytester.runpytest_inprocess(*ONLY, "--latency-rounds", str(MAX_BASELINE_ROUNDS + 1), *flags)
        assert result.ret == 4, result.stdout.str()
        result.stderr.fnmatch_lines([f"*--latency-rounds {MAX_BASELINE_ROUNDS + 1} with a baseline folder*every sample*"
                                     f"--latency-rounds {MAX_BASELINE_ROUNDS} or fewer*"])
        assert not (pytester.path / "bl").exists()
    alone = pytester.runpytest_inprocess("--model", "m.onnx", "--target", "ort", "-k", "latency", "--latency", "--latency-warmup", "0",
                                         "--latency-rounds", str(MAX_BASELINE_ROUNDS + 1))
    assert alone.ret == 0, alone.stdout.str()  # no baseline folder: nothing stores the samples
    recorded = pytester.runpytest_inprocess(*ONLY, "--latency-rounds", str(MAX_BASELINE_ROUNDS), "--baseline-update")
    assert recorded.ret == 0, recorded.stdout.str()
    (path,) = (pytester.path / "bl").glob("*.json")
    assert len(json.loads(path.read_text())["latency"]["data"]) <= MAX_BASELINE_ROUNDS
