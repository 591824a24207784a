"""What makes the automatic calibration cheaper without changing its choices: each shortcut gives
the values of the longer way bit for bit (the shared level-start table of the entropy search, the
held-out reference from the statistics pass's session)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from test_quant_auto import _model_and_feeds, residual_model

from onnx2trt_check.quant import ranges
from onnx2trt_check.quant.auto_range import split_held_out
from onnx2trt_check.quant.calibrate import MAX_BINS, collect_statistics, statistics_and_outputs
from onnx2trt_check.quant.insert_qdq import plan_qdq
from onnx2trt_check.runtime import run_model


@settings(deadline=None, max_examples=25)
@given(lengths=st.lists(st.integers(0, MAX_BINS + 40), min_size=1, max_size=4), data=st.data())
def test_the_shared_level_start_table_holds_each_candidates_own_starts(lengths, data):
    """Whatever order the histograms come in (the table grows, or a longer one than calibrate
    makes gets its own), row i is TensorRT's level edges for threshold i."""
    ranges._level_start_rows = ranges._level_start_rows[:0]  # start empty: growth is what is tested
    for last in lengths:
        table = ranges._level_start_table(last)
        assert len(table) == last + 1
        rows = data.draw(st.lists(st.integers(0, last), min_size=1, max_size=5))
        assert np.array_equal(table[rows], ranges._level_starts(np.array(rows)))


@settings(deadline=None, max_examples=10)
@given(counts=st.lists(st.integers(0, 10**6), min_size=130, max_size=600), stride=st.integers(1, 4))
def test_the_entropy_search_with_the_table_is_the_direct_computation(counts, stride):
    """The divergences from the table are those of the level starts computed per call."""
    counts = np.array(counts, np.int64)
    counts[-1] += 1
    table = ranges._level_start_table
    try:
        ranges._level_start_table = lambda last: ranges._level_starts(np.arange(last + 1))
        direct = ranges.entropy_divergences(counts, stride=stride)
    finally:
        ranges._level_start_table = table
    shared = ranges.entropy_divergences(counts, stride=stride)
    assert np.array_equal(direct[0], shared[0]) and np.array_equal(direct[1], shared[1])


@settings(deadline=None, max_examples=5)
@given(seed=st.integers(0, 10_000))
def test_the_statistics_pass_gives_the_held_out_reference_bit_for_bit(seed):
    model, feeds = _model_and_feeds(seed, residual_model())
    plan = plan_qdq(model)
    fit, held, _ = split_held_out(feeds)
    stats, reference = statistics_and_outputs(model, fit, plan.activations, held)
    expected = run_model(model, held)
    assert [r.keys() for r in reference] == [e.keys() for e in expected]
    assert all(np.array_equal(r[k], e[k]) and r[k].dtype == e[k].dtype for r, e in zip(reference, expected, strict=True) for k in r)
    alone = collect_statistics(model, fit, plan.activations)
    assert all(np.array_equal(stats[t].counts, alone[t].counts) and stats[t].amax == alone[t].amax for t in plan.activations)
