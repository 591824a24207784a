"""The automatic calibration's held-out feeds run as one batch: stacking and splitting are exact
inverses, the probe batches a model whose first axis is a batch and scores exactly what the feeds
one by one score, and it falls back to one by one where the first axis is not a batch (a Softmax
over it, a Reshape that fixes it), silently giving the per-feed figures, never mixed ones."""

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_quant_auto import _model_and_feeds, residual_model
from tiny_models import classifier

from onnx2trt_check.quant.auto_range import auto_ranges
from onnx2trt_check.quant.feed_batch import first_axis_sizes, same_as_per_feed, split_values, stack_feeds
from onnx2trt_check.quant.insert_qdq import plan_qdq
from onnx2trt_check.quant.objective import output_sqnr_db
from onnx2trt_check.quant.probe import ScaleProbe
from onnx2trt_check.runtime import run_model


@given(lengths=st.lists(st.integers(0, 3), min_size=2, max_size=6), tail=st.lists(st.integers(1, 3), max_size=2), seed=st.integers(0, 99))
def test_stacking_then_splitting_gives_back_every_feed(lengths, tail, seed):
    rng = np.random.default_rng(seed)
    feeds = [{"a": rng.normal(size=(n, *tail)).astype(np.float32), "b": rng.integers(0, 9, size=(n, 2))} for n in lengths]
    stacked = stack_feeds(feeds)
    assert stacked["a"].shape == (sum(lengths), *tail)
    back = split_values(stacked, first_axis_sizes(feeds))
    assert all(np.array_equal(b[k], f[k]) and b[k].dtype == f[k].dtype for b, f in zip(back, feeds, strict=True) for k in f)
    assert same_as_per_feed(stacked, feeds)


@pytest.mark.parametrize("feeds", [
    [{"a": np.zeros((1, 2))}],  # one feed: nothing to batch
    [{"a": np.zeros((1, 2))}, {"a": np.zeros((1, 3))}],  # shapes differ beyond the first axis
    [{"a": np.zeros((1, 2))}, {"b": np.zeros((1, 2))}],  # different inputs
    [{"a": np.array(1.0)}, {"a": np.array(2.0)}],  # scalars have no first axis
    [{"a": np.zeros((1, 2), np.float32)}, {"a": np.zeros((1, 2), np.float64)}],  # dtypes differ
])
def test_feeds_that_do_not_stack_are_refused(feeds):
    assert stack_feeds(feeds) is None


def test_a_batched_value_off_by_one_ulp_is_not_the_same():
    per_feed = [{"y": np.ones((1, 3), np.float32)}, {"y": np.ones((1, 3), np.float32)}]
    batched = np.ones((2, 3), np.float32)
    assert same_as_per_feed({"y": batched}, per_feed)
    batched[1, 2] = np.nextafter(np.float32(1), np.float32(2))
    assert not same_as_per_feed({"y": batched}, per_feed)
    assert not same_as_per_feed({"y": np.ones((3, 3), np.float32)}, per_feed)  # a first axis that is not the feeds'


def _batch_mixing(kind: str) -> onnx.ModelProto:
    """A Conv then an op for which the first axis is not a batch: a Softmax over it (every shape as
    a batch would have it, the values mixed across feeds) or a Reshape to a fixed first axis."""
    tail = {"softmax": "y = Softmax <axis = 0> (r)",
            "reshape": "s = Constant <value = int64[2] {1, -1}> ()\n y = Reshape(r, s)"}[kind]
    out = "float[1, 4, 8, 8] y" if kind == "softmax" else "float[1, 256] y"
    model = onnx.parser.parse_model(f"""<ir_version: 8, opset_import: ["": 17]>
    g (float[1, 3, 8, 8] x) => ({out}) {{
        c = Conv <pads = [1, 1, 1, 1]> (x, w)
        r = Relu(c)
        {tail}
    }}""")
    weights = np.random.default_rng(0).normal(size=(4, 3, 3, 3)).astype(np.float32)
    model.graph.initializer.append(onnx.numpy_helper.from_array(weights, "w"))
    return model


def _probes(model, feeds):
    plan = plan_qdq(model)
    reference = run_model(model, feeds)
    return plan, ScaleProbe(model, plan, feeds, output_sqnr_db, reference), ScaleProbe(model, plan, feeds, output_sqnr_db, reference, batch=False)


@pytest.mark.parametrize("kind", ["softmax", "reshape"])
def test_a_model_whose_first_axis_is_not_a_batch_runs_feed_by_feed(kind):
    model, feeds = _model_and_feeds(0, _batch_mixing(kind))
    plan, probe, per_feed = _probes(model, feeds)
    amax = dict.fromkeys(plan.activations, 2.0)
    assert probe.score(amax) == per_feed.score(amax)
    assert probe.batched is False and len(probe.feeds) == len(feeds)


@settings(deadline=None, max_examples=5)
@given(seed=st.integers(0, 10_000), data=st.data())
def test_the_batched_probe_scores_exactly_what_feed_by_feed_scores(seed, data):
    for model in (classifier(batch=1), residual_model()):
        model, feeds = _model_and_feeds(seed, model)
        plan, probe, per_feed = _probes(model, feeds)
        ranges = st.floats(0.05, 20, allow_nan=False)
        start = {t: data.draw(ranges) for t in plan.activations}
        for p in (probe, per_feed):
            p.settle(start, p.evaluate(start))
        assert probe.batched is True and len(probe.feeds) == 1
        for tensor in plan.activations:
            amax = data.draw(ranges)
            assert probe.try_range(tensor, amax).score == per_feed.try_range(tensor, amax).score
        assert probe.evaluate(start).score == per_feed.evaluate(start).score


def test_auto_calibration_chooses_the_same_with_and_without_batches(monkeypatch):
    model, feeds = _model_and_feeds(1, residual_model())
    plan = plan_qdq(model)
    batched = auto_ranges(model, plan, feeds)
    original = ScaleProbe.__init__
    monkeypatch.setattr(ScaleProbe, "__init__", lambda self, *a, **k: original(self, *a, **{**k, "batch": False}))
    single = auto_ranges(model, plan, feeds)
    assert batched.amax == single.amax and batched.final_score == single.final_score
    assert batched.uniform_scores == single.uniform_scores
