"""Layerwise comparison: planted faults are named, matching rules, error math, report and plot."""

import json
import math

import bisect_models as bm
import numpy as np
import onnx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from onnx2trt_check.bisection.layerwise import (
    amplification_ratio,
    layerwise_compare,
    match_tensors,
    relative_l2_error,
)
from onnx2trt_check.bisection.plot import layerwise_plot_html
from onnx2trt_check.bisection.sensitivity import fp16_emulation
from onnx2trt_check.compare import Tolerance, sqnr_db
from onnx2trt_check.errors import InputDataError
from onnx2trt_check.runtime import run_model

FEEDS = bm.feeds()


@pytest.mark.parametrize("depth,fault,residual", [(5, 0, False), (40, 17, False), (40, 12, True), (200, 197, False), (200, 199, False)])
def test_wrong_weights_are_the_first_divergence_and_the_top_error_source(depth, fault, residual):
    reference, target = bm.wrong_weights(depth, fault, residual=residual)
    report = layerwise_compare(reference, target, FEEDS)
    assert report.first_divergent.nodes == [bm.node_name(fault)]
    assert report.first_divergent.tensor == f"t{fault}"
    # Its input is exact: it is where the error starts, listed apart from the amplifiers, which
    # hold only nodes whose input error is above zero.
    assert [s.node for s in report.sources] == [bm.node_name(fault)]
    assert all(a.input_error > 0 for a in report.amplification)
    assert bm.node_name(fault) not in {a.node for a in report.amplification}
    assert report.executions == 2 * len(FEEDS)


@given(depth=st.integers(5, 200), position=st.floats(0, 1), residual=st.booleans())
def test_any_planted_weight_fault_is_named(depth, position, residual):
    candidates = bm.weighted_nodes(depth, residual=residual)
    fault = candidates[int(position * (len(candidates) - 1))]
    reference, target = bm.wrong_weights(depth, fault, residual=residual)
    report = layerwise_compare(reference, target, FEEDS)
    assert report.first_divergent.nodes == [bm.node_name(fault)]


@pytest.mark.parametrize("depth,fault", [(8, 4), (60, 32), (200, 100)])
def test_fp16_overflow_is_named(depth, fault):
    model = bm.fp16_overflow(depth, fault)
    report = layerwise_compare(model, fp16_emulation(model), FEEDS)
    first = report.first_divergent
    assert first.nodes == [bm.node_name(fault)] and first.reference == f"t{fault}"
    assert any("NaN/Inf" in problem for problem in first.problems)


@pytest.mark.parametrize("depth,bad,residual", [(8, 5, False), (40, 21, False), (40, 24, True), (120, 97, False)])
def test_bad_q_scale_is_charged_to_the_quantized_node(depth, bad, residual):
    report = layerwise_compare(bm.chain_model(depth, residual=residual), bm.qdq_model(depth, bad=bad, residual=residual), FEEDS)
    first = report.first_divergent
    assert first.nodes == [bm.node_name(bad)]
    assert first.tensor == f"t{bad - 1}_dq{bad}" and first.reference == f"t{bad - 1}"  # rule 2: DQ -> Q's input
    assert report.amplification[0].node == bm.node_name(bad)


def test_healthy_qdq_and_fp16_models_have_no_divergence():
    model = bm.chain_model(40)
    assert layerwise_compare(model, bm.qdq_model(40), FEEDS).first_divergent is None
    assert layerwise_compare(model, fp16_emulation(model), FEEDS).first_divergent is None


def test_fp16_converter_casts_map_back_to_fp32_names():
    from onnx2trt_check.precision.fp16 import convert_to_fp16

    model = bm.chain_model(12)
    converted = convert_to_fp16(model, block_ops=()).model
    report = layerwise_compare(model, converted, FEEDS)
    assert report.first_divergent is None
    by_tensor = {row.tensor: row.reference for row in report.tensors}
    cast_rows = [name for name in by_tensor if name not in {t.name for t in model.graph.output} and by_tensor[name] != name]
    assert cast_rows and all(by_tensor[name] in {"x"} | {f"t{i}" for i in range(12)} for name in cast_rows)
    assert {f"t{i}" for i in range(12)} <= set(by_tensor.values())


def test_matching_skips_weight_dequantization():
    import onnx_ir as ir

    text = """<ir_version: 8, opset_import: ["" : 17]> g (float[2] x) => (float[2] y) <float[2] w8 = {1.0, 2.0}, float s = {0.1}, int8 z = {0}> {
        wq = QuantizeLinear(w8, s, z)
        w = DequantizeLinear(wq, s, z)
        xq = QuantizeLinear(x, s, z)
        xd = DequantizeLinear(xq, s, z)
        y = Mul(xd, w)
    }"""
    graph = ir.from_proto(onnx.shape_inference.infer_shapes(onnx.parser.parse_model(text))).graph
    assert match_tensors({"x", "y"}, graph) == {"x": "x", "xd": "x", "y": "y"}


def test_a_float_floor_is_an_sqnr_floor_and_tolerance_is_respected():
    reference, target = bm.wrong_weights(12, 5)
    assert layerwise_compare(reference, target, FEEDS, tolerance=-100.0).first_divergent is None
    strict = layerwise_compare(reference, target, FEEDS, tolerance=Tolerance(atol=0.0, rtol=0.0))
    assert strict.first_divergent.tensor == "t5"


def test_report_is_json_and_text():
    reference, target = bm.wrong_weights(12, 5)
    report = layerwise_compare(reference, target, FEEDS, top_k=3)
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["first_divergent"]["tensor"] == "t5" and data["tensors"][0]["sqnr_db"] == "inf"
    assert len(data["amplification"]) == 3 and data["error_sources"][0]["node"] == "n5_matmul"
    text = report.format()
    assert text.splitlines()[0].startswith("first divergent: node n5_matmul, tensor 't5'")
    assert text.index("error sources") < text.index("largest error amplification")


def test_empty_feeds_are_refused():
    with pytest.raises(InputDataError):
        layerwise_compare(bm.chain_model(5), bm.chain_model(5), [])


# Multiples of 1e-3: sums of squares of subnormal floats underflow, which is not what is tested here.
arrays = st.lists(st.integers(-10**6, 10**6), min_size=1, max_size=30).map(lambda v: np.array(v) / 1000.0)


@given(ref=arrays, noise=st.floats(1e-6, 1.0), scale=st.floats(1e-3, 1e3), data=st.data())
def test_relative_error_is_the_sqnr_in_amplitude_and_scale_free(ref, noise, scale, data):
    touched = np.array(data.draw(st.lists(st.booleans(), min_size=ref.size, max_size=ref.size)))
    touched[0] = True  # at least one element differs (cos(0) = 1); the others may stay exactly equal
    got = ref + noise * np.cos(np.arange(ref.size)) * touched
    error = relative_l2_error([ref], [got])
    expected = np.linalg.norm(got - ref) / np.linalg.norm(ref) if np.any(ref) else math.inf
    assert error == pytest.approx(expected, rel=1e-9)
    if np.any(ref):
        assert error == pytest.approx(10 ** (-sqnr_db(ref, got) / 20), rel=1e-9)
        assert relative_l2_error([ref * scale], [got * scale]) == pytest.approx(error, rel=1e-9)


def test_relative_error_edge_cases():
    assert relative_l2_error([np.zeros(3)], [np.zeros(3)]) == 0.0
    # Elements that match exactly still count in the signal: sqrt(0.01) / sqrt(4) = 0.05.
    assert relative_l2_error([np.ones(4)], [np.array([1, 1, 1, 1.1])]) == pytest.approx(0.05)
    assert relative_l2_error([np.ones(3)], [np.array([1.0, np.inf, 1.0])]) == math.inf
    assert relative_l2_error([np.array([np.inf, 1.0])], [np.array([np.inf, 1.0])]) == 0.0
    assert relative_l2_error([np.ones(3)], [np.ones(4)]) == math.inf


@given(a=st.floats(0, 10), b=st.floats(0, 10))
def test_amplification_grows_with_output_error_and_shrinks_with_input_error(a, b):
    assert amplification_ratio(a, a) == pytest.approx(1.0)
    assert amplification_ratio(a, a + b) >= amplification_ratio(a, a) - 1e-12
    assert amplification_ratio(a + b, a) <= 1.0 + 1e-12
    assert amplification_ratio(0.0, b) == pytest.approx((b + 1e-3) / 1e-3)


def test_plot_is_self_contained_html_marking_the_first_divergence(tmp_path):
    reference, target = bm.wrong_weights(20, 9)
    report = layerwise_compare(reference, target, FEEDS)
    path = tmp_path / "plot.html"
    document = layerwise_plot_html(report, path)
    assert path.read_text() == document
    assert document.count("<svg") == 2 and "<script" not in document and "http" not in document.replace("http://www.w3.org/2000/svg", "")
    assert document.count("fill='red'") == 2 and "t9 (ref t9) @ n9_matmul" in document
    assert document.count("<circle") == 2 * len(report.tensors)


def test_a_target_runner_replaces_onnx_runtime_and_fused_tensors_are_skipped():
    """run_target stands for an engine with every tensor marked (TensorRT): only the tensors it
    gives are compared, and a fault among them is still found."""
    fault = bm.weighted_nodes(12)[2]
    reference, target = bm.wrong_weights(12, fault)
    full = layerwise_compare(reference, target, FEEDS)
    given = {row.tensor for row in full.tensors if row.tensor != full.first_divergent.tensor} | {full.first_divergent.tensor}
    given -= {row.tensor for row in full.tensors[1::3]} - {full.first_divergent.tensor}  # "fused away"

    def engine(model, feeds):
        outputs = run_model(_exposing(model, given), feeds)
        return {name: [o[name] for o in outputs] for name in given}

    report = layerwise_compare(reference, target, FEEDS, run_target=engine)
    assert {row.tensor for row in report.tensors} == given
    assert report.first_divergent.tensor == full.first_divergent.tensor


def _exposing(model: onnx.ModelProto, names) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    present = {o.name for o in copy.graph.output}
    copy.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in sorted(names) if n not in present)
    return copy
