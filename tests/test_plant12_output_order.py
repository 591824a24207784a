"""plant12: a derived model whose outputs are listed in another order than the original's, names
kept, passed with the note "outputs matched by name"; a consumer that reads outputs by position
gets the other one. The note now says the order differs."""

import onnx.parser

from onnx2trt_check.references import ReferenceModel

TWO = """
<ir_version: 8, opset_import: ["": 17]>
g (float[2] x) => ({outputs}) {{
  a = Neg(x)
  b = Abs(x)
}}"""


def _how(tmp_path, derived_outputs: str) -> str:
    original = tmp_path / "original.onnx"
    onnx.save(onnx.parser.parse_model(TWO.format(outputs="float[2] a, float[2] b")), original)
    derived = onnx.parser.parse_model(TWO.format(outputs=derived_outputs))
    return "; ".join(ReferenceModel(original).matching(derived).how)


def test_outputs_in_another_order_are_named_in_the_note(tmp_path):
    how = _how(tmp_path, "float[2] b, float[2] a")
    assert "outputs matched by name, in another order than in original model 'original.onnx' (b, a vs a, b)" in how, how


def test_outputs_in_the_same_order_say_nothing_more(tmp_path):
    assert "another order" not in _how(tmp_path, "float[2] a, float[2] b")
    assert "another order" not in _how(tmp_path, "float[2] b")  # a subset, in the original's order
