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


# The model under test itself partly quantized: 'plain' loses about 29 dB to fp16 storage (x * 200
# rounded in half, then cancelled), 'quant' goes through a Q/DQ pair. The fp16 targets judged 'plain'
# by the int8 profile (SQNR >= 20 dB) because the graph holds a Q/DQ pair elsewhere; no Q/DQ reaches
# it, so fp16's floor (30 dB) is the one a deployment of it meets.
PARTIAL = """
<ir_version: 8, opset_import: ["": 17]>
g (float[N,2,4] x) => (float[N,2,4] plain, float[N,2,4] quant)
  <float big = {200.0}, float[4] c = {0.3, -0.2, 0.1, 0.4},
   float[4,4] w2 = {0.1257, -0.1321, 0.6404, 0.1049, -0.5357, 0.3616, 1.304, 0.9471, -0.7037, -1.2654, -0.6233, 0.0413, -2.325, -0.2188, -1.2459, -0.7323},
   float s = {0.0079}, int8 z = {0}> {
  a = Mul(x, big)
  b = Add(a, c)
  d = Sub(b, a)
  plain = Add(d, x)
  q = QuantizeLinear(x, s, z)
  dq = DequantizeLinear(q, s, z)
  quant = MatMul(dq, w2)
}"""


def test_a_float_output_of_a_partly_quantized_model_meets_fp16s_floor_on_the_fp16_targets(tmp_path):
    model = tmp_path / "pq.onnx"
    onnx.save(onnx.parser.parse_model(PARTIAL), model)
    inputs = tmp_path / "x.npz"
    np.savez(inputs, x=np.random.default_rng(1).uniform(0, 1, (8, 4, 2, 4)).astype(np.float32))
    result = api.check(str(model), pytest_args=[f"--inputs={inputs}", "-k", "target", "-p", "no:cacheprovider", "-q"])
    families = next(iter(result.report["models"].values()))["families"]
    emulated = families["target[cpu-fp16-emu]"]["checks"]["accuracy"]
    assert emulated["outcome"] == "failed" and "'plain'" in emulated["message"], emulated
    assert "'quant'" not in emulated["message"], emulated
    assert families["target[ort]"]["checks"]["accuracy"]["outcome"] == "passed"
    assert families["target[ort-int8]"]["checks"]["accuracy"]["outcome"] == "passed"
