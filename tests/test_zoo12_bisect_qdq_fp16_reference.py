"""zoo12: `bisect --target cpu-fp16-emu` on a model with Q/DQ nodes compared the fp16 artifact with
the model's float counterpart (Q/DQ removed), so the quantization error the model was built with
was reported as fp16's error sources, while the target's own verdict compares with the Q/DQ model
as written. Only the int8 targets compare with the counterpart now."""

import numpy as np
import onnx
import onnx.parser

from onnx2trt_check import api

# A coarse activation quantizer (scale 0.25 on inputs in 0..1): the Q/DQ model is far from its
# float counterpart, and fp16 storage changes it by nothing a quantum would show.
COARSE_QDQ = """
<ir_version: 8, opset_import: ["": 17]>
g (float[1,2,4,4] x) => (float[1,2,4,4] y)
  <float s = {0.25}, int8 z = {0}, float[2,2,1,1] w = {0.7, -0.3, 0.2, 0.9}> {
  q = QuantizeLinear(x, s, z)
  d = DequantizeLinear(q, s, z)
  y = Conv(d, w)
}"""


def _bisect(tmp_path, target: str):
    model = tmp_path / "qdq.onnx"
    onnx.save(onnx.parser.parse_model(COARSE_QDQ), model)
    inputs = tmp_path / "x.npz"
    np.savez(inputs, x=np.random.default_rng(0).uniform(0, 1, (4, 1, 2, 4, 4)).astype(np.float32))
    return api.bisect(str(model), target=target, inputs=str(inputs))


def test_an_fp16_target_is_bisected_against_the_qdq_model_as_written(tmp_path):
    outcome = _bisect(tmp_path, "cpu-fp16-emu")
    assert outcome.document["reference"] == "the model", outcome.document["reference"]
    assert any("no tensor beyond tolerance" in line for line in outcome.lines), outcome.lines


def test_the_int8_target_still_measures_against_the_float_counterpart(tmp_path):
    outcome = _bisect(tmp_path, "ort-int8")
    assert "float counterpart" in outcome.document["reference"], outcome.document["reference"]
