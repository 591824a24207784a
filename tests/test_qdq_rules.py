"""validate_qdq: every rule fires on its planted violation (and no other rule does); the clean
network is silent; the input is not mutated; quantize_static models give the findings they should."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from qdq_strategies import VIOLATIONS, RulesSpec, rules_graph, rules_specs

from onnx2trt_check.quant.qdq_rules import RULES, format_findings, validate_qdq

PLANTED_NODES = {  # violation -> a node the finding must name
    "uint8_zero_point": "x_q", "nonzero_zero_point": "relu2_dq", "bad_scale": "concat_q",
    "weight_axis_conv": "w2_dq", "weight_axis_gemm": "w5_dq", "int32_bias": "b1_dq",
    "unquantized_input": "conv4", "conv_add_qdq": "conv2_q", "residual_unquantized": "add",
    "concat_scales": "concat", "passthrough_scale": "pool", "dangling_q": "dangling_q", "output_qdq": "y_dq",
}


@given(rules_specs(violation=st.none()))
def test_clean_network_has_no_findings(spec):
    assert validate_qdq(rules_graph(spec)) == []


@given(rules_specs(violation=st.sampled_from(sorted(VIOLATIONS))))
def test_planted_violation_fires_its_rule_only(spec):
    findings = validate_qdq(rules_graph(spec))
    assert {f.rule for f in findings} == VIOLATIONS[spec.violation], format_findings(findings)
    assert any(PLANTED_NODES[spec.violation] in f.nodes for f in findings), format_findings(findings)


@pytest.mark.parametrize("violation, severity", [("uint8_zero_point", "error"), ("bad_scale", "error"), ("weight_axis_conv", "warning"),
                                                 ("int32_bias", "error"), ("dangling_q", "warning"), ("conv_add_qdq", "warning"),
                                                 ("residual_unquantized", "warning"), ("concat_scales", "warning"),
                                                 ("passthrough_scale", "warning"), ("output_qdq", "warning"), ("unquantized_input", "warning")])
def test_severity(violation, severity):
    findings = validate_qdq(rules_graph(RulesSpec(3, (0.02, 0.03, 0.05, 0.1), 0, violation, 0.0)))
    assert findings and {f.severity for f in findings} == {severity}


def test_every_rule_is_exercised_by_a_plant():
    planted = set().union(*VIOLATIONS.values())
    assert len(RULES) == len(planted)


def test_input_model_not_mutated():
    model = rules_graph(RulesSpec(2, (0.02, 0.03, 0.05, 0.1), 0, "concat_scales"))
    before = model.SerializeToString()
    validate_qdq(model)
    assert model.SerializeToString() == before


def test_format_findings_names_rule_nodes_fix_and_counts():
    findings = validate_qdq(rules_graph(RulesSpec(2, (0.02, 0.03, 0.05, 0.1), 0, "int32_bias")))
    text = format_findings(findings)
    assert "QDQ004-int32-bias" in text and "b1_dq" in text and "fix:" in text and "1 error(s)" in text
    assert format_findings([]) == "Q/DQ placement: no problems found"


MATMUL = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[2, 4] x) => (float[2, 3] y) <int8[4, 3] w = {{1,2,3,4,5,6,7,8,9,10,11,12}}, float[{shape}] s = {scales}, int8[{shape}] z = {zeros},
                                        float xs = {{0.1}}, int8 xz = {{0}}> {{
    xq = QuantizeLinear(x, xs, xz)
    xd = DequantizeLinear(xq, xs, xz)
    wd = DequantizeLinear <axis = {axis}> (w, s, z)
    y = MatMul(xd, wd)
}}
"""


@pytest.mark.parametrize("axis, channels, fires", [(1, 3, False), (-1, 3, False), (0, 4, True)])
def test_matmul_weight_axis_is_the_output_axis(axis, channels, fires):
    text = MATMUL.format(shape=channels, scales="{" + ",".join(["0.1"] * channels) + "}", zeros="{" + ",".join(["0"] * channels) + "}", axis=axis)
    findings = validate_qdq(onnx.parser.parse_model(text))
    assert any(f.rule == "QDQ003-weight-axis" for f in findings) == fires


def _quantize_static(tmp_path, **options):
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        quantize_static,
    )

    text = """<ir_version: 8, opset_import: ["" : 17]>
    g (float[1, 2, 5, 5] x) => (float[1, 2, 5, 5] y) <float[2, 2, 3, 3] w1 = {W1}, float[2, 2, 1, 1] w2 = {W2}> {
        c = Conv <pads = [1, 1, 1, 1]> (x, w1)
        r = Relu(c)
        d = Conv(r, w2)
        y = Add(d, r)
    }"""
    rng = np.random.default_rng(0)
    text = text.replace("W1", "{" + ",".join(f"{v:.3f}" for v in rng.normal(size=36)) + "}").replace("W2", "{" + ",".join(f"{v:.3f}" for v in rng.normal(size=4)) + "}")
    (tmp_path / "f.onnx").write_bytes(onnx.parser.parse_model(text.replace("{{", "{").replace("}}", "}")).SerializeToString())

    class Feeds(CalibrationDataReader):
        def __init__(self):
            self.feeds = iter([{"x": rng.normal(size=(1, 2, 5, 5)).astype(np.float32)} for _ in range(2)])

        def get_next(self):
            return next(self.feeds, None)

    quantize_static(str(tmp_path / "f.onnx"), str(tmp_path / "q.onnx"), Feeds(), quant_format=QuantFormat.QDQ, per_channel=True, **options)
    return onnx.load(str(tmp_path / "q.onnx"))


def test_onnxruntime_default_uint8_quantization_is_rejected(tmp_path):
    findings = validate_qdq(_quantize_static(tmp_path))
    assert any(f.rule == "QDQ001-zero-point" and f.severity == "error" for f in findings)


def test_onnxruntime_symmetric_int8_float_bias_has_no_errors(tmp_path):
    from onnxruntime.quantization import QuantType

    model = _quantize_static(tmp_path, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                             extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False})
    findings = validate_qdq(model)
    assert [f for f in findings if f.severity == "error"] == [], format_findings(findings)
