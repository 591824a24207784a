"""Automatic calibration: the held-out splits, the scale probe against the real QDQ model (a suffix
trial scores exactly what a full run scores, and a full run what the written model gives when the
ort-int8 target runs it), the search against a plain full-evaluation reference, and the guarantee
that the per-tensor choice is never below the best uniform method on the held-out feeds."""

import numpy as np
import onnx
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from tiny_models import classifier

from onnx2trt_check.quant.auto_range import MIN_GAIN, auto_ranges, split_held_out
from onnx2trt_check.quant.calibrate import collect_statistics
from onnx2trt_check.quant.insert_qdq import insert_qdq, plan_qdq
from onnx2trt_check.quant.objective import output_sqnr_db
from onnx2trt_check.quant.probe import ScaleProbe
from onnx2trt_check.quant.ranges import METHODS, compute_amax
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


def _model_and_feeds(seed, model=None):
    model = model or classifier()
    rng = np.random.default_rng(seed)
    shape = [d.dim_value or 1 for d in model.graph.input[0].type.tensor_type.shape.dim]
    feeds = [{model.graph.input[0].name: (rng.standard_normal(shape) * rng.uniform(0.5, 3)).astype(np.float32)} for _ in range(12)]
    return model, feeds


def residual_model() -> onnx.ModelProto:
    """Two outputs, a residual Add after a Conv (a tensor read twice), an activation x activation
    MatMul: suffixes that share upstream values and leave an output untouched."""
    rng = np.random.default_rng(3)
    weights = {"w1": rng.normal(size=(4, 3, 3, 3)), "w2": rng.normal(size=(4, 4, 3, 3)) * 0.3, "w3": rng.normal(size=(4, 4, 1, 1))}
    text = """<ir_version: 8, opset_import: ["": 17]>
    g (float[1, 3, 8, 8] x) => (float[1, 4, 8, 8] scores, float[1, 4, 8, 8] side) {
        c1 = Conv <pads = [1, 1, 1, 1]> (x, w1)
        r1 = Relu(c1)
        c2 = Conv <pads = [1, 1, 1, 1]> (r1, w2)
        a = Add(c2, r1)
        r2 = Relu(a)
        t = Transpose <perm = [0, 1, 3, 2]> (r2)
        m = MatMul(r2, t)
        scores = Softmax <axis = -1> (m)
        side = Conv(r1, w3)
    }"""
    model = onnx.parser.parse_model(text)
    model.graph.initializer.extend(onnx.numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items())
    return model


@settings(deadline=None, max_examples=6)
@given(seed=st.integers(0, 10_000), data=st.data())
def test_a_trial_scores_exactly_what_a_full_evaluation_scores(seed, data):
    model, feeds = _model_and_feeds(seed, residual_model())
    plan = plan_qdq(model)
    assert len(plan.activations) >= 4
    ranges = st.floats(0.05, 20, allow_nan=False)
    start = {t: data.draw(ranges) for t in plan.activations}
    probe = ScaleProbe(model, plan, feeds, output_sqnr_db, run_model(model, feeds))
    probe.settle(start, probe.evaluate(start))
    for tensor in data.draw(st.permutations(plan.activations)):
        amax = data.draw(ranges)
        trial, full = probe.try_range(tensor, amax), probe.evaluate({**probe.current, tensor: amax})
        assert trial.score == full.score
        for fresh, whole in zip(trial.values, full.values):
            assert all(np.array_equal(value, whole[name]) for name, value in fresh.items())
        if data.draw(st.booleans()):  # the state after an accepted trial is the full run's
            probe.accept(tensor, amax, trial)
            assert all(np.array_equal(v[name], w[name]) for v, w in zip(probe.values, full.values) for name in w)


@settings(deadline=None, max_examples=5)
@given(seed=st.integers(0, 10_000), scale=st.floats(0.01, 10))
@example(seed=2386, scale=5.73046875)
def test_the_probe_scores_what_the_written_qdq_model_gives_in_the_ort_int8_target(seed, scale):
    """The int8 verdict runs the written model with graph optimizations (weights constant-folded);
    the probe stores them dequantized: the same arithmetic, up to ONNX Runtime's choice of kernel
    (a packed or blocked convolution sums in another order). Measured: below 1e-5 dB on 59 of 60
    random cases, 2.2e-3 dB on the example above (4.1441 against 4.1463 dB: the optimized run
    differs, the unoptimized written model gives the probe's 4.1441). The bound is half of
    MIN_GAIN, the smallest gain the search acts on; a probe that scored another model would miss
    it by decibels."""
    for model in (classifier(), residual_model()):
        model, feeds = _model_and_feeds(seed, model)
        plan = plan_qdq(model)
        amax = {t: scale * (i + 1) for i, t in enumerate(plan.activations)}
        reference = run_model(model, feeds)
        probe = ScaleProbe(model, plan, feeds, output_sqnr_db, reference)
        written, _ = insert_qdq(model, plan, amax)
        assert probe.score(amax) == pytest.approx(output_sqnr_db(reference, run_model(written, feeds, optimized=True)), abs=MIN_GAIN / 2)


def _plain_search(model, plan, feeds):
    """The search as the module doc states it, every candidate scored by the written model itself
    (a QDQ model per candidate, run as the ort-int8 target runs it): the reference."""
    fit, held, _ = split_held_out(feeds)
    stats = collect_statistics(model, fit, plan.activations)
    candidates = {t: {m: compute_amax(stats[t], m) for m in METHODS} for t in plan.activations}
    reference = run_model(model, held)

    def score(amax):
        return output_sqnr_db(reference, run_model(insert_qdq(model, plan, amax)[0], held, optimized=True))

    uniform = {m: score({t: c[m] for t, c in candidates.items()}) for m in METHODS}
    start = max(METHODS, key=lambda m: (uniform[m], -METHODS.index(m)))
    current, best = {t: c[start] for t, c in candidates.items()}, uniform[start]
    methods = dict.fromkeys(candidates, start)
    for tensor, ranges in candidates.items():
        scores = {m: best if ranges[m] == ranges[start] else score({**current, tensor: ranges[m]}) for m in METHODS}
        top = max(METHODS, key=lambda m: (scores[m], -METHODS.index(m)))
        if scores[top] > best + MIN_GAIN:
            methods[tensor], best, current[tensor] = top, scores[top], ranges[top]
    return methods, current, best


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_search_chooses_what_scoring_every_candidate_on_the_written_model_chooses(seed):
    model, feeds = _model_and_feeds(seed, residual_model())
    plan = plan_qdq(model)
    methods, amax, score = _plain_search(model, plan, feeds)
    found = auto_ranges(model, plan, feeds)
    assert {t: c.method for t, c in found.choices.items()} == methods
    assert found.amax == amax and found.final_score == pytest.approx(score, abs=1e-4)


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
    assert output_sqnr_db(run_model(model, held), run_model(written, held, optimized=True)) == pytest.approx(found.final_score, abs=1e-4)
    for choice in found.choices.values():
        assert choice.method in METHODS and choice.amax == found.amax[choice.tensor]
        assert choice.scores[choice.method] == max(choice.scores.values()) or choice.method == found.start


def test_a_model_is_not_mutated():
    model, feeds = _model_and_feeds(0)
    before = model.SerializeToString()
    auto_ranges(model, plan_qdq(model), feeds)
    assert model.SerializeToString() == before and isinstance(model, onnx.ModelProto)


def test_a_model_with_weights_past_the_session_handover_size_is_calibrated():
    """Initializers above runtime._HANDED_OVER_BYTES go to ONNX Runtime as external initializers;
    the probe folds each weight's DequantizeLinear, and an int8 weight (here 128 KB) it left unused
    made ORT fail ("Failed to find existing initializer ... _quantized"): every zoo model with a weight of
    64 KB or more (yolo_ts, external_data_mlp) crashed the default calibration."""
    rng = np.random.default_rng(0)
    model = onnx.parser.parse_model("""<ir_version: 8, opset_import: ["": 17]>
    g (float[1, 256] x) => (float[1, 10] y) {
        h = Gemm <transB = 1> (x, w1)
        r = Relu(h)
        y = Gemm <transB = 1> (r, w2)
    }""")
    model.graph.initializer.extend([onnx.numpy_helper.from_array((rng.normal(size=(512, 256)) * 0.1).astype(np.float32), "w1"),
                                    onnx.numpy_helper.from_array((rng.normal(size=(10, 512)) * 0.1).astype(np.float32), "w2")])
    feeds = [{"x": rng.normal(size=(1, 256)).astype(np.float32)} for _ in range(8)]
    found = auto_ranges(model, plan_qdq(model), feeds)
    assert set(found.amax) == set(plan_qdq(model).activations) and np.isfinite(found.final_score)
