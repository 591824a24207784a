"""hunt17: end-to-end detectors, segmentation and keypoint models with post-processing in the graph.

* F7 (false pass): an int8 segmentation mask with class 2 merged into class 1 kept 96.6% of its
  pixels and passed the 95% agreement floor (class 2's IoU 0); each class of at least 100 elements
  must now keep its own share, 80% under int8 (agreement.class_floor: a small class is mostly
  boundary, where an honest int8 of a random-init DeepLab kept 94% of its smallest class).
* F2 (false failure): fp32 ONNX Runtime swapped two of a TopK's 100 indices at scores equal to the
  last ulp; the fp32 rule compares the indices exactly but as the set each row selects.
* F3 (false failure): TensorRT deployments cast a TopK's int64 indices to int32; the Cast hid the
  TopK, and the set comparison was lost (40.9% positional agreement, 98.1% as sets).
* F5 (an option ignored): `--output-tolerance coords:atol=4` on integer keypoint coordinates was
  dropped without a word under the agreement floor; an atol of at least 1 on an integer output now
  counts elements within it as agreeing."""

import numpy as np
import onnx
from onnx import TensorProto, helper

from onnx2trt_check.compare import compare_output
from onnx2trt_check.config import PRECISION_PROFILES
from onnx2trt_check.output_layout import OutputLayout, output_layouts

INT8, FP16, FP32 = (PRECISION_PROFILES[p] for p in ("int8", "fp16", "fp32"))


def _mask(seed: int = 0) -> np.ndarray:
    """[1, 64, 64] labels: class 0 background, class 1 a large square, class 2 a 12x12 square (144 pixels, 3.5%)."""
    mask = np.zeros((1, 64, 64), np.int64)
    mask[:, 8:40, 8:40] = 1
    mask[:, 44:56, 44:56] = 2
    return mask


def test_a_class_merged_into_another_fails_though_the_mask_mostly_agrees():
    reference = [_mask()] * 4
    merged = [np.where(r == 2, 1, r) for r in reference]
    assert compare_output("mask", reference, merged, INT8).top1 > 0.96  # over all elements: what passed before
    stats = compare_output("mask", reference, merged, INT8)
    assert not stats.passed and stats.worst_class == (2, 0.0, 576)
    assert any("class 2 keeps 0.000% of its 576 elements" in p for p in stats.problems), stats.problems


def test_boundary_jitter_of_an_honest_mask_passes_under_int8_and_fp16():
    rng = np.random.default_rng(0)
    reference = [_mask()] * 4
    jittered = []
    for r in reference:
        t = r.copy()
        edge = np.argwhere(np.diff(r[0], axis=0) != 0)[:, :2]  # pixels on a class boundary
        flip = edge[rng.choice(len(edge), size=1, replace=False)]
        t[0, flip[:, 0], flip[:, 1]] = t[0, flip[:, 0] + 1, flip[:, 1]]
        jittered.append(t)
    for profile in (INT8, FP16):
        assert compare_output("mask", reference, jittered, profile).passed


def test_a_class_below_the_size_line_is_left_to_the_whole_mask():
    reference = [np.array([[0] * 95 + [2] * 5])] * 4  # class 2: 20 elements in all
    merged = [np.where(r == 2, 0, r) for r in reference]
    stats = compare_output("mask", reference, merged, INT8)
    assert stats.worst_class is None and stats.passed  # 95% of the elements agree


def test_fp32_compares_topk_indices_as_sets_exactly():
    reference = [np.array([[5, 9, 2, 7]])]
    swapped = [np.array([[5, 2, 9, 7]])]  # two items at equal scores, in the other order
    other = [np.array([[5, 9, 2, 8]])]  # a different item
    layout = OutputLayout(topk_axis=-1)
    assert compare_output("idx", reference, swapped, FP32, layout).passed
    assert not compare_output("idx", reference, other, FP32, layout).passed
    assert not compare_output("idx", reference, swapped, FP32).passed  # without the layout: positions


def test_a_topk_cast_to_int32_is_still_a_selection():
    nodes = [helper.make_node("TopK", ["s", "k"], ["v", "i"], axis=-1), helper.make_node("Cast", ["i"], ["idx"], to=TensorProto.INT32)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("s", TensorProto.FLOAT, [1, 50])],
                              [helper.make_tensor_value_info("idx", TensorProto.INT32, [1, 5])],
                              [onnx.numpy_helper.from_array(np.array([5], np.int64), "k")])
    assert output_layouts(helper.make_model(graph)) == {"idx": OutputLayout(topk_axis=-1)}


def test_an_atol_set_on_integer_coordinates_counts_elements_within_it():
    rng = np.random.default_rng(0)
    reference = [rng.integers(0, 96, size=(1, 16)) for _ in range(4)]
    one_cell = [r + np.where(np.arange(16) < 2, 4, 0) for r in reference]  # 8 of 64 coordinates one 4-px heatmap cell off
    assert not compare_output("coords", reference, one_cell, INT8).passed
    assert compare_output("coords", reference, one_cell, INT8.merged(atol=4.0)).passed
    assert not compare_output("coords", reference, [r + 5 for r in reference], INT8.merged(atol=4.0)).passed


def test_a_class_losing_more_than_four_times_the_floors_share_fails():
    """80% under int8 (4 x its 5%), 96% under fp16 (4 x its 1%): a class that loses a fifth of its
    pixels fails, one at 94% (boundary flips of an honest int8) does not."""
    reference = [_mask()] * 4
    for kept_rows, passes in ((11, True), (9, False)):  # 92% and 75% of class 2 kept
        target = []
        for r in reference:
            t = r.copy()
            t[:, 44 + kept_rows:56, 44:56] = 0  # class 2 loses its bottom rows
            target.append(t)
        assert compare_output("mask", reference, target, INT8).passed == passes, kept_rows


def test_a_failing_integer_quantity_names_the_atol_that_would_count_it():
    """review17: a uint8 image output of an honest int8 (37 dB) read 37.6% agreement; the message
    now names the per-output atol that meets the floor, for outputs that are quantities."""
    rng = np.random.default_rng(0)
    reference = [rng.integers(0, 256, size=(1, 400)) for _ in range(4)]
    target = [r + rng.integers(-2, 3, size=r.shape) for r in reference]
    stats = compare_output("img", reference, target, INT8)
    assert not stats.passed and stats.atol_for_floor == 2.0
    assert any("--output-tolerance img:atol=2 counts the elements within it as agreeing" in p for p in stats.problems), stats.problems
    assert compare_output("img", reference, target, INT8.merged(atol=2.0)).passed
    merged = [np.where(r == 2, 1, r) for r in [_mask()] * 4]
    assert "--output-tolerance" not in " ".join(compare_output("mask", [_mask()] * 4, merged, INT8).problems)  # a class lost: no hint
