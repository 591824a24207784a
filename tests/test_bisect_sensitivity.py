"""Sensitivity and the fallback search: planted single-node faults, ddmin's cost, the lowerings."""

import math

import bisect_models as bm
import numpy as np
import onnx
import pytest
from hypothesis import given, settings
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
def test_fp16_overflow_search_returns_exactly_the_node_and_its_reader_in_log_runs(depth, fault):
    """The Conv's output is out of fp16 range, so the Conv stays fp32, and so does the MatMul that
    reads it: the converter would cast that output down for a converted MatMul (inf). Where the
    Conv's own weights are beyond fp16, the converter keeps it anyway and only the MatMul is asked."""
    from onnx2trt_check.precision.fp16 import convert_to_fp16

    model = bm.fp16_overflow(depth, fault)
    result = search_fallback(model, FEEDS, fp16_emulation)
    on_its_own = {node.name for node in convert_to_fp16(model, block_ops=()).report.blocked}
    assert result.exclude == [n for n in (bm.node_name(fault), bm.node_name(fault + 1)) if n not in on_its_own] and result.met
    assert result.lowered_sqnr_db == -math.inf and result.final_sqnr_db >= result.min_sqnr_db
    assert result.runs["ddmin"] <= len(result.exclude) * ddmin_bound(depth)
    assert all("alone in reduced precision: output SQNR -inf dB" in result.reasons[node] for node in result.exclude)


def test_ranking_finds_the_node_before_ddmin():
    model = bm.fp16_overflow(16, 8)
    ranking = node_sensitivity(model, FEEDS, fp16_emulation)
    assert {s.node for s in ranking[:2]} == {"n8_conv", "n9_matmul"} and ranking[1].only_lowered_sqnr_db == -math.inf
    assert all(s.only_lowered_sqnr_db > -math.inf for s in ranking[2:])
    result = search_fallback(model, FEEDS, fp16_emulation, ranking=ranking)
    assert result.exclude == ["n8_conv", "n9_matmul"]


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
        assert result.met and result.exclude == ["Conv(t4)", "MatMul(t5)"]  # the overflowing node and its reader, by label
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


def mixed_model() -> onnx.ModelProto:
    """What the converter treats case by case: a graph input read twice, an initializer shared by two
    nodes, a Constant node, Resize (its scales stay float), Max (an op the converter cannot convert),
    Cast to float, MatMul, a weight beyond the fp16 range, three outputs; no node has a name."""
    text = """<ir_version: 8, opset_import: ["": 17]>
    g (float[1, 2, 4, 4] x) => (float[1, 2, 8, 8] up, float[1, 2, 4, 4] side, float[1, 2, 4, 4] back) {
        a = Add(x, b)
        m = Mul(x, b)
        k = Constant <value = float[1] {3.0001}> ()
        s = Mul(a, k)
        big = Mul(s, w)
        mx = Max(big, m)
        c = Cast <to = 1> (mx)
        t = MatMul(c, e)
        up = Resize <mode = "linear"> (t, roi, scales)
        side = Sub(mx, a)
        far = Mul(x, huge)
        back = Div(far, huge)
    }"""
    model = onnx.parser.parse_model(text)
    rng = np.random.default_rng(5)
    model.graph.initializer.extend([
        onnx.numpy_helper.from_array(rng.uniform(0.1, 2, (1, 2, 1, 1)).astype(np.float32), "b"),
        onnx.numpy_helper.from_array(np.array([2900.3], np.float32), "w"),  # big: near 2**15, fp16 steps of 16
        onnx.numpy_helper.from_array((np.eye(4) + 0.01 * rng.normal(size=(4, 4))).astype(np.float32), "e"),
        onnx.numpy_helper.from_array(np.zeros(0, np.float32), "roi"),
        onnx.numpy_helper.from_array(np.array([70000.3], np.float32), "huge"),  # beyond fp16: its readers stay fp32
        onnx.numpy_helper.from_array(np.array([1, 1, 2.0003, 2.0003], np.float32), "scales"),  # not an fp16 number
    ])
    return model


def _same_outputs(one, other) -> bool:
    return all(np.array_equal(a[k], b[k], equal_nan=True) for a, b in zip(one, other) for k in a)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), which=st.sampled_from(["mixed", "residual"]))
def test_the_emulation_rounds_exactly_where_the_converted_artifact_holds_fp16(data, which):
    """For any set of kept nodes: fp16_emulation computes what the converter's file computes with
    those nodes blocked, emulated edge by edge from the file itself (fp16_storage_emulation, the
    cpu-fp16-emu target): a kept node's output cast down for a converted reader, a shared weight
    cast back up for a kept reader, Resize's float scales, the converter's own fp32 ops."""
    from onnx2trt_check.precision.fp16 import convert_to_fp16
    from onnx2trt_check.targets.fp16 import fp16_storage_emulation

    model = mixed_model() if which == "mixed" else bm.fp16_overflow(12, 4, residual=True)
    if which == "residual":
        for node in model.graph.node:
            node.name = ""
    names = [name for name, _ in node_names(model)]
    keep = data.draw(st.sets(st.sampled_from(names)))
    scale = data.draw(st.sampled_from([1.0, 3.3] if which == "mixed" else [1.0, 3.3, 7e3]))
    rng = np.random.default_rng(data.draw(st.integers(0, 100)))
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    feeds = [{"x": (rng.uniform(0.5, 1.5, shape) * scale).astype(np.float32)} for _ in range(2)]
    artifact = convert_to_fp16(model, block_ops=(), block_nodes=sorted(keep)).model
    with np.errstate(all="ignore"):
        expected = run_model(fp16_storage_emulation(model, artifact), feeds)
        got = run_model(fp16_emulation(model, keep_fp32=keep), feeds)
    assert _same_outputs(got, expected)
    assert which == "residual" or all(np.all(np.isfinite(v)) for out in expected for v in out.values())
