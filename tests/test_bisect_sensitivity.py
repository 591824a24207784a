"""Sensitivity and the fallback search: planted single-node faults, ddmin's cost, the lowerings."""

import math

import bisect_models as bm
import numpy as np
import onnx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from onnx2trt_check.bisection.sensitivity import (
    ddmin,
    fp16_converter,
    fp16_emulation,
    int8_quantizer,
    node_names,
    node_sensitivity,
    output_sqnr_db,
    search_fallback,
    smallest_passing_prefix,
)
from onnx2trt_check.runtime import run_model

FEEDS = bm.feeds()


def ddmin_bound(n: int) -> int:
    return 2 * math.ceil(math.log2(n)) + 2


@pytest.mark.parametrize("depth,fault", [(8, 0), (60, 32), (200, 100), (200, 196)])
def test_fp16_overflow_search_returns_exactly_the_node_in_log_runs(depth, fault):
    result = search_fallback(bm.fp16_overflow(depth, fault), FEEDS, fp16_emulation)
    assert result.exclude == [bm.node_name(fault)] and result.met
    assert result.lowered_sqnr_db == -math.inf and result.final_sqnr_db >= result.min_sqnr_db
    assert result.runs["ddmin"] <= ddmin_bound(depth)
    assert "alone in reduced precision: output SQNR -inf dB" in result.reasons[bm.node_name(fault)]


def test_ranking_finds_the_node_before_ddmin():
    model = bm.fp16_overflow(16, 8)
    ranking = node_sensitivity(model, FEEDS, fp16_emulation)
    assert ranking[0].node == "n8_conv" and ranking[0].only_lowered_sqnr_db == -math.inf
    assert all(s.only_lowered_sqnr_db > -math.inf for s in ranking[1:])
    result = search_fallback(model, FEEDS, fp16_emulation, ranking=ranking)
    assert result.exclude == ["n8_conv"] and result.runs.get("ddmin", 0) == 0


def test_bad_q_scale_is_found_through_a_pluggable_lowering():
    def lower(model, *, keep_fp32):
        return bm.qdq_model(40, bad=21, exclude=keep_fp32)

    result = search_fallback(bm.chain_model(40), FEEDS, lower, min_sqnr_db=20.0)
    assert result.exclude == [bm.node_name(21)]
    assert result.runs["ddmin"] <= ddmin_bound(40)


def test_a_clean_model_needs_no_fallback_and_one_run():
    result = search_fallback(bm.chain_model(20), FEEDS, fp16_emulation)
    assert result.exclude == [] and result.runs == {"reference": 1, "start": 1}


def test_exclude_list_is_accepted_by_the_fp16_converter():
    from onnx2trt_check.precision.fp16 import convert_to_fp16

    result = search_fallback(bm.fp16_overflow(12, 4), FEEDS, fp16_emulation)
    converted = convert_to_fp16(bm.fp16_overflow(12, 4), block_ops=(), block_nodes=result.exclude)
    assert [b.name for b in converted.report.blocked] == result.exclude


def test_int8_quantizer_lowering_meets_the_floor_and_its_exclude_list_is_accepted():
    from onnx2trt_check.bisection.sensitivity import int8_quantizer
    from onnx2trt_check.quant.quantize import quantize_model

    model = bm.chain_model(12)
    result = search_fallback(model, FEEDS, int8_quantizer(FEEDS, method="max"), min_sqnr_db=45.0)
    assert result.met and result.final_sqnr_db >= 45.0
    quantize_model(model, FEEDS, method="max", exclude=result.exclude)


@pytest.mark.parametrize("lowering", ["emulation", "converter", "int8"])
def test_unnamed_nodes_are_named_by_op_type_and_first_output_and_every_lowering_keeps_them(lowering):
    model = bm.fp16_overflow(8, 4) if lowering != "int8" else bm.chain_model(8)
    for node in model.graph.node:
        node.name = ""
    lower = {"emulation": fp16_emulation, "converter": fp16_converter, "int8": int8_quantizer(FEEDS, method="max")}[lowering]
    names = [name for name, _ in node_names(model)]
    assert names == [f"{n.op_type}({n.output[0]})" for n in model.graph.node]
    if lowering == "emulation":  # the converter's file computes in fp32 on ORT's CPU: no overflow to find
        result = search_fallback(model, FEEDS, lower)
        assert result.met and result.exclude == ["Conv(t4)"]  # the overflowing node, by its label
    kept = lower(model, keep_fp32=set(names))
    assert output_sqnr_db(run_model(model, FEEDS), run_model(kept, FEEDS)) > 100  # every node kept: nothing lowered


@given(values=st.lists(st.floats(-1e6, 1e6, allow_nan=False, width=32), min_size=1, max_size=20))
def test_emulation_rounds_like_numpy_float16(values):
    text = """<ir_version: 8, opset_import: ["" : 17]> g (float[N] x) => (float[N] y) { y = Identity (x) }"""
    model = onnx.parser.parse_model(text)
    model.graph.node[0].name = "id"
    x = np.array(values, np.float32)
    with np.errstate(over="ignore"):
        expected = x.astype(np.float16).astype(np.float32)
    (got,) = run_model(fp16_emulation(model), [{"x": x}])[0].values()
    np.testing.assert_array_equal(got, expected)
    (kept,) = run_model(fp16_emulation(model, keep_fp32={"id"}), [{"x": x}])[0].values()
    np.testing.assert_array_equal(kept, x)


@given(n=st.integers(1, 300), culprits=st.lists(st.integers(0, 299), min_size=1, max_size=4, unique=True))
def test_ddmin_finds_exactly_the_needed_set(n, culprits):
    items = [f"n{i}" for i in range(n)]
    needed = {f"n{c % n}" for c in culprits}
    calls = []

    def passes(subset):
        calls.append(1)
        return needed <= set(subset)

    assert set(ddmin(items, passes)) == needed
    if len(needed) == 1 and n > 1:
        assert len(calls) <= ddmin_bound(n)


@given(count=st.integers(1, 500), threshold=st.integers(1, 600))
def test_smallest_passing_prefix_is_the_threshold(count, threshold):
    calls = []

    def passes(k):
        calls.append(k)
        return k >= threshold

    expected = threshold if threshold <= count else None
    assert smallest_passing_prefix(count, passes) == expected
    assert len(calls) <= 2 * math.ceil(math.log2(count) + 1) + 1


def test_output_sqnr_is_the_worst_output_and_minus_inf_on_overflow():
    ref = [{"a": np.ones(4), "b": np.ones(4)}]
    got = [{"a": np.ones(4) * 1.001, "b": np.ones(4) * 1.1}]
    assert output_sqnr_db(ref, got) == pytest.approx(20.0)
    assert output_sqnr_db(ref, [{"a": np.ones(4), "b": np.array([1, 1, np.inf, 1])}]) == -math.inf
