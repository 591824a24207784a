"""review16: YOLOv5's output joins its levels along the anchors (Concat axis 1), each level itself a
Concat of xy, wh (pixels) and scores along the last axis, reshaped to [N, anchors, 5 + classes]. The
parts output_layout found were the levels, each carried by its pixel boxes: a one-class detector
quantized by onnxruntime's quantize_static (symmetric int8) whose objectness and class score came
out as one constant value on every anchor of 16 feeds passed derived::parity and target[ort-int8]
at 37.7 dB (levels 33-39 dB, typical elements 34.6 dB; the score columns -24.8 dB)."""

from __future__ import annotations

import numpy as np
import onnx.parser

from onnx2trt_check.compare import compare_output
from onnx2trt_check.config import PRECISION_PROFILES
from onnx2trt_check.output_layout import OutputLayout, Segments, concat_segments

LEVELS = """
<ir_version: 8, opset_import: ["": 17]>
g (float[N,2,4,4,3] a, float[N,2,2,2,3] b) => (float[N,40,3] y) <float k = {{64.0}}, int64[3] shape = {{0, -1, 3}}{extra}> {{
  ab = Slice(a, s0, s2, axes)
  as = Slice(a, s2, s3, axes)
  bb = Slice(b, s0, s2, axes)
  bs = Slice(b, s2, s3, axes)
  ap = Mul(ab, k)
  bp = Mul(bb, k)
  ca = Concat<axis = -1>(ap, as)
  cb = Concat<axis = -1>(bp, bs)
  {reshape_a}
  rb = Reshape(cb, shape)
  y = Concat<axis = 1>(ra, rb)
}}"""
AXES = ", int64[1] s0 = {0}, int64[1] s2 = {2}, int64[1] s3 = {3}, int64[1] axes = {4}"
YOLOV5 = LEVELS.format(extra=AXES, reshape_a="ra = Reshape(ca, shape)")
MIXED = LEVELS.format(extra=AXES + ", int64[3] flat = {0, 8, 12}", reshape_a="fa = Reshape(ca, flat)\n  ra = Reshape(fa, shape)")


def test_the_columns_every_level_shares_are_parts_too():
    found = concat_segments(onnx.parser.parse_model(YOLOV5))
    assert found == {"y": Segments(1, (("ra", 32), ("rb", 8)), Segments(2, (("ap", 2), ("as", 1))))}


def test_a_reshape_that_mixes_the_columns_gives_no_shared_split():
    """[N,2,4,4,3] -> [N,8,12] -> [N,32,3]: the columns are whole again, but not through a kept axis."""
    found = concat_segments(onnx.parser.parse_model(MIXED))
    assert found["y"].inner is None


def test_scores_made_constant_fail_beside_levels_their_boxes_carry():
    rng = np.random.default_rng(0)
    feeds = [(rng.uniform(size=(1, 2, 4, 4, 3)), rng.uniform(size=(1, 2, 2, 2, 3))) for _ in range(16)]

    def output(a, b, score):
        levels = [np.concatenate([64 * x[..., :2], score(x[..., 2:])], axis=-1).reshape(1, -1, 3) for x in (a, b)]
        return np.concatenate(levels, axis=1)

    reference = [output(a, b, lambda s: s) for a, b in feeds]
    constant = [output(a, b, lambda s: np.full_like(s, 0.5)) for a, b in feeds]
    segments = concat_segments(onnx.parser.parse_model(YOLOV5))["y"]
    stats = compare_output("y", reference, constant, PRECISION_PROFILES["int8"], OutputLayout(segments))
    assert not stats.passed and stats.part_sqnr_db["ra"] > 20 and stats.part_sqnr_db["as"] < 0
    assert any("SQNR of the part 'as' (positions 2-2 of axis 2" in p for p in stats.problems), stats.problems


def test_levels_of_a_free_resolution_still_share_their_columns():
    """A detector exported with a free height and width: the levels' sizes are unknown, their columns not."""
    free = YOLOV5.replace("float[N,2,4,4,3] a, float[N,2,2,2,3] b", "float[N,2,H,W,3] a, float[N,2,H2,W2,3] b").replace("float[N,40,3] y", "float[N,?,3] y")
    assert concat_segments(onnx.parser.parse_model(free)) == {"y": Segments(2, (("ap", 2), ("as", 1)))}
