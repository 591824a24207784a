"""zoo13: a random-init deep plain CNN (torch's default init, no BatchNorm, 13 Conv+ReLU, softmax)
shrinks its activations layer by layer: its class probabilities are 0.08..0.12 with differences
across feeds of 1.5e-8, one or two float32 ulps. liveness.py asked for bit-identical outputs, so the
model counted as live: every target passed (int8 at "85 dB, top-1 100%"), `quantize` wrote it, and
a derived model with one Conv's weights doubled passed `derived::parity` at max abs 1.5e-7. Outputs
that differ across differing feeds by no more than float32 rounding (1e-6 of the output's largest
magnitude) are the signal of a dead network, as bit-identical ones are."""

import numpy as np
import onnx
import onnx.parser

from onnx2trt_check import api
from onnx2trt_check.liveness import ignores_its_inputs

# The input scaled by 1e-7 before the classifier: the softmax moves by about one ulp between feeds.
NEAR_DEAD = """
<ir_version: 8, opset_import: ["": 17]>
g (float[N,4] x) => (float[N,4] y) <float[4,4] w = {{{w}}}, float tiny = {{1e-7}}, float[4] b = {{0.1, -0.2, 0.3, 0.0}}> {{
  s = Mul(x, tiny)
  m = MatMul(s, w)
  a = Add(m, b)
  y = Softmax<axis = -1>(a)
}}"""
W = "1,2,3,4,5,6,7,8,9,1,2,3,4,5,6,7"
WRONG = "2,4,6,8,10,12,14,16,18,2,4,6,8,10,12,14"  # every weight doubled


def _files(tmp_path):
    model, derived = tmp_path / "m.onnx", tmp_path / "derived.onnx"
    onnx.save(onnx.parser.parse_model(NEAR_DEAD.format(w=W)), model)
    onnx.save(onnx.parser.parse_model(NEAR_DEAD.format(w=WRONG)), derived)
    data = tmp_path / "x.npz"
    np.savez(data, x=np.random.default_rng(0).uniform(0, 1, (8, 2, 4)).astype(np.float32))
    return model, derived, data


def _families(result) -> dict:
    return next(iter(result.report["models"].values()))["families"]


def test_outputs_that_differ_by_rounding_alone_are_a_dead_signal():
    rng = np.random.default_rng(0)
    feeds = [{"x": rng.uniform(size=(2, 4)).astype(np.float32)} for _ in range(3)]
    base = np.array([[0.1, 0.2, 0.3, 0.4]] * 2, np.float32)
    ulp = np.spacing(np.float32(0.4))
    assert ignores_its_inputs(feeds, [[base, base + ulp, base - 2 * ulp]])
    assert not ignores_its_inputs(feeds, [[base, base + 1e-4, base - 1e-4]])  # a small but real signal


def test_a_near_dead_reference_fails_and_a_wrong_derived_model_does_not_pass(tmp_path):
    model, derived, data = _files(tmp_path)
    result = api.check(str(model), pytest_args=[f"--inputs={data}", "-p", "no:cacheprovider", "-q", "-k", "reference or target"])
    checks = _families(result)["reference"]["checks"]
    assert checks["run"]["outcome"] == "failed", checks
    result = api.check(str(derived), pytest_args=[f"--reference-model={model}", f"--inputs={data}", "-p", "no:cacheprovider", "-q",
                                                  "-k", "derived"])
    parity = _families(result)["derived"]["checks"]["parity"]
    assert parity["outcome"] == "failed" and "cannot be verified" in parity["message"], parity
