"""zoo12 int16_qdq (onnxruntime quantize_static with QInt16 activations, zero point -32768): qdq
placement said only "QuantizeLinear has a non-zero zero point (-32768)", fix "quantize
symmetrically": followed, the model is still unbuildable (TensorRT has no int16 Q/DQ). A type
TensorRT has no Q/DQ for is named first, whatever the zero point."""

from __future__ import annotations

import onnx.parser

from onnx2trt_check.quant.qdq_rules import validate_qdq

INT16 = """
<ir_version: 10, opset_import: ["": 21]>
g (float[2,16] x) => (float[2,16] y) <float s = {0.01}, int16 z = {ZP}> {
  q = QuantizeLinear(x, s, z)
  y = DequantizeLinear(q, s, z)
}"""


def test_an_int16_qdq_is_refused_for_its_type_before_its_zero_point():
    for zero_point in ("-32768", "0"):
        findings = [f for f in validate_qdq(onnx.parser.parse_model(INT16.replace("ZP", zero_point))) if f.rule == "QDQ001-zero-point"]
        assert len(findings) == 2 and all(f.severity == "error" and "INT16" in f.message for f in findings), (zero_point, findings)
