"""Second foreign-model pass, finding 1: a model calling a local function (onnxscript, exporters that
keep functions) got an invalid fp16 artifact. ORT's fp16 converter retypes the call's inputs and
outputs but not the function body, whose Constant stays fp32: Div(fp16, fp32). target[ort-fp16]
ended in an ONNX Runtime error and trt[fp16] failed blaming TensorRT's parser for our own artifact.
The converter now works on the model with its local functions inlined."""

import numpy as np
import onnx
import onnx.parser

from onnx2trt_check.precision.fp16 import convert_to_fp16
from onnx2trt_check.runtime import run_model
from onnx2trt_check.targets.fp16 import fp16_storage_emulation

GELU_CALLS = """
<ir_version: 8, opset_import: ["": 17, "local": 1]>
g (float[1,8] x) => (float[1,8] y) {
  a = local.Gelu2(x)
  y = local.Gelu2(a)
}
<domain: "local", opset_import: ["": 17]>
Gelu2 (X) => (Y) {
  half = Constant<value = float {0.5}>()
  root2 = Constant<value = float {1.4142135}>()
  d = Div(X, root2)
  e = Erf(d)
  one = Constant<value = float {1.0}>()
  p = Add(e, one)
  m = Mul(X, p)
  Y = Mul(m, half)
}"""


def feeds():
    return [{"x": np.linspace(-3, 3, 8, dtype=np.float32).reshape(1, 8)}]


def test_the_fp16_artifact_of_a_model_with_local_functions_is_valid_and_close(tmp_path):
    model = onnx.parser.parse_model(GELU_CALLS)
    artifact = convert_to_fp16(model, feeds()).model
    onnx.checker.check_model(artifact, full_check=True)
    onnx.save(artifact, tmp_path / "a.onnx")
    onnx.save(model, tmp_path / "m.onnx")
    got = run_model(tmp_path / "a.onnx", feeds())[0]["y"]
    want = run_model(tmp_path / "m.onnx", feeds())[0]["y"]
    np.testing.assert_allclose(got, want, atol=5e-3)
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for n in artifact.graph.node for a in n.attribute if a.HasField("t") for t in [a.t])


def test_the_emulation_rounds_inside_the_inlined_function(tmp_path):
    model = onnx.parser.parse_model(GELU_CALLS)
    artifact = convert_to_fp16(model, feeds()).model
    emulation = fp16_storage_emulation(model, artifact)
    onnx.save(emulation, tmp_path / "e.onnx")
    rounded = {n.input[0] for n in emulation.graph.node if n.op_type == "Cast" and n.name.endswith("/to_fp16")}
    # values computed inside the function body (onnx's inliner suffixes them __1, __2) are rounded too
    assert any("__" in name for name in rounded), rounded
    run_model(tmp_path / "e.onnx", feeds())


def test_the_input_model_keeps_its_functions():
    model = onnx.parser.parse_model(GELU_CALLS)
    before = model.SerializeToString()
    convert_to_fp16(model, feeds())
    assert model.SerializeToString() == before
