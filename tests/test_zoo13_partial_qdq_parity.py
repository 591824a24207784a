"""zoo13: `derived::parity` judged every output of a derived model by the int8 profile (SQNR >= 20 dB)
as soon as the graph held one QuantizeLinear/DequantizeLinear. A derived BERT whose layer-1 FFN weight
was 30% off (last_hidden_state at 43.7 dB: fp32 parity fails it) passed once its pooler weight alone
went through a Q/DQ pair, though no Q/DQ reaches last_hidden_state. An output that no Q/DQ node (or
integer op) reaches is computed in float, and is judged by the float profile; the outputs a Q/DQ
reaches keep int8's."""

import numpy as np
import onnx
import onnx.parser

from onnx2trt_check import api

ORIGINAL = """
<ir_version: 8, opset_import: ["": 17]>
g (float[N,8] x) => (float[N,4] plain, float[N,4] quant) <float[8,4] w1 = {{{w1}}}, float[8,4] w2 = {{{w2}}}> {{
  plain = MatMul(x, w1)
  quant = MatMul(x, w2)
}}"""
# The derived model: branch 'quant' reads its input through a Q/DQ pair (an honest int8 layer).
DERIVED = """
<ir_version: 8, opset_import: ["": 17]>
g (float[N,8] x) => (float[N,4] plain, float[N,4] quant)
  <float[8,4] w1 = {{{w1}}}, float[8,4] w2 = {{{w2}}}, float s = {{0.0079}}, int8 z = {{0}}> {{
  plain = MatMul(x, w1)
  q = QuantizeLinear(x, s, z)
  d = DequantizeLinear(q, s, z)
  quant = MatMul(d, w2)
}}"""
RNG = np.random.default_rng(0)
W1, W2 = RNG.normal(size=(8, 4)), RNG.normal(size=(8, 4))


def _text(template: str, w1: np.ndarray) -> str:
    return template.format(w1=", ".join(f"{v:.6f}" for v in w1.ravel()), w2=", ".join(f"{v:.6f}" for v in W2.ravel()))


def _parity(tmp_path, derived_w1: np.ndarray) -> dict:
    model, reference = tmp_path / "derived.onnx", tmp_path / "original.onnx"
    onnx.save(onnx.parser.parse_model(_text(DERIVED, derived_w1)), model)
    onnx.save(onnx.parser.parse_model(_text(ORIGINAL, W1)), reference)
    inputs = tmp_path / "x.npz"
    np.savez(inputs, x=RNG.uniform(0, 1, (8, 4, 8)).astype(np.float32))
    result = api.check(str(model), pytest_args=[f"--reference-model={reference}", f"--inputs={inputs}", "-k", "derived",
                                                "-p", "no:cacheprovider", "-q"])
    return next(iter(result.report["models"].values()))["families"]["derived"]["checks"]["parity"]


def test_a_wrong_float_layer_beside_a_qdq_layer_fails_parity(tmp_path):
    parity = _parity(tmp_path, W1 * 1.02)  # 34 dB, cosine 1: within int8's floors, far outside fp32's
    assert parity["outcome"] == "failed", parity
    assert "'plain'" in parity["message"] and "'quant'" not in parity["message"].split("\n")[0], parity


def test_the_honest_partly_quantized_model_passes(tmp_path):
    parity = _parity(tmp_path, W1)
    assert parity["outcome"] == "passed", parity
    assert parity["figures"]["outputs_in_float"] == ["plain"], parity["figures"]
