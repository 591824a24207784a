"""hunt19: a derived model that fixes an input dimension the original leaves free (a pruned model
re-exported without dynamic axes: batch 'b' became 2) passed derived::parity at the data's batch
without a word; the deployment feeding the original's other batch sizes finds it refuses them.
The reference note now names the dimension."""

import onnx.parser

from onnx2trt_check.references import ReferenceModel

ONE = """
<ir_version: 8, opset_import: ["": 17]>
g (float[{dims}] x) => (float[{dims}] y) {{
  y = Neg(x)
}}"""


def _how(tmp_path, original_dims: str, derived_dims: str) -> str:
    original = tmp_path / "original.onnx"
    onnx.save(onnx.parser.parse_model(ONE.format(dims=original_dims)), original)
    return "; ".join(ReferenceModel(original).matching(onnx.parser.parse_model(ONE.format(dims=derived_dims))).how)


def test_a_batch_the_derived_model_fixes_is_named(tmp_path):
    how = _how(tmp_path, "b, 3, h, 8", "2, 3, h, 8")
    assert "input 'x' fixes dimension(s) 0 (b -> 2) that original model 'original.onnx' leaves free" in how, how


def test_dimensions_fixed_or_free_in_both_say_nothing(tmp_path):
    assert "fixes dimension" not in _how(tmp_path, "b, 3, 8", "b, 3, 8")
    assert "fixes dimension" not in _how(tmp_path, "2, 3, 8", "n, 3, 8")  # the derived model is the more general one


def test_the_note_reaches_the_run(pytester):
    onnx.save(onnx.parser.parse_model(ONE.format(dims="b, 4")), str(pytester.path / "original.onnx"))
    onnx.save(onnx.parser.parse_model(ONE.format(dims="1, 4")), str(pytester.path / "derived.onnx"))
    result = pytester.runpytest_inprocess("--model", "derived.onnx", "--reference-model", "original.onnx", "--target", "ort", "-k", "derived")
    result.stdout.fnmatch_lines(["*input 'x' fixes dimension(s) 0 (b -> 1)*leaves free*"])
