"""review16: onnxruntime's quantize_static puts a QuantizeLinear/DequantizeLinear pair on the final
Concat's output, so a Q/DQ model's output is made by a DequantizeLinear and output_layout found no
parts in it. The one-class YOLOv8-style detector whose scores that pair's pixel-box scale made one
constant value (the case the part floors were made for, 83 dB before) passed derived::parity and
target[ort-int8] at 43.7 dB when the Q/DQ model itself was checked (--model q.onnx --reference-model
float.onnx): the parts were only found in a float graph. A Q/DQ pair is now followed like Identity."""

from __future__ import annotations

import numpy as np
import onnx.parser

from onnx2trt_check.compare import compare_output
from onnx2trt_check.config import PRECISION_PROFILES
from onnx2trt_check.output_layout import OutputLayout, Segments, concat_segments
from onnx2trt_check.runtime import run_model

QDQ_OUTPUT = """
<ir_version: 8, opset_import: ["": 17]>
g (float[N,4,8] boxes, float[N,1,8] scores) => (float[N,8,5] y) <float s = {2.5}, uint8 z = {0}> {
  c = Concat<axis = 1>(boxes, scores)
  q = QuantizeLinear(c, s, z)
  d = DequantizeLinear(q, s, z)
  t = Transpose<perm = [0, 2, 1]>(d)
  q2 = QuantizeLinear(t, s, z)
  y = DequantizeLinear(q2, s, z)
}"""
FLOAT_OUTPUT = """
<ir_version: 8, opset_import: ["": 17]>
g (float[N,4,8] boxes, float[N,1,8] scores) => (float[N,8,5] y) {
  c = Concat<axis = 1>(boxes, scores)
  y = Transpose<perm = [0, 2, 1]>(c)
}"""


def test_a_qdq_pair_after_the_concat_is_followed():
    assert concat_segments(onnx.parser.parse_model(QDQ_OUTPUT)) == {"y": Segments(2, (("boxes", 4), ("scores", 1)))}


def test_a_lone_dequantize_is_not_followed():
    """A DequantizeLinear of an integer tensor made elsewhere (not a Q/DQ pair) is no pass-through."""
    model = onnx.parser.parse_model("""<ir_version: 8, opset_import: ["": 17]>
    g (uint8[N,5] a) => (float[N,5] y) <float s = {2.5}, uint8 z = {0}> { y = DequantizeLinear(a, s, z) }""")
    assert concat_segments(model) == {}


def test_scores_the_output_pair_flattens_fail_in_the_qdq_model():
    rng = np.random.default_rng(0)
    feeds = [{"boxes": 640 * rng.uniform(size=(1, 4, 8)).astype(np.float32), "scores": rng.uniform(size=(1, 1, 8)).astype(np.float32)}
             for _ in range(8)]
    qdq = onnx.parser.parse_model(QDQ_OUTPUT)
    reference = [o["y"] for o in run_model(onnx.parser.parse_model(FLOAT_OUTPUT), feeds)]
    target = [o["y"] for o in run_model(qdq, feeds)]
    stats = compare_output("y", reference, target, PRECISION_PROFILES["int8"], OutputLayout(concat_segments(qdq).get("y")))
    assert not stats.passed and any("SQNR of the part 'scores'" in p for p in stats.problems), stats.problems
