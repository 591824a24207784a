"""review14: liveness judged "moved by float32 rounding alone" against the output's largest magnitude,
so one constant element far larger than the rest made a healthy model dead: a classifier whose
suppressed class carries a -1e9 logit bias (its logits moving by units between feeds) failed
reference::run and every target item with "the model ignores its inputs". Elements that are equal on
every feed move by nothing; the rounding scale is taken over the elements that move."""

from __future__ import annotations

import numpy as np

from onnx2trt_check.liveness import ignores_its_inputs


def _feeds(count: int):
    rng = np.random.default_rng(0)
    return [{"x": rng.normal(size=(1, 4)).astype(np.float32)} for _ in range(count)]


def test_a_constant_large_element_does_not_hide_logits_that_move():
    feeds = _feeds(3)
    logits = [np.array([[0.5, -1.0, 2.0, -1e9]], np.float32), np.array([[3.5, 1.0, -2.0, -1e9]], np.float32),
              np.array([[-0.7, 2.2, 0.1, -1e9]], np.float32)]
    assert not ignores_its_inputs(feeds, [logits])
    masked = [np.where(np.arange(4) == 3, np.finfo(np.float32).min, value).astype(np.float32) for value in logits]  # torch's finfo.min mask
    assert not ignores_its_inputs(feeds, [masked])


def test_rounding_moves_beside_a_constant_large_element_are_still_dead():
    feeds = _feeds(3)
    base = np.array([[0.1, 0.2, 0.3, -1e9]], np.float32)
    ulp = np.float32(np.spacing(np.float32(0.3)))
    moved = [base, base + np.array([[ulp, 0, 0, 0]], np.float32), base - np.array([[0, ulp, 2 * ulp, 0]], np.float32)]
    assert ignores_its_inputs(feeds, [moved])
