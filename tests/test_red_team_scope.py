"""Red-team finding on scope.py: a model that lists one output twice passed onnx.checker and the
reference, then its fp16 artifact, fp16 targets and trt[fp16] build each ended in an onnx_ir
SerdeError (4 items in error); it is refused at load in one line instead."""

import onnx
import pytest

from onnx2trt_check.errors import OutOfScopeError
from onnx2trt_check.model import load_model


def test_an_output_listed_twice_is_refused_at_load(tmp_path):
    model = onnx.parser.parse_model("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[2,3] x) => (float[2,3] z) { z = Relu(x) }""")
    model.graph.output.append(model.graph.output[0])
    onnx.save(model, tmp_path / "m.onnx")
    with pytest.raises(OutOfScopeError, match="output 'z' is listed twice"):
        load_model(tmp_path / "m.onnx")
