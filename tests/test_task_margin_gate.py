"""gate13: a task figure in small units (the README's "return -rmse for an error") moved by less than
the fixed 0.01 margin passed the regression gate though its error more than doubled. With
--max-metric-drop the gate's margin for task figures is that drop, in the figure's own unit."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.parser

MODEL = """<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 4] x) => (float[N, 4] y) <float w = {%s}> { y = Mul(x, w) }"""
METRIC = """
import numpy as np
def score(outputs, labels):
    y = np.asarray(outputs["y"])
    return {"neg_mae": -float(np.mean(np.abs(y - labels.reshape(y.shape))))}
"""


def _setup(pytester, weight: float) -> None:
    onnx.save(onnx.parser.parse_model(MODEL % weight), pytester.path / "m.onnx")


def _gate(pytester, *extra):
    return pytester.runpytest_subprocess("--model", "m.onnx", "--inputs", "x.npz", "--labels", "labels.npy", "--metric", "metric.py:score",
                                         "--baseline-dir", "bl", "--target", "ort", "-k", "baseline", "-p", "no:cacheprovider", *extra)


def test_a_doubled_error_fails_the_gate_under_max_metric_drop(pytester):
    x = np.random.default_rng(0).uniform(0.2, 1.0, size=(4, 1, 4)).astype(np.float32)
    np.savez(pytester.path / "x.npz", x=x)
    np.save(pytester.path / "labels.npy", x.reshape(4, 4))
    pytester.makepyfile(metric=METRIC)
    _setup(pytester, 1.007)  # error about 0.004
    assert _gate(pytester, "--baseline-update").ret == 0
    _setup(pytester, 1.015)  # error about 0.009: more than doubled, less than 0.01 moved
    assert _gate(pytester).ret == 0  # the default margin is 0.01 in the figure's unit (documented)
    strict = _gate(pytester, "--max-metric-drop", "0.001")
    assert strict.ret == 1, strict.stdout.str()
    strict.stdout.fnmatch_lines(["*neg_mae*regression*"])
