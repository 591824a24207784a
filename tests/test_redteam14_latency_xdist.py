"""redteam14: `--latency -n 2` with a baseline folder measured no latency (every latency item
skips under pytest-xdist), compared none of the baseline files' latency samples, and the gate
exited 0 with `baseline::coverage` saying each target was checked; the README's CI command carries
`-n auto`, so a dedicated runner that adds `--latency` to it gated no latency at all. It is a usage
error now: one line naming --latency and -n, exit 4, nothing written."""

from __future__ import annotations

import scipy.stats  # noqa: F401  (see test_baseline_checks.py: pytester and scipy's C extensions)
from tiny_models import parse, save

MODEL = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 4] x) => (float[N, 4] y) { y = Relu(x) }
"""
LATENCY = ("--latency", "--latency-rounds", "20", "--latency-warmup", "0")


def test_a_latency_gate_under_xdist_is_a_usage_error(pytester):
    save(parse(MODEL), pytester.path / "m.onnx")
    for extra in ((), ("--baseline-update",)):
        result = pytester.runpytest_inprocess("--model", "m.onnx", "--baseline-dir", "bl", *LATENCY, "-n", "1", *extra)
        assert result.ret == 4, result.stdout.str()
        errors = [line for line in result.stderr.lines if line.startswith("ERROR:")]
        assert len(errors) == 1 and "--latency" in errors[0] and "-n" in errors[0], result.stderr.str()
        assert not (pytester.path / "bl").exists()


def test_latency_under_xdist_without_a_baseline_folder_still_skips_with_the_reason(pytester):
    save(parse(MODEL), pytester.path / "m.onnx")
    result = pytester.runpytest_inprocess("--model", "m.onnx", "-k", "latency", *LATENCY, "-n", "1")
    assert result.ret == 0, result.stdout.str()
    assert "latency is not measured under pytest-xdist" in result.stdout.str()
