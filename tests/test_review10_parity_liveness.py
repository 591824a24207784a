"""review10: derived::parity (and export::parity, the same comparison) PASSED at max abs 0 where the
original ignores its inputs on the data: a derived model with a wrong weight upstream of the dead
layer agreed with it, and `-k parity` made that a green run (reference::run, which fails such a
model, was deselected). A comparison with a dead reference cannot be verified, and fails, as the
targets do."""

import numpy as np
import onnx
import onnx.parser

from onnx2trt_check import api

# Relu(x * w - 100) is 0 on normal inputs: y = 0.25 whatever x and w are.
MODEL = """
<ir_version: 8, opset_import: ["": 17]>
g (float[N,4] x) => (float[N,4] y) <float[4] w = {{{w}}}, float b = {{{bias}}}, float c = {{0.25}}> {{
  m = Mul(x, w)
  a = Add(m, b)
  r = Relu(a)
  y = Add(r, c)
}}"""


def _parity(tmp_path, bias: str) -> dict:
    original, derived = tmp_path / "original.onnx", tmp_path / "derived.onnx"
    onnx.save(onnx.parser.parse_model(MODEL.format(w="1, 1, 1, 1", bias=bias)), original)
    onnx.save(onnx.parser.parse_model(MODEL.format(w="1, -7, 3, 1", bias=bias)), derived)
    inputs = tmp_path / "x.npz"
    np.savez(inputs, x=np.random.default_rng(0).normal(size=(3, 2, 4)).astype(np.float32))
    result = api.check(str(derived), pytest_args=[f"--reference-model={original}", f"--inputs={inputs}", "-k", "parity",
                                                  "-p", "no:cacheprovider", "-q"])
    return next(iter(result.report["models"].values()))["families"]["derived"]["checks"]["parity"]


def test_parity_with_a_dead_original_cannot_be_verified(tmp_path):
    parity = _parity(tmp_path, "-100.0")
    assert parity["outcome"] == "failed" and "cannot be verified" in parity["message"] and "ignores its inputs" in parity["message"], parity


def test_the_same_wrong_weight_fails_where_the_original_is_alive(tmp_path):
    assert _parity(tmp_path, "0.0")["outcome"] == "failed"
