"""Fifth foreign-model pass, the fp16 artifacts of models written by other tools:
* onnxscript writes scalars as Constant<value_float>; ORT's float16 converter retypes only a
  Constant's `value` tensor, so the artifact held Div(fp16, fp32): ort-fp16 ended in an error and
  trt[fp16] failed a fine model on the parser's type error.
* a model that already computes part of itself in fp16 (Cast to fp16 inside, an fp16 Conv) got
  Cast(fp16)->Cast(fp32) round trips on its fp16 edges in the cpu-fp16-emu model, so an fp16 Conv
  read fp32: cpu-fp16-emu ended in an error. Such an edge is fp16 storage already.
* a model ORT's float16 converter made already (keep_io_types: its casts graph_output_cast0 ->
  output) went through that converter again and came out with two producers of the output:
  every fp16 item of an fp16 BERT from onnxruntime.transformers' optimizer ended in an error."""

import numpy as np
import onnx
import onnx.parser
import onnx_ir as ir
from onnxruntime.transformers.float16 import convert_float_to_float16

from onnx2trt_check.runtime import run_model
from onnx2trt_check.targets.fp16 import Fp16Settings, convert_with_settings, fp16_storage_emulation

FEEDS = [{"x": np.linspace(-3, 3, 8, dtype=np.float32).reshape(2, 4) * (i + 1)} for i in range(3)]

# Gelu written out, with its scalars as onnxscript writes them
SCALAR_CONSTANTS = """
<ir_version: 8, opset_import: ["": 18]>
g (float[2,4] x) => (float[2,4] y) {
  half = Constant<value_float = 0.5>()
  one = Constant<value_float = 1.0>()
  root2 = Constant<value_floats = [1.41421356]>()
  d = Div(x, root2)
  e = Erf(d)
  s = Add(e, one)
  m = Mul(x, s)
  y = Mul(m, half)
}"""

# the middle of the model computes in fp16 already
HALF_INSIDE = """
<ir_version: 8, opset_import: ["": 17]>
g (float[2,4] x) => (float[2,4] y) {
  a = Relu(x)
  h = Cast<to = 10>(a)
  t = Tanh(h)
  f = Cast<to = 1>(t)
  y = Mul(f, x)
}"""


def _artifact(model):
    return convert_with_settings(model, FEEDS, Fp16Settings()).model


def _close_to_reference(model, derived, atol):
    reference = run_model(model, FEEDS)
    got = run_model(derived, FEEDS)
    return all(np.allclose(g["y"], r["y"], atol=atol) for g, r in zip(got, reference, strict=True))


def test_the_fp16_artifact_of_scalar_constants_is_a_valid_model_close_to_the_original():
    model = onnx.parser.parse_model(SCALAR_CONSTANTS)
    artifact = _artifact(model)
    onnx.checker.check_model(artifact, full_check=True)
    assert _close_to_reference(model, artifact, atol=1e-2)


def test_the_emulation_of_a_model_computing_partly_in_fp16_runs_and_is_close():
    model = onnx.parser.parse_model(HALF_INSIDE)
    emulation = fp16_storage_emulation(model, _artifact(model))
    onnx.checker.check_model(emulation, full_check=True)
    assert _close_to_reference(model, emulation, atol=1e-2)


def test_the_fp16_artifact_of_a_model_that_ort_converted_to_fp16_already_is_valid():
    converted = ir.from_proto(convert_float_to_float16(onnx.parser.parse_model(HALF_INSIDE), keep_io_types=True))
    converted.graph.sort()  # the converter appends its casts; saved models are sorted (ORT's optimizer sorts)
    model = ir.to_proto(converted)
    assert {node.name for node in model.graph.node} >= {"graph_input_cast0", "graph_output_cast0"}
    artifact = _artifact(model)
    onnx.checker.check_model(artifact, full_check=True)
    assert _close_to_reference(model, artifact, atol=1e-2)
    assert _close_to_reference(model, fp16_storage_emulation(model, artifact), atol=1e-2)
