"""A model whose layers sit in model-local functions (TorchScript's export_modules_as_functions,
onnxscript, other tools' exports): the checks see the nodes inside them, as TensorRT's parser does.
Before, every transform, the quantizer and bisect looked at the main graph alone: a Conv ->
BatchNormalization pair inside a function skipped fold_conv_bn as 'no pair in the model', and the
int8 model quantized the stem only, the function's Conv left in float without a word."""

import numpy as np
import onnx
import onnx.parser
import pytest
from onnx import numpy_helper

from onnx2trt_check import api
from onnx2trt_check.model import load_model

TEXT = """<ir_version: 8, opset_import: ["" : 17, "local" : 1]>
g (float[N,3,8,8] x) => (float[N,4,8,8] y) {
  s = Conv<pads = [1, 1, 1, 1]>(x, w0)
  y = local.Block(s, w1, scale, bias, mean, var)
}
<domain: "local", opset_import: ["" : 17]>
Block (h, w, scale, bias, mean, var) => (out) {
  c = Conv<pads = [1, 1, 1, 1]>(h, w)
  b = BatchNormalization(c, scale, bias, mean, var)
  r = Relu(b)
  out = Add(r, h)
}"""


def _model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    model = onnx.parser.parse_model(TEXT)
    weights = {"w0": rng.normal(size=(4, 3, 3, 3)), "w1": 0.3 * rng.normal(size=(4, 4, 3, 3)), "scale": rng.uniform(0.5, 2, 4),
               "bias": rng.normal(size=4), "mean": rng.normal(size=4), "var": rng.uniform(0.5, 2, 4)}
    model.graph.initializer.extend(numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items())
    onnx.checker.check_model(model)
    return model


@pytest.fixture
def block_model(tmp_path):
    path = tmp_path / "block.onnx"
    onnx.save(_model(), path)
    np.savez(tmp_path / "data.npz", x=np.random.default_rng(1).normal(size=(8, 1, 3, 8, 8)).astype(np.float32))
    return path


def test_the_loaded_model_has_the_function_inlined_and_the_file_is_untouched(block_model):
    before = block_model.read_bytes()
    loaded = load_model(block_model)
    assert loaded.inlined_calls == 1 and not loaded.proto.functions
    assert [n.op_type for n in loaded.proto.graph.node] == ["Conv", "Conv", "BatchNormalization", "Relu", "Add"]
    assert block_model.read_bytes() == before


def test_transforms_and_int8_reach_inside_the_function(block_model, tmp_path):
    result = api.check(str(block_model), pytest_args=[f"--inputs={tmp_path / 'data.npz'}", f"--calibration-data={tmp_path / 'data.npz'}",
                                                       "-k", "fold_conv_bn or quantize", "-p", "no:cacheprovider", "-q"])
    model = next(iter(result.report["models"].values()))
    fold = model["families"]["transform[fold_conv_bn]"]["checks"]["equivalence"]
    assert fold["outcome"] == "passed", fold.get("message")
    quantized = model["families"]["quantize[int8]"]["checks"]["report"]
    assert quantized["outcome"] == "passed" and quantized["figures"]["tensors_quantized"]["weights"] == 2, quantized
    assert any("1 call(s) of the model's local functions inlined" in note for note in model["notes"])


DEFAULTS = """<ir_version: 8, opset_import: ["" : 17, "local" : 1]>
g (float[1,8] x) => (float[1,8] y) { y = local.Act(x) }
<domain: "local", opset_import: ["" : 17]>
Act <alpha: float = 0.5> (h) => (out) { out = LeakyRelu <alpha: float = @alpha> (h) }"""


def test_a_functions_default_attribute_survives_the_inlining(tmp_path):
    """onnx's inliner drops a function's attribute defaults: LeakyRelu <alpha = @alpha> came out with
    LeakyRelu's own 0.01 for the function's 0.5, and quantize wrote and verified an int8 model of that
    other function (review19)."""
    import onnxruntime as ort

    path = tmp_path / "act.onnx"
    onnx.save(onnx.parser.parse_model(DEFAULTS), path)
    x = {"x": np.linspace(-2, 2, 8, dtype=np.float32).reshape(1, 8)}
    as_written = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, x)[0]
    inlined = load_model(path).proto
    assert not inlined.functions
    assert np.array_equal(ort.InferenceSession(inlined.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, x)[0], as_written)


NESTED = """<ir_version: 8, opset_import: ["" : 17, "local" : 1]>
g (float[1,8] x) => (float[1,8] y) { y = local.Outer(x) }
<domain: "local", opset_import: ["" : 17, "local" : 1]>
Outer <a> (h) => (out) { out = local.Act <alpha: float = @a> (h) }
<domain: "local", opset_import: ["" : 17]>
Act <alpha: float = 0.5> (h) => (out) { out = LeakyRelu <alpha: float = @alpha> (h) }"""


def test_a_default_behind_an_attribute_reference_keeps_the_model_as_written(tmp_path):
    """Outer's `a` unset: Act's alpha is its default 0.5, which the inliner lost to LeakyRelu's 0.01 (review19)."""
    import onnxruntime as ort

    path = tmp_path / "nested.onnx"
    onnx.save(onnx.parser.parse_model(NESTED), path)
    x = {"x": np.linspace(-2, 2, 8, dtype=np.float32).reshape(1, 8)}
    as_written = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, x)[0]
    loaded = load_model(path).proto
    assert np.array_equal(ort.InferenceSession(loaded.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, x)[0], as_written)


def test_a_model_proto_given_to_the_api_is_inlined_too_and_left_as_it_was(tmp_path):
    """api.quantize(ModelProto) took the proto as it was: the function's Conv stayed in float."""
    model = _model()
    before = model.SerializeToString()
    np.savez(tmp_path / "calib.npz", x=np.random.default_rng(1).normal(size=(16, 1, 3, 8, 8)).astype(np.float32))
    result = api.quantize(model, calibration_data=str(tmp_path / "calib.npz"))
    assert result.passed and not result.model.functions
    assert sum(t.kind == "weight" for t in result.build.report.tensors) == 2  # the stem's and the function's Conv
    assert model.SerializeToString() == before
