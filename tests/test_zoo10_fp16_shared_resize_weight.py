"""Tenth foreign-model pass (TensorFlow through tf2onnx): tf2onnx passes one empty float initializer
as both Resize's roi and its scales (tf.image.resize with computed sizes). ORT's fp16 converter kept
the scales slot fp32 by casting the converted roi back, so the scales became a computed value ONNX
Runtime cannot see is empty: the fp16 artifact did not load ("Either `sizes` or `scales` must be
provided, but not both") and target[ort-fp16] ended in an error item."""

import numpy as np
import onnx
import onnx.parser
import onnxruntime as ort

from onnx2trt_check.precision.fp16 import convert_to_fp16

RESIZE_SHARED_EMPTY = """
<ir_version: 8, opset_import: ["": 17]>
g (float[1,3,4,4] x) => (float[1,3,8,8] y) <float[0] empty = {}, int64[4] sizes = {1,3,8,8}> {
  y = Resize<mode = "linear", coordinate_transformation_mode = "half_pixel">(x, empty, empty, sizes)
}"""


def test_fp16_artifact_of_a_resize_reading_one_empty_weight_twice_runs_and_matches():
    model = onnx.parser.parse_model(RESIZE_SHARED_EMPTY)
    x = np.random.default_rng(0).random((1, 3, 4, 4), dtype=np.float32)
    reference = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    converted = convert_to_fp16(model, [{"x": x}]).model
    result = ort.InferenceSession(converted.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(result, reference, atol=2e-3)
    resize = next(node for node in converted.graph.node if node.op_type == "Resize")
    scales = {t.name: t for t in converted.graph.initializer}[resize.input[2]]
    assert scales.data_type == onnx.TensorProto.FLOAT and list(scales.dims) == [0]
    assert model.graph.node[0].input[1] == model.graph.node[0].input[2]  # the input is untouched,
    assert sorted(t.name for t in model.graph.initializer) == ["empty", "sizes"]  # its weights' names too
