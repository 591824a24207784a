"""review14: outputs saturated at exactly 0/1 are no evidence of a dead network (a confident sigmoid is
1.0 above a logit of 17), but since zoo13's rounding rule a confident sigmoid just below 1 (logits 15 to
16 on every feed: 0.99999964..0.99999988) or a confident softmax moved "by rounding" and a healthy
classifier fed images of one class failed reference::run and every target as a model that ignores its
inputs. Saturated is within that rounding of the bounds too."""

from __future__ import annotations

import numpy as np

from onnx2trt_check.liveness import ignores_its_inputs

FEEDS = [{"x": np.full((1, 4), value, np.float32)} for value in (15.0, 15.5, 16.0)]


def test_a_confident_sigmoid_below_one_is_saturated_not_dead():
    scores = [(1 / (1 + np.exp(-np.float32(feed["x"][:, :1])))).astype(np.float32) for feed in FEEDS]
    assert all(0.9999996 < s.item() < 1.0 for s in scores)
    assert not ignores_its_inputs(FEEDS, [scores])


def test_a_confident_softmax_is_saturated_not_dead():
    probabilities = [np.array([[1 - k * 1e-7, k * 5e-8, k * 5e-8]], np.float32) for k in (1, 2, 3)]
    assert not ignores_its_inputs(FEEDS, [probabilities])


def test_a_random_init_softmax_away_from_the_bounds_is_still_dead():
    base = np.array([[0.3, 0.3, 0.4]], np.float32)
    ulp = np.spacing(np.float32(0.4))
    assert ignores_its_inputs(FEEDS, [[base, base + ulp, base - ulp]])
