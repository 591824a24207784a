"""sqnr.typical_elements_sqnr: the SQNR over the elements of a typical scale, the elements far from
the rest (a -1e4 logit, pixel boxes beside scores) left out with their noise."""

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from onnx2trt_check.compare import compare_output
from onnx2trt_check.config import PRECISION_PROFILES
from onnx2trt_check.sqnr import centered_sqnr_db, typical_elements_sqnr


def _spread_elements(seed: int, samples: int, elements: int, scale: float) -> np.ndarray:
    """[samples, elements]: element means evenly spread over [-scale, scale], each element's samples
    moving around its mean (no element far from the rest)."""
    rng = np.random.default_rng(seed)
    moving = rng.normal(size=(samples, elements))
    moving -= moving.mean(axis=0)
    return np.linspace(-scale, scale, elements) + scale * moving / (1 + np.abs(moving).max())


@given(st.integers(0, 2**16), st.integers(2, 8), st.integers(8, 40), st.floats(1e-3, 1e3), st.floats(1e-4, 1.0))
def test_elements_of_one_spread_leave_nothing_out(seed, samples, elements, scale, noise):
    ref = _spread_elements(seed, samples, elements, scale)
    got = ref + noise * scale * np.random.default_rng(seed + 1).normal(size=ref.shape)
    sqnr, left_out = typical_elements_sqnr([ref], [got])
    assert left_out == 0 and math.isnan(sqnr)


@given(st.integers(0, 2**16), st.integers(2, 8), st.integers(8, 40), st.floats(1e-3, 1e3), st.floats(1e-4, 1.0),
       st.integers(1, 4), st.floats(100.0, 1e6), st.floats(-10.0, 10.0))
def test_far_elements_are_left_out_with_their_noise(seed, samples, elements, scale, noise, far, distance, far_error):
    """Whatever the far elements' own error, the figure is the centred SQNR of the rest."""
    ref = _spread_elements(seed, samples, elements, scale)
    got = ref + noise * scale * np.random.default_rng(seed + 1).normal(size=ref.shape)
    far = min(far, elements // 4)
    offsets = distance * scale * np.where(np.arange(far) % 2, 1.0, -1.0)
    far_ref = offsets + scale * np.random.default_rng(seed + 2).normal(size=(samples, far))
    far_got = far_ref * (1.0 + far_error)
    sqnr, left_out = typical_elements_sqnr([np.concatenate([ref, far_ref], axis=1)], [np.concatenate([got, far_got], axis=1)])
    assert left_out == far
    assert math.isclose(sqnr, centered_sqnr_db(ref.ravel(), got.ravel()), rel_tol=1e-9, abs_tol=1e-9)


def test_samples_are_the_rows_of_every_feed_and_feeds_of_other_shapes_are_judged_apart():
    """A -1e4 element in each of two shapes of feeds (a cropped probe beside the full size)."""
    rng = np.random.default_rng(0)
    feeds = [rng.normal(size=(2, 10)), rng.normal(size=(3, 10)), rng.normal(size=(2, 6))]
    for feed in feeds:
        feed[:, 0] -= 1e4
    wrong = [1.3 * feed for feed in feeds]
    sqnr, left_out = typical_elements_sqnr(feeds, wrong)
    assert left_out == 2 and sqnr < 15.0


def test_the_int8_profile_fails_a_wrong_rest_beside_a_far_element_and_says_why():
    rng = np.random.default_rng(0)
    rest = [rng.normal(size=(1, 9)) for _ in range(16)]
    ref = [np.concatenate([r, [[-1e4]]], axis=1) for r in rest]
    wrong = [np.concatenate([1.3 * r, [[-1e4]]], axis=1) for r in rest]  # the rest 30% off, the far logit exact
    stats = compare_output("logits", ref, wrong, PRECISION_PROFILES["int8"])
    assert stats.sqnr_db > 60 and stats.centered_sqnr_db > 60  # what passed before
    assert not stats.passed and stats.atypical_elements == 1
    assert any("typical scale" in p and "1 element(s) far from the rest" in p for p in stats.problems), stats.problems


def test_the_fp32_profile_keeps_its_element_wise_rule_alone():
    """With an element-wise rule in force (fp32, fp16) no SQNR of parts is added: the rule already
    judges each element on its own scale."""
    ref = [np.array([[1.0, 2.0, 3.0, -1e4]])] * 4
    assert compare_output("y", ref, [r + 1e-6 for r in ref], PRECISION_PROFILES["fp32"]).passed


def test_only_an_element_far_by_spread_and_on_another_scale_is_left_out():
    """A class 5 or 20 spreads above the rest (a confident logit) is on their scale and judged with
    them; an element 1000 spreads away is on another scale (> OTHER_SCALE x their RMS) and left out.
    The spread line lies between 5 and 20; the scale line between 20x and 1000x."""
    rng = np.random.default_rng(3)
    means = np.sort(rng.normal(size=200))
    spread = 1.4826 * np.median(np.abs(means - np.median(means)))
    for distance, left_out in ((5.0, 0), (20.0, 0), (1000.0, 1)):
        values = np.concatenate([means, [np.median(means) + distance * spread]])
        ref = values + 0.01 * rng.normal(size=(4, values.size))
        assert typical_elements_sqnr([ref], [ref + 1e-3])[1] == left_out, distance


def test_score_levels_many_spreads_apart_on_one_scale_stay_together():
    """review16: YOLOv8's class-bias prior puts stride-8 scores at 1e-5 (barely moving) and stride-32
    ones 16x higher: by spread alone the higher ones were left out, and the remaining scores' tiny
    movement failed our own honest int8 at 12.9 dB (the scores part read 57.7 dB)."""
    rng = np.random.default_rng(4)
    low = 1e-5 * (1 + 0.02 * rng.normal(size=(8, 300)))
    high = 1.6e-4 * (1 + 0.3 * rng.normal(size=(8, 60)))
    boxes = 320 * rng.uniform(size=(8, 16))
    ref = np.concatenate([low, high, boxes], axis=1)
    got = ref + np.concatenate([2e-7 * rng.normal(size=low.shape), 1e-6 * rng.normal(size=high.shape), 0.5 * rng.normal(size=boxes.shape)], axis=1)
    sqnr, left_out = typical_elements_sqnr([ref], [got])
    assert left_out == 16  # the boxes alone
    assert math.isclose(sqnr, centered_sqnr_db(ref[:, :360].ravel(), got[:, :360].ravel()))
