"""Automatic calibration: the held-out splits, the scale probe against the real QDQ model, and the
guarantee that the per-tensor choice is never below the best uniform method on the held-out feeds."""

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny_models import classifier

from onnx2trt_check.quant.auto_range import ScaleProbe, auto_ranges, split_held_out
from onnx2trt_check.quant.calibrate import METHODS
from onnx2trt_check.quant.insert_qdq import insert_qdq, plan_qdq
from onnx2trt_check.quant.objective import output_sqnr_db
from onnx2trt_check.quant.verify import verification_split
from onnx2trt_check.runtime import run_model


@given(count=st.integers(0, 200), every=st.integers(2, 7), cap=st.one_of(st.none(), st.integers(1, 20)))
def test_the_selection_split_holds_out_every_nth_feed_once(count, every, cap):
    feeds = [{"i": np.array(i)} for i in range(count)]
    kept, held, held_out = split_held_out(feeds, every=every, cap=cap)
    kept_ids, held_ids = [int(f["i"]) for f in kept], [int(f["i"]) for f in held]
    if count < 2:
        assert not held_out and kept_ids == held_ids == list(range(count))
        return
    assert held_out and sorted(kept_ids + held_ids) == list(range(count))  # a partition, nothing twice
    assert held_ids and (cap is None or len(held_ids) <= cap)
    assert all(i % every == every - 1 for i in held_ids) or held_ids == [count - 1]


@given(count=st.integers(0, 60))
def test_the_verification_split_holds_out_every_fifth_feed(count):
    feeds = [{"i": np.array(i)} for i in range(count)]
    split = verification_split(feeds)
    kept, test = [int(f["i"]) for f in split.calibration], [int(f["i"]) for f in split.test]
    if count < 2:
        assert not split.held_out and kept == test
    else:
        assert split.held_out and sorted(kept + test) == list(range(count)) and set(test).isdisjoint(kept)
        assert test == [i for i in range(count) if i % 5 == 4] or test == [count - 1]


def _model_and_feeds(seed):
    model = classifier()
    rng = np.random.default_rng(seed)
    shape = [d.dim_value or 1 for d in model.graph.input[0].type.tensor_type.shape.dim]
    feeds = [{model.graph.input[0].name: (rng.standard_normal(shape) * rng.uniform(0.5, 3)).astype(np.float32)} for _ in range(12)]
    return model, feeds


@settings(deadline=None, max_examples=5)
@given(seed=st.integers(0, 10_000), scale=st.floats(0.01, 10))
def test_the_probe_scores_exactly_what_the_written_qdq_model_computes(seed, scale):
    model, feeds = _model_and_feeds(seed)
    plan = plan_qdq(model)
    amax = {t: scale * (i + 1) for i, t in enumerate(plan.activations)}
    probe = ScaleProbe(model, plan, feeds, output_sqnr_db)
    written, _ = insert_qdq(model, plan, amax)
    expected = output_sqnr_db(run_model(model, feeds), run_model(written, feeds))
    assert probe.score(amax) == expected


@pytest.mark.parametrize("seed", [0, 1])
def test_auto_is_never_below_the_best_uniform_method_on_the_held_out_feeds(seed):
    model, feeds = _model_and_feeds(seed)
    plan = plan_qdq(model)
    found = auto_ranges(model, plan, feeds)
    assert set(found.uniform_scores) == set(METHODS) and found.held_out and found.selection_feeds == 3
    assert found.final_score >= max(found.uniform_scores.values())
    # the final score is what the written model gives on the held-out feeds
    _, held, _ = split_held_out(feeds)
    written, _ = insert_qdq(model, plan, found.amax)
    assert output_sqnr_db(run_model(model, held), run_model(written, held)) == pytest.approx(found.final_score, abs=1e-9)
    for choice in found.choices.values():
        assert choice.method in METHODS and choice.amax == found.amax[choice.tensor]
        assert choice.scores[choice.method] == max(choice.scores.values()) or choice.method == found.start


def test_a_model_is_not_mutated():
    model, feeds = _model_and_feeds(0)
    before = model.SerializeToString()
    auto_ranges(model, plan_qdq(model), feeds)
    assert model.SerializeToString() == before and isinstance(model, onnx.ModelProto)
