"""mut20: a derived detector (a re-export or student checked with --reference-model and the user's
tolerance `detections:atol=2,min_sqnr_db=30`: 2 pixels) whose scores all came from the wrong anchor
passed derived::parity at 52.8 dB, the score part at -1.8 dB: the part floors held only where no
element-wise rule was in force, on the premise that the rule fails a wrong rest, but an atol of 2
cannot fail scores in [0, 1]. Beside an element-wise rule, the floor now judges the parts that rule
cannot fail (every reference value within atol + rtol * |ref| of zero)."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx.parser

from onnx2trt_check.compare import compare_output
from onnx2trt_check.config import PRECISION_PROFILES
from onnx2trt_check.output_layout import OutputLayout, concat_segments

DETECTOR = """
<ir_version: 8, opset_import: ["": 17]>
g (float[N,12,6] a) => (float[N,12,6] y) <float k = {64.0}, int64[1] s0 = {0}, int64[1] s4 = {4}, int64[1] s6 = {6}, int64[1] axes = {2}> {
  raw = Slice(a, s0, s4, axes)
  scores = Slice(a, s4, s6, axes)
  boxes = Mul(raw, k)
  y = Concat<axis = -1>(boxes, scores)
}"""


def _outputs(shuffle_scores: bool):
    rng = np.random.default_rng(0)
    feeds = [rng.uniform(size=(1, 12, 6)) for _ in range(16)]
    reference = [np.concatenate([64 * a[..., :4], a[..., 4:]], axis=-1) for a in feeds]
    target = [np.concatenate([64 * a[..., :4], np.roll(a[..., 4:], 1, axis=1) if shuffle_scores else a[..., 4:]], axis=-1) for a in feeds]
    return reference, target


def _compare(tolerance, shuffle_scores=True):
    reference, target = _outputs(shuffle_scores)
    segments = concat_segments(onnx.parser.parse_model(DETECTOR))["y"]
    return compare_output("y", reference, target, tolerance, OutputLayout(segments))


def test_scores_from_the_wrong_anchor_fail_a_floor_set_beside_a_pixel_atol():
    tolerance = dataclasses.replace(PRECISION_PROFILES["fp32"], atol=2.0, min_sqnr_db=30.0)
    stats = _compare(tolerance)
    assert stats.sqnr_db > 30 and stats.mismatches == 0  # the whole output and the atol say nothing
    assert not stats.passed and stats.part_sqnr_db["scores"] < 10
    assert "part 'scores'" in " ".join(stats.problems)


def test_a_part_the_atol_can_fail_is_left_to_it():
    """The pixel boxes lie beyond atol 2 of zero: the element-wise rule judges them, no part figure."""
    tolerance = dataclasses.replace(PRECISION_PROFILES["fp32"], atol=2.0, min_sqnr_db=30.0)
    stats = _compare(tolerance, shuffle_scores=False)
    assert stats.passed and "boxes" not in stats.part_sqnr_db


def test_the_fp32_default_without_a_floor_judges_no_part():
    stats = _compare(PRECISION_PROFILES["fp32"], shuffle_scores=True)
    assert not stats.passed and stats.part_sqnr_db == {}  # the 1e-4 atol fails the scores itself


def test_scores_that_find_nothing_pass_the_fp16_profile_rounded_to_fp16():
    """review20: a detector that finds nothing on its inputs has every score near 0.0025, and fp16
    rounds most of their small variation away; judged by their centred SQNR beside the fp16
    profile's own atol, an honest fp16 target failed at 21.8 dB. The profile's own rule judges no
    part now; beside an atol the user widened, a part is judged by its own SQNR, and passes."""
    rng = np.random.default_rng(1)
    feeds = [np.concatenate([rng.uniform(size=(1, 12, 4)), 0.0025 + 1e-5 * rng.normal(size=(1, 12, 2))], axis=-1) for _ in range(16)]
    reference = [np.concatenate([64 * a[..., :4], a[..., 4:]], axis=-1) for a in feeds]
    rounded = [r.astype(np.float16).astype(np.float64) for r in reference]
    segments = concat_segments(onnx.parser.parse_model(DETECTOR))["y"]
    fp16 = PRECISION_PROFILES["fp16"]
    stats = compare_output("y", reference, rounded, fp16, OutputLayout(segments))
    assert stats.passed and stats.part_sqnr_db == {}, stats.problems  # the profile's own atol: no part judged beside it
    widened = compare_output("y", reference, rounded, dataclasses.replace(fp16, atol=2.0), OutputLayout(segments))
    assert widened.passed and widened.part_sqnr_db["scores"] > fp16.min_sqnr_db, widened.problems  # judged, by its own SQNR
    from onnx2trt_check.sqnr import centered_sqnr_db

    scores = np.concatenate([r[..., 4:].ravel() for r in reference]), np.concatenate([r[..., 4:].ravel() for r in rounded])
    assert centered_sqnr_db(*scores) < fp16.min_sqnr_db  # the centred figure would have failed it
