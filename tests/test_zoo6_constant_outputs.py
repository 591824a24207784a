"""Sixth foreign-model pass: a model whose output depends on no input (an input a trace baked in
as a constant, or an input no node reads) passed every item without a word: each artifact computes
the same constant, so the comparisons measure the weights alone. The summary now says so."""

import onnx
import onnx.parser
import pytest

CONST_ONLY = """
<ir_version: 8, opset_import: ["": 17]>
g (float[2,4] x) => (float[4] y, float[2,4] z) {
  c = Constant<value = float[4] {1,2,3,4}>()
  y = Sigmoid(c)
  z = Relu(x)
}"""

LOOP_CAPTURE = """
<ir_version: 8, opset_import: ["": 17]>
g (float[2] x, int64 n) => (float[2] y) {
  t = Constant<value = bool true>()
  y = Loop(n, t, x) <body = b (int64 i, bool c, float[2] s) => (bool co, float[2] so) { co = Identity(c) so = Add(s, s) }>
}"""


def test_outputs_no_input_reaches_are_found():
    from onnx2trt_check.protos import input_independent_outputs

    assert input_independent_outputs(onnx.parser.parse_model(CONST_ONLY)) == ["y"]
    assert input_independent_outputs(onnx.parser.parse_model(LOOP_CAPTURE)) == []


def test_the_summary_notes_an_output_that_depends_on_no_input(tmp_path, capsys):
    onnx.save(onnx.parser.parse_model(CONST_ONLY), tmp_path / "m.onnx")
    code = pytest.main([f"--model={tmp_path / 'm.onnx'}", "-p", "no:cacheprovider", "-q", "-k", "reference"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "output 'y' depends on no input" in out and "output 'z'" not in out, out
