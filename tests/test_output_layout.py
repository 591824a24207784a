"""output_layout.concat_segments finds the parts a Concat joins an output from; compare_output's
`segments` holds the int8 SQNR floor for each part (see test_zoo13_mixed_scale_outputs for the
detectors that passed before)."""

import math

import numpy as np
import onnx
import onnx.parser
from hypothesis import given
from hypothesis import strategies as st

from onnx2trt_check.compare import compare_output
from onnx2trt_check.config import PRECISION_PROFILES
from onnx2trt_check.output_layout import OutputLayout, Segments, concat_segments, output_layouts
from onnx2trt_check.quant.verify import verify_int8
from onnx2trt_check.sqnr import centered_sqnr_db

INT8 = PRECISION_PROFILES["int8"]


def _parse(body: str, inputs: str, output: str, inits: str = "") -> onnx.ModelProto:
    return onnx.parser.parse_model(f'<ir_version: 8, opset_import: ["": 17]>\ng ({inputs}) => ({output}) {inits} {{\n{body}\n}}')


def test_a_concat_output_names_its_parts_and_sizes():
    model = _parse("y = Concat<axis = -1>(a, b)", "float[N,3,4] a, float[N,3,2] b", "float[N,3,6] y")
    assert concat_segments(model) == {"y": Segments(2, (("a", 4), ("b", 2)))}


def test_identity_and_a_transpose_after_the_concat_are_followed():
    model = _parse("c = Concat<axis = 1>(a, b)\n t = Transpose<perm = [0, 2, 1]>(c)\n y = Identity(t)",
                   "float[N,4,8] a, float[N,1,8] b", "float[N,8,5] y")
    assert concat_segments(model) == {"y": Segments(2, (("a", 4), ("b", 1)))}


def test_a_part_of_unknown_size_or_another_producer_gives_no_parts():
    unknown = _parse("y = Concat<axis = 1>(a, b)", "float[N,K] a, float[N,2] b", "float[N,?] y")
    other = _parse("c = Concat<axis = 1>(a, b)\n y = Relu(c)", "float[N,3] a, float[N,2] b", "float[N,5] y")
    assert concat_segments(other) == {}
    assert concat_segments(unknown) == {"y": Segments(1, (("a", None), ("b", 2)))}  # one free part: the rest (review17)
    two = _parse("y = Concat<axis = 1>(a, b)", "float[N,K] a, float[N,J] b", "float[N,?] y")
    assert concat_segments(two) == {}


def test_sizes_come_from_shape_inference_through_reshapes():
    model = _parse("ra = Reshape(a, sa)\n rb = Reshape(b, sb)\n y = Concat<axis = 1>(ra, rb)", "float[N,4,4,4] a, float[N,1,4,4] b",
                   "float[N,?,16] y", "<int64[3] sa = {0, 4, 16}, int64[3] sb = {0, 1, 16}>")
    assert concat_segments(model) == {"y": Segments(1, (("ra", 4), ("rb", 1)))}


@given(st.integers(0, 2), st.integers(1, 5), st.integers(1, 5), st.integers(1, 4), st.integers(0, 2**16), st.floats(0.0, 10.0))
def test_each_part_is_judged_on_its_own_values_whatever_the_other_part_does(axis, size_a, size_b, feeds, seed, error_b):
    """The part's figure is the centred SQNR of its own slice of every feed, however wrong the other part is."""
    rng = np.random.default_rng(seed)
    shape_a, shape_b = [2, 3, 3], [2, 3, 3]
    shape_a[axis], shape_b[axis] = size_a, size_b
    parts_a = [rng.normal(size=shape_a) for _ in range(feeds)]
    parts_b = [1e3 * rng.normal(size=shape_b) for _ in range(feeds)]
    got_a = [a + 0.05 * rng.normal(size=a.shape) for a in parts_a]
    reference = [np.concatenate([a, b], axis=axis) for a, b in zip(parts_a, parts_b)]
    target = [np.concatenate([a, b * (1 + error_b)], axis=axis) for a, b in zip(got_a, parts_b)]
    stats = compare_output("y", reference, target, INT8, OutputLayout(Segments(axis, (("a", size_a), ("b", size_b)))))
    expected = centered_sqnr_db(np.concatenate([a.ravel() for a in parts_a]), np.concatenate([g.ravel() for g in got_a]))
    assert math.isclose(stats.part_sqnr_db["a"], expected, rel_tol=1e-9) or math.isnan(expected) and math.isnan(stats.part_sqnr_db["a"])


@given(st.lists(st.integers(1, 4), min_size=1, max_size=3), st.integers(0, 3), st.lists(st.integers(0, 6), min_size=1, max_size=4),
       st.integers(0, 3), st.integers(0, 2**16))
def test_a_free_part_takes_what_the_others_leave_of_each_feed(known, free_at, free_sizes, wrong, seed):
    """One part of no size (a KV cache's past) sized per feed: every part's figure is its own slice's,
    whatever each feed's free size; a part halved fails and is the one named; an exact target passes."""
    rng = np.random.default_rng(seed)
    names = [f"p{i}" for i in range(len(known) + 1)]
    free_at, wrong = free_at % len(names), wrong % len(names)
    sizes = known[:free_at] + [None] + known[free_at:]
    parts = [[10.0 ** i * rng.normal(size=(1, size if size is not None else free, 3)) for i, size in enumerate(sizes)] for free in free_sizes]
    reference = [np.concatenate(feed, axis=1) for feed in parts]
    target = [np.concatenate([p * (0.5 if i == wrong else 1.0) for i, p in enumerate(feed)], axis=1) for feed in parts]
    layout = OutputLayout(Segments(1, tuple(zip(names, sizes))))
    assert compare_output("y", reference, reference, INT8, layout).passed
    stats = compare_output("y", reference, target, INT8, layout)
    halved = np.concatenate([feed[wrong].ravel() for feed in parts])
    assert set(stats.part_sqnr_db) == {name for name, feed_parts in zip(names, zip(*parts)) if sum(p.size for p in feed_parts)}
    assert stats.passed == (halved.size == 0)
    assert all(("'" + name + "'" in " ".join(stats.problems)) == (i == wrong and halved.size > 0) for i, name in enumerate(names))


def test_a_part_below_the_floor_fails_and_is_named():
    rng = np.random.default_rng(0)
    boxes, scores = [640 * rng.uniform(size=(1, 4, 8)) for _ in range(8)], [rng.uniform(size=(1, 1, 8)) for _ in range(8)]
    reference = [np.concatenate([b, s], axis=1) for b, s in zip(boxes, scores)]
    target = [np.concatenate([b, np.round(s * 2) / 2], axis=1) for b, s in zip(boxes, scores)]  # scores in steps of 0.5
    segments = Segments(1, (("boxes", 4), ("scores", 1)))
    assert compare_output("det", reference, target, INT8).passed  # what passed before: the boxes carry the SQNR
    stats = compare_output("det", reference, target, INT8, OutputLayout(segments))
    assert not stats.passed and stats.part_sqnr_db["boxes"] == math.inf
    assert any("SQNR of the part 'scores' (positions 4-4 of axis 1" in p for p in stats.problems), stats.problems


def test_parts_that_do_not_fit_the_output_or_do_not_vary_are_left_to_the_whole_output():
    reference = [np.ones((1, 5)), 2 * np.ones((1, 5))]
    target = [r + 1e-3 for r in reference]
    wrong_size = compare_output("y", reference, target, INT8, OutputLayout(Segments(1, (("a", 4), ("b", 4)))))
    assert wrong_size.passed and wrong_size.part_sqnr_db == {}
    zeros = [np.concatenate([r[:, :3], np.zeros((1, 2))], axis=1) for r in reference]
    stats = compare_output("y", zeros, [z + 1e-6 for z in zeros], INT8, OutputLayout(Segments(1, (("a", 3), ("b", 2)))))
    assert stats.passed and math.isnan(stats.part_sqnr_db["b"])  # float noise on zeros is no finding


def test_a_constant_part_is_judged_on_its_own_value():
    """review16: a constant column of 1.0 (an end-to-end export's batch index, a fixed objectness)
    given as 0 passed: its centred SQNR is undefined, and the other parts carried the whole output."""
    rng = np.random.default_rng(0)
    reference = [np.concatenate([640 * rng.uniform(size=(1, 4)), np.ones((1, 1))], axis=1) for _ in range(8)]
    layout = OutputLayout(Segments(1, (("boxes", 4), ("ones", 1))))
    close = compare_output("det", reference, [r + 1e-3 for r in reference], INT8, layout)
    assert close.passed and 55 < close.part_sqnr_db["ones"] < 65
    zeroed = [np.concatenate([r[:, :4], np.zeros((1, 1))], axis=1) for r in reference]
    stats = compare_output("det", reference, zeroed, INT8, layout)
    assert not stats.passed and stats.part_sqnr_db["ones"] == 0.0


def test_fp32_and_fp16_keep_their_element_wise_rules_alone():
    reference = [np.concatenate([640 * np.ones((1, 4)), np.full((1, 1), 0.5 + i)], axis=1) for i in range(3)]
    target = [r + 1e-6 for r in reference]
    stats = compare_output("y", reference, target, PRECISION_PROFILES["fp32"], OutputLayout(Segments(1, (("a", 4), ("b", 1)))))
    assert stats.passed and stats.part_sqnr_db == {}


def test_quantize_refuses_what_the_pytest_item_refuses():
    """verify_int8 (the quantize command's gate) judges the parts as the ort-int8 item does."""
    float_model = _parse("a = Mul(x, k)\n y = Concat<axis = 1>(a, x)", "float[N,4] x", "float[N,8] y", "<float k = {640.0}>")
    coarse = _parse("a = Mul(x, k)\n q = QuantizeLinear(x, s, z)\n d = DequantizeLinear(q, s, z)\n y = Concat<axis = 1>(a, d)",
                    "float[N,4] x", "float[N,8] y", "<float k = {640.0}, float s = {0.25}, int8 z = {0}>")
    feeds = [{"x": np.random.default_rng(i).uniform(size=(1, 4)).astype(np.float32)} for i in range(8)]
    verdict = verify_int8(float_model, coarse, feeds)
    assert verdict.failures and "SQNR of the part 'x' (positions 4-7 of axis 1" in verdict.failures[0]  # the float model's name, verdict.failures


def test_a_part_joined_twice_gets_a_figure_each():
    """review16: Concat(a, a) kept one figure under the name 'a', the second overwriting the first."""
    reference = [np.concatenate([np.arange(3.0) + i, np.arange(3.0) - i], axis=0)[None] for i in range(4)]
    target = [np.concatenate([r[:, :3], np.zeros((1, 3))], axis=1) for r in reference]
    stats = compare_output("y", reference, target, INT8, OutputLayout(Segments(1, (("a", 3), ("a", 3)))))
    assert set(stats.part_sqnr_db) == {"a#0", "a#1"} and stats.part_sqnr_db["a#0"] == math.inf and stats.part_sqnr_db["a#1"] < 20


def test_a_topk_s_values_have_no_top1_agreement():
    """A TopK's values are ranked: their first item is always the row's largest, so 'top-1 100%' held
    for any values (hunt17). The values are still compared element by element."""
    model = _parse("v, i = TopK<axis = -1>(x, k)", "float[N,10] x", "float[N,3] v", "<int64[1] k = {3}>")
    unsorted = _parse("v, i = TopK<axis = -1, sorted = 0>(x, k)", "float[N,10] x", "float[N,3] v", "<int64[1] k = {3}>")
    other_axis = _parse("v, i = TopK<axis = 0>(x, k)", "float[10,N] x", "float[3,N] v", "<int64[1] k = {3}>")
    assert output_layouts(model) == {"v": OutputLayout(ranked=True)}
    assert output_layouts(unsorted) == {} and output_layouts(other_axis) == {}
    ranked = [np.sort(np.random.default_rng(0).normal(size=(8, 3)), axis=1)[:, ::-1]]
    assert compare_output("v", ranked, ranked, INT8).top1 == 1.0  # what it read before, whatever the values
    exact = compare_output("v", ranked, ranked, INT8, output_layouts(model)["v"])
    wrong = compare_output("v", ranked, [r * 0.2 for r in ranked], INT8, output_layouts(model)["v"])
    assert exact.passed and exact.top1 is None and not wrong.passed and wrong.top1 is None
