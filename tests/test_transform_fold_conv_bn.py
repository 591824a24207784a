"""fold_conv_bn: Conv/ConvTranspose -> BatchNormalization folded into one layer."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from transform_strategies import (
    BNParams,
    GraphParts,
    assert_close,
    bn_params,
    float_arrays,
    grouping,
    op_counts,
    run,
    tensor_info,
)

from onnx2trt_check.transforms.fold_conv_bn import fold_conv_bn, scale_output_channels


@st.composite
def conv_bn_models(draw, *, transposed: bool):
    """A random Conv (or ConvTranspose) -> BN model, its input shape and the BN params."""
    groups, c_in, c_out = draw(grouping())
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(2))
    strides = tuple(draw(st.integers(1, 2)) for _ in range(2))
    dilations = tuple(draw(st.integers(1, 2)) for _ in range(2))
    pads = tuple(draw(st.integers(0, k - 1)) for k in kernel * 2)
    spatial = tuple(draw(st.integers(3, 6)) for _ in range(2))
    batch = draw(st.integers(1, 2))
    for axis in range(2):  # a Conv window must fit in the padded input
        assume(transposed or spatial[axis] + pads[axis] + pads[2 + axis] >= (kernel[axis] - 1) * dilations[axis] + 1)
    weight_shape = (c_in, c_out // groups, *kernel) if transposed else (c_out, c_in // groups, *kernel)
    parts = GraphParts()
    inputs = ["x", parts.const("w", draw(float_arrays(weight_shape)))]
    if draw(st.booleans()):
        inputs.append(parts.const("b", draw(float_arrays((c_out,)))))
    op = "ConvTranspose" if transposed else "Conv"
    parts.node(op, inputs, ["c"], group=groups, kernel_shape=kernel, strides=strides, pads=pads, dilations=dilations)
    bn = draw(bn_params(c_out))
    bn.add(parts, "c", "y")
    return parts.model([tensor_info("x", (batch, c_in, *spatial))], [tensor_info("y", None)]), (batch, c_in, *spatial)


def _check_equivalent_fold(model: onnx.ModelProto, input_shape, seed=0) -> onnx.ModelProto:
    before = model.SerializeToString()
    result = fold_conv_bn(model)
    assert model.SerializeToString() == before, "input model was mutated"
    assert result.modified, result.report
    onnx.checker.check_model(result.model, full_check=True)
    feeds = {"x": np.random.default_rng(seed).standard_normal(input_shape).astype(np.float32)}
    assert_close(run(result.model, feeds)["y"], run(model, feeds)["y"])
    return result.model


@given(conv_bn_models(transposed=False))
def test_conv_bn_fold_is_equivalent(case):
    model, input_shape = case
    folded = _check_equivalent_fold(model, input_shape)
    assert op_counts(folded) == {"Conv": 1}


@given(conv_bn_models(transposed=True))
def test_conv_transpose_bn_fold_is_equivalent(case):
    model, input_shape = case
    folded = _check_equivalent_fold(model, input_shape)
    assert op_counts(folded) == {"ConvTranspose": 1}


def test_conv_transpose_scale_runs_along_axis_1_per_group():
    # Hand-built: 2 groups, C_in=2 (1 per group), C_out=4 (2 per group): output o = 2*g + j.
    weight = np.ones((2, 2, 1, 1))
    scaled = scale_output_channels(weight, np.array([1.0, 2.0, 3.0, 4.0]), transposed=True, group=2)
    np.testing.assert_array_equal(scaled[:, :, 0, 0], [[1.0, 2.0], [3.0, 4.0]])


def _simple_parts(bn_attributes=None, *, bn_outputs=("y",)):
    parts = GraphParts()
    parts.const("w", np.random.default_rng(1).standard_normal((3, 2, 3, 3)))
    parts.node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1])
    ones = np.ones(3, np.float32)
    for name, value in (("s", ones), ("bb", ones * 0.5), ("m", ones * 0.1), ("v", ones * 2)):
        parts.const(name, value)
    parts.node("BatchNormalization", ["c", "s", "bb", "m", "v"], list(bn_outputs), **(bn_attributes or {}))
    return parts


def _assert_skipped(model: onnx.ModelProto, fragment: str) -> None:
    before = model.SerializeToString()
    result = fold_conv_bn(model)
    assert not result.modified
    assert result.model.SerializeToString() == before
    assert model.SerializeToString() == before
    assert any(fragment in skip.reason for skip in result.report.skips), result.report.skips


X = tensor_info("x", (1, 2, 5, 5))


def test_skips_conv_output_with_second_consumer():
    parts = _simple_parts()
    parts.node("Relu", ["c"], ["r"])
    _assert_skipped(parts.model([X], [tensor_info("y", None), tensor_info("r", None)]), "has 2 consumers")


def test_skips_conv_output_that_is_graph_output():
    parts = _simple_parts()
    _assert_skipped(parts.model([X], [tensor_info("y", None), tensor_info("c", None)]), "is a graph output")


def test_skips_non_constant_bn_params():
    parts = _simple_parts()
    parts.initializers = [t for t in parts.initializers if t.name != "m"]
    model = parts.model([X, tensor_info("m", (3,))], [tensor_info("y", None)])
    _assert_skipped(model, "not all constants")


def test_skips_non_constant_conv_weight():
    parts = _simple_parts()
    parts.initializers = [t for t in parts.initializers if t.name != "w"]
    _assert_skipped(parts.model([X, tensor_info("w", (3, 2, 3, 3))], [tensor_info("y", None)]), "weight is not a constant")


def test_skips_training_mode_bn_with_extra_outputs():
    parts = _simple_parts({"training_mode": 1}, bn_outputs=("y", "rm", "rv"))
    _assert_skipped(parts.model([X], [tensor_info("y", None)]), "training mode")


def test_skips_bn_with_extra_outputs():
    parts = _simple_parts(bn_outputs=("y", "rm", "rv"))
    model = parts.model([X], [tensor_info("y", None), tensor_info("rm", None)])
    model.opset_import[0].version = 9  # opset 9 allows the running-stat outputs in inference
    _assert_skipped(model, "extra outputs")


def test_bn_output_as_graph_output_keeps_its_name_and_folds_chains():
    parts = _simple_parts()
    parts.const("w2", np.random.default_rng(2).standard_normal((3, 3, 1, 1)))
    parts.node("Conv", ["y", "w2"], ["c2"])
    BNParams(*(np.full(3, v, np.float32) for v in (-1.5, 0.2, 0.3, 1e-8)), 1e-3).add(parts, "c2", "z")
    model = parts.model([X], [tensor_info("y", None), tensor_info("z", None)])
    result = fold_conv_bn(model)
    assert op_counts(result.model) == {"Conv": 2} and len(result.report.matches) == 2
    assert [o.name for o in result.model.graph.output] == ["y", "z"]
    feeds = {"x": np.random.default_rng(3).standard_normal((1, 2, 5, 5)).astype(np.float32)}
    for name in ("y", "z"):
        assert_close(run(result.model, feeds)[name], run(model, feeds)[name])


@pytest.mark.parametrize("op", ["Relu", "Identity"])
def test_bn_not_after_conv_is_not_a_candidate(op):
    parts = GraphParts()
    parts.node(op, ["x"], ["c"])
    BNParams(*(np.ones(2, np.float32),) * 4, 1e-5).add(parts, "c", "y")
    result = fold_conv_bn(parts.model([X], [tensor_info("y", None)]))
    assert not result.modified and not result.report.skips
