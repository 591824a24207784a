"""optimize_qdq: every rewrite keeps ORT outputs within the bound stated here (derived from the
fake-quantize arithmetic, not taken from the optimizer), is idempotent, never mutates its input, and
a rewrite that breaks its own bound is undone."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from qdq_strategies import (
    PASSTHROUGH,
    VIOLATIONS,
    chain_case,
    concat_case,
    fusion_case,
    input_feeds,
    passthrough_case,
    rules_graph,
    rules_specs,
    scales,
    weight_fold_case,
)

from onnx2trt_check.quant import qdq_optimize
from onnx2trt_check.quant.qdq_optimize import optimize_qdq
from onnx2trt_check.quant.qdq_rules import validate_qdq
from onnx2trt_check.runtime import run_model

amplitudes = st.sampled_from([0.05, 0.5, 3.0])  # small, typical, and large enough to clip
TOL = 1e-5


def fq(x, s):
    """Symmetric int8 fake quantization, written out here independently of the package."""
    return (np.clip(np.rint(np.float32(x) / np.float32(s)), -128, 127) * np.float32(s)).astype(np.float64)


def clipped(x, s):
    return np.maximum(0.0, np.abs(x) - 127 * s)


def _outputs(model, feeds):
    return [run["y"].astype(np.float64) for run in run_model(model, feeds)]


def _change(model, result, feeds):
    return [np.abs(a - b) for a, b in zip(_outputs(model, feeds), _outputs(result.model, feeds))]


@given(scales, scales, amplitudes, st.integers(0, 99))
def test_chain_merge_within_bound(s1, s2, amplitude, seed):
    model = chain_case(s1, s2)
    feeds = input_feeds(model, seed, amplitude)
    result = optimize_qdq(model, feeds)
    assert result.modified and sum(n.op_type == "QuantizeLinear" for n in result.model.graph.node) == 1
    coarse, fine = max(s1, s2), min(s1, s2)
    for change, feed in zip(_change(model, result, feeds), feeds):
        bound = 0.0 if s1 == s2 else coarse + fine / 2 + clipped(feed["x"], fine)
        assert np.all(change <= bound + TOL * (1 + coarse))


@given(scales, amplitudes, st.integers(0, 99))
def test_same_scale_chain_is_removed_exactly(s, amplitude, seed):
    model = chain_case(s, s)
    feeds = input_feeds(model, seed, amplitude)
    result = optimize_qdq(model, feeds)
    for before, after in zip(_outputs(model, feeds), _outputs(result.model, feeds)):
        np.testing.assert_array_equal(before, after)


@given(scales, scales, amplitudes, st.integers(0, 99))
def test_concat_alignment_within_bound(s1, s2, amplitude, seed):
    model = concat_case(s1, s2)
    feeds = input_feeds(model, seed, amplitude)
    result = optimize_qdq(model, feeds)
    assert "QDQ008-concat-scales" not in {f.rule for f in validate_qdq(result.model)}
    top = max(s1, s2)
    for change, feed in zip(_change(model, result, feeds), feeds):
        parts = [(s + top) / 2 + clipped(feed[name], s) if s != top else np.zeros_like(feed[name]) for name, s in (("x1", s1), ("x2", s2))]
        assert np.all(change <= np.concatenate(parts, axis=1) + TOL)


@given(st.sampled_from([*PASSTHROUGH, "Reshape"]), scales, scales, amplitudes, st.integers(0, 99))
def test_scale_carried_through_within_bound(op, s_in, s_out, amplitude, seed):
    model = passthrough_case(op, s_in, s_out)
    feeds = input_feeds(model, seed, amplitude)
    result = optimize_qdq(model, feeds)
    assert "QDQ009-passthrough-scale" not in {f.rule for f in validate_qdq(result.model)}
    for change, feed in zip(_change(model, result, feeds), feeds):
        y = fq(feed["x"], s_in)  # the op only selects or moves these values
        assert change.max() <= (s_in + s_out) / 2 + clipped(y, min(s_in, s_out)).max() + TOL


@given(st.integers(1, 4), st.integers(1, 4), scales, amplitudes, st.booleans(), st.integers(0, 99))
def test_qdq_moved_to_residual_within_bound(c_out, c_in, s, amplitude, residual_quantized, seed):
    weight = np.random.default_rng(seed).normal(size=(c_out, c_in, 1, 1)).astype(np.float32)
    model = fusion_case(weight, s, residual_quantized)
    feeds = input_feeds(model, seed, amplitude)
    result = optimize_qdq(model, feeds)
    assert "QDQ006-conv-add-qdq" not in {f.rule for f in validate_qdq(result.model)}
    for change, feed in zip(_change(model, result, feeds), feeds):
        conv = np.einsum("oi,bihw->bohw", weight[:, :, 0, 0].astype(np.float64), feed["x"])
        bound = s / 2 + clipped(conv, s) + (0 if residual_quantized else s / 2 + clipped(feed["r"], s))
        assert np.all(change <= bound + TOL * (1 + np.abs(conv)))


@given(st.integers(1, 4), st.integers(1, 4), scales, st.integers(0, 99))
def test_weight_quantize_folded_exactly(c_out, c_in, s, seed):
    model = weight_fold_case(np.random.default_rng(seed).normal(size=(c_out, c_in, 1, 1)).astype(np.float32), s)
    feeds = input_feeds(model, seed, 1.0)
    result = optimize_qdq(model, feeds)
    quantized_initializers = [n for n in result.model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "w_float"]
    assert quantized_initializers == [] and "w_float" not in {i.name for i in result.model.graph.initializer}
    assert any(i.data_type == onnx.TensorProto.INT8 for i in result.model.graph.initializer)
    for before, after in zip(_outputs(model, feeds), _outputs(result.model, feeds)):
        np.testing.assert_array_equal(before, after)


def _all_cases(draw):
    s1, s2 = draw(scales), draw(scales)
    weight = np.random.default_rng(draw(st.integers(0, 9))).normal(size=(2, 3, 1, 1)).astype(np.float32)
    return draw(st.sampled_from([
        chain_case(s1, s2), concat_case(s1, s2), passthrough_case(draw(st.sampled_from(sorted(PASSTHROUGH))), s1, s2),
        fusion_case(weight, s1, draw(st.booleans())), weight_fold_case(weight.reshape(3, 2, 1, 1), s1),
        rules_graph(draw(rules_specs(violation=st.sampled_from([None, *VIOLATIONS])))),
    ]))


@given(st.data())
def test_optimizing_twice_equals_optimizing_once(data):
    model = _all_cases(data.draw)
    once = optimize_qdq(model)
    before = model.SerializeToString()
    twice = optimize_qdq(once.model)
    assert model.SerializeToString() == before
    assert not twice.modified and twice.model.SerializeToString() == once.model.SerializeToString()


def test_input_not_mutated_with_feeds():
    model = concat_case(0.01, 0.04)
    before = model.SerializeToString()
    optimize_qdq(model, input_feeds(model, 0, 1.0))
    assert model.SerializeToString() == before


def test_rewrite_breaking_its_bound_is_undone(monkeypatch):
    monkeypatch.setattr(qdq_optimize, "requantize_bound", lambda s_old, s_new: lambda x: 0.0)
    model = concat_case(0.01, 0.04)
    result = optimize_qdq(model, input_feeds(model, 0, 1.0))
    assert not result.modified and result.model.SerializeToString() == model.SerializeToString()
    assert any("align_concat_scales undone" in skip.reason for skip in result.report.skips)


def test_figures_without_feeds_state_the_in_range_bound():
    result = optimize_qdq(concat_case(0.01, 0.04))
    figure = result.report.figures["align_concat_scales"]
    assert figure["sites"] == 1 and figure["max_abs_change"] is None and figure["max_bound"] == pytest.approx(0.025)


def test_clean_model_is_left_alone():
    model = chain_case(0.02, 0.02)
    once = optimize_qdq(model)
    assert once.modified and not optimize_qdq(once.model).modified
