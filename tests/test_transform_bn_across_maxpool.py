"""bn_across_maxpool: a BN with positive scales moved across a MaxPool to the layer that folds it,
then folded by the pipeline; property-tested against ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
from hypothesis import assume, given
from hypothesis import strategies as st
from transform_strategies import BNParams, GraphParts, assert_close, bn_params, float_arrays, op_counts, run, tensor_info

from onnx2trt_check.transforms.bn_across_maxpool import bn_across_maxpool
from onnx2trt_check.transforms.pipeline import run_pipeline


@st.composite
def pool_attributes(draw):
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(2))
    pads = tuple(draw(st.integers(0, k - 1)) for k in kernel * 2)
    return {"kernel_shape": kernel, "strides": tuple(draw(st.integers(1, 2)) for _ in range(2)), "pads": pads,
            "ceil_mode": int(draw(st.booleans()))}


@st.composite
def positive_bn(draw, channels: int) -> BNParams:
    bn = draw(bn_params(channels))
    return BNParams(np.abs(bn.gamma) + np.float32(1e-3), bn.beta, bn.mean, bn.var, bn.epsilon)


@st.composite
def maxpool_models(draw, *, direction: str):
    """backward: Conv -> MaxPool -> BN; forward: BN -> MaxPool -> Conv (1x1) or Flatten -> Gemm."""
    c_in, channels, spatial = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(3, 6))
    pool = draw(pool_attributes())
    parts = GraphParts()
    bn = draw(positive_bn(channels))
    if direction == "backward":
        parts.node("Conv", ["x", parts.const("w", draw(float_arrays((channels, c_in, 3, 3))))], ["c"], pads=[1, 1, 1, 1])
        parts.node("MaxPool", ["c"], ["p"], **pool)
        bn.add(parts, "p", "y")
        return parts.model([tensor_info("x", (1, c_in, spatial, spatial))], [tensor_info("y", None)]), (1, c_in, spatial, spatial)
    bn.add(parts, "x", "b")
    parts.node("MaxPool", ["b"], ["p"], **pool)
    if draw(st.booleans()):
        parts.node("Conv", ["p", parts.const("w", draw(float_arrays((2, channels, 1, 1))))], ["y"])
    else:
        parts.node("Flatten", ["p"], ["f"])
        x_info = tensor_info("x", (1, channels, spatial, spatial))
        # ceil_mode 0 here: with ceil_mode, ONNX shape inference can count one window more than ORT
        # runs (a last window that starts in the padding), and no Gemm weight fits both.
        assume(not pool["ceil_mode"])
        probe = parts.model([x_info], [tensor_info("f", None)])
        features = run(probe, {"x": np.zeros((1, channels, spatial, spatial), np.float32)})["f"].shape[1]
        parts.node("Gemm", ["f", parts.const("w", draw(float_arrays((features, 2))))], ["y"])
    return parts.model([tensor_info("x", (1, channels, spatial, spatial))], [tensor_info("y", None)]), (1, channels, spatial, spatial)


def _feeds(shape, seed=0):
    return {"x": np.random.default_rng(seed).standard_normal(shape).astype(np.float32)}


@given(st.sampled_from(["backward", "forward"]).flatmap(lambda d: maxpool_models(direction=d)))
def test_move_is_equivalent_and_the_pipeline_then_folds_it(case):
    model, shape = case
    before = model.SerializeToString()
    result = bn_across_maxpool(model)
    assert model.SerializeToString() == before
    assert result.modified, result.report
    onnx.checker.check_model(result.model, full_check=True)
    feeds = _feeds(shape)
    expected = run(model, feeds)["y"]
    assert_close(run(result.model, feeds)["y"], expected)
    passes = ["bn_across_maxpool", "fold_conv_bn", "fold_bn_conv", "fold_bn_gemm"]
    pipeline = run_pipeline(model, [feeds], passes=passes)
    assert pipeline.passed, pipeline.summary()
    assert "BatchNormalization" not in op_counts(pipeline.model)
    assert_close(run(pipeline.model, feeds)["y"], expected)


def _conv_pool_bn(gamma: np.ndarray) -> onnx.ModelProto:
    parts = GraphParts()
    parts.node("Conv", ["x", parts.const("w", np.random.default_rng(0).standard_normal((3, 1, 3, 3)))], ["c"], pads=[1, 1, 1, 1])
    parts.node("MaxPool", ["c"], ["p"], kernel_shape=[2, 2], strides=[2, 2])
    ones = np.ones(3, np.float32)
    BNParams(gamma.astype(np.float32), ones * 0.1, ones * 0.2, ones, 1e-5).add(parts, "p", "y")
    return parts.model([tensor_info("x", (1, 1, 4, 4))], [tensor_info("y", None)])


def test_a_negative_scale_is_not_moved_because_max_would_become_min():
    model = _conv_pool_bn(np.array([1.0, -0.5, 2.0]))
    result = bn_across_maxpool(model)
    assert not result.modified
    assert "channel 1" in result.report.skips[0].reason
    # The reason holds: moved anyway, the function changes.
    parts_model = _conv_pool_bn(np.array([1.0, 0.5, 2.0]))
    moved = bn_across_maxpool(parts_model).model
    for init in moved.graph.initializer:
        if init.name == "y_gamma":
            init.CopyFrom(onnx.numpy_helper.from_array(np.array([1.0, -0.5, 2.0], np.float32), "y_gamma"))
    feeds = _feeds((1, 1, 4, 4))
    assert not np.allclose(run(moved, feeds)["y"], run(model, feeds)["y"])


def test_no_absorbing_neighbour_is_not_a_candidate():
    parts = GraphParts()
    parts.node("Relu", ["x"], ["r"])
    parts.node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2])
    BNParams(*(np.ones(1, np.float32),) * 4, 1e-5).add(parts, "p", "y")
    result = bn_across_maxpool(parts.model([tensor_info("x", (1, 1, 4, 4))], [tensor_info("y", None)]))
    assert not result.modified and not result.report.skips
