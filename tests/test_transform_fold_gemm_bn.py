"""fold_gemm_bn and fold_bn_gemm: BatchNormalization after or before a Gemm/MatMul with a constant
weight (through a Flatten/Reshape), folded exactly; property-tested against ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from transform_strategies import BNParams, GraphParts, assert_close, bn_params, float_arrays, op_counts, run, tensor_info

from onnx2trt_check.transforms.fold_bn_gemm import fold_bn_gemm
from onnx2trt_check.transforms.fold_gemm_bn import fold_gemm_bn


@st.composite
def gemm_attributes(draw, *, trans_a: bool | None = None):
    return {"transA": int(draw(st.booleans()) if trans_a is None else trans_a), "transB": int(draw(st.booleans())),
            "alpha": draw(st.sampled_from([1.0, 0.5, -2.0])), "beta": draw(st.sampled_from([1.0, 0.25, -1.5]))}


@st.composite
def gemm_bias(draw, parts: GraphParts, rows: int, columns: int) -> list[str]:
    """No C, or C shaped [], [1], [N], [1, N], [M, 1] or [M, N]."""
    shape = draw(st.sampled_from([None, (), (1,), (columns,), (1, columns), (rows, 1), (rows, columns)]))
    return [] if shape is None else [parts.const("c", draw(float_arrays(shape)))]


@st.composite
def gemm_bn_models(draw):
    """Gemm -> BN with random transposes, alpha, beta and C."""
    rows, inner, columns = (draw(st.integers(1, 4)) for _ in range(3))
    attributes = draw(gemm_attributes())
    parts = GraphParts()
    weight = parts.const("w", draw(float_arrays((columns, inner) if attributes["transB"] else (inner, columns))))
    bias = draw(gemm_bias(parts, rows, columns))
    parts.node("Gemm", ["x", weight, *bias], ["g"], **attributes)
    draw(bn_params(columns)).add(parts, "g", "y")
    x_shape = (inner, rows) if attributes["transA"] else (rows, inner)
    return parts.model([tensor_info("x", x_shape)], [tensor_info("y", None)]), x_shape


@st.composite
def matmul_bn_models(draw):
    rows, inner, columns = (draw(st.integers(1, 4)) for _ in range(3))
    parts = GraphParts()
    parts.node("MatMul", ["x", parts.const("w", draw(float_arrays((inner, columns))))], ["g"])
    draw(bn_params(columns)).add(parts, "g", "y")
    return parts.model([tensor_info("x", (rows, inner))], [tensor_info("y", None)]), (rows, inner)


def _check_fold(function, model: onnx.ModelProto, x_shape, seed=0) -> onnx.ModelProto:
    before = model.SerializeToString()
    result = function(model)
    assert model.SerializeToString() == before, "input model was mutated"
    assert result.modified, result.report
    onnx.checker.check_model(result.model, full_check=True)
    assert "BatchNormalization" not in op_counts(result.model)
    feeds = {"x": np.random.default_rng(seed).standard_normal(x_shape).astype(np.float32)}
    assert_close(run(result.model, feeds)["y"], run(model, feeds)["y"])
    return result.model


@given(gemm_bn_models())
def test_gemm_bn_fold_is_equivalent(case):
    folded = _check_fold(fold_gemm_bn, *case)
    assert op_counts(folded) == {"Gemm": 1}


@given(matmul_bn_models())
def test_matmul_bn_fold_is_equivalent(case):
    folded = _check_fold(fold_gemm_bn, *case)
    assert op_counts(folded) == {"MatMul": 1, "Add": 1}


def test_matmul_bn_on_rank_3_output_is_skipped():
    parts = GraphParts()
    parts.node("MatMul", ["x", parts.const("w", np.ones((3, 2)))], ["g"])
    BNParams(*(np.ones(4, np.float32),) * 4, 1e-5).add(parts, "g", "y")
    result = fold_gemm_bn(parts.model([tensor_info("x", (1, 4, 3))], [tensor_info("y", None)]))
    assert not result.modified
    assert "rank 3" in result.report.skips[0].reason


@st.composite
def bn_gemm_models(draw):
    """BN -> [Flatten | Reshape] -> Gemm/MatMul: BN on [M, C] directly, or on [M, C, *S] flattened."""
    rows, channels = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    spatial = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    reshaper = "none" if not spatial else draw(st.sampled_from(["Flatten", "Reshape"]))
    if not spatial and draw(st.booleans()):
        reshaper = draw(st.sampled_from(["Flatten", "Reshape"]))  # a rank-2 input through a no-op reshape
    features, columns = channels * int(np.prod(spatial, dtype=int)), draw(st.integers(1, 4))
    layer = draw(st.sampled_from(["Gemm", "MatMul"]))
    parts = GraphParts()
    draw(bn_params(channels)).add(parts, "x", "b")
    data = "b"
    if reshaper == "Flatten":
        data = parts.node("Flatten", ["b"], ["f"], axis=1)
    elif reshaper == "Reshape":
        parts.initializers.append(onnx.numpy_helper.from_array(np.array([0, -1], np.int64), "target"))
        data = parts.node("Reshape", ["b", "target"], ["f"])
    if layer == "Gemm":
        attributes = draw(gemm_attributes(trans_a=False))
        weight = parts.const("w", draw(float_arrays((columns, features) if attributes["transB"] else (features, columns))))
        parts.node("Gemm", [data, weight, *draw(gemm_bias(parts, rows, columns))], ["y"], **attributes)
    else:
        parts.node("MatMul", [data, parts.const("w", draw(float_arrays((features, columns))))], ["y"])
    x_shape = (rows, channels, *spatial)
    return parts.model([tensor_info("x", x_shape)], [tensor_info("y", None)]), x_shape, layer


@given(bn_gemm_models())
def test_bn_gemm_fold_is_equivalent(case):
    model, x_shape, layer = case
    folded = _check_fold(fold_bn_gemm, model, x_shape)
    layers = {op: n for op, n in op_counts(folded).items() if op in ("Gemm", "MatMul", "Add")}
    assert layers == ({"Gemm": 1} if layer == "Gemm" else {"MatMul": 1, "Add": 1})


def _bn_flatten_gemm(flatten_axis: int = 1, trans_a: int = 0, x_shape=(2, 3, 2)) -> onnx.ModelProto:
    parts = GraphParts()
    BNParams(*(np.full(3, v, np.float32) for v in (2.0, 0.5, 0.1, 1.0)), 1e-5).add(parts, "x", "b")
    parts.node("Flatten", ["b"], ["f"], axis=flatten_axis)
    features = int(np.prod(x_shape[flatten_axis:]))
    parts.node("Gemm", ["f", parts.const("w", np.ones((features, features)))], ["y"], transA=trans_a)
    return parts.model([tensor_info("x", x_shape)], [tensor_info("y", None)])


@pytest.mark.parametrize(("model", "fragment"), [
    (_bn_flatten_gemm(flatten_axis=2), "not [M, 6]"),
    (_bn_flatten_gemm(trans_a=1, x_shape=(3, 3)), "transA=1"),
])
def test_bn_gemm_skips_with_reason(model, fragment):
    result = fold_bn_gemm(model)
    assert not result.modified
    assert any(fragment in skip.reason for skip in result.report.skips), result.report.skips


def test_bn_feeding_two_readers_is_not_folded():
    parts = GraphParts()
    BNParams(*(np.ones(3, np.float32),) * 4, 1e-5).add(parts, "x", "b")
    parts.node("Gemm", ["b", parts.const("w", np.ones((3, 2)))], ["y"])
    parts.node("Relu", ["b"], ["r"])
    result = fold_bn_gemm(parts.model([tensor_info("x", (1, 3))], [tensor_info("y", None), tensor_info("r", None)]))
    assert not result.modified
