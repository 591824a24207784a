"""Found on foreign models (zoo3): torch's Conv2d(padding_mode='reflect' or 'replicate') after a
BatchNorm exports as BN -> Pad(reflect|edge) -> Conv, and fold_bn_conv reported "no
BatchNormalization -> Conv pair in the model". A per-channel affine map commutes with a Pad that
only copies values within each channel (reflect, edge, wrap), so the BN folds into the Conv behind
the Pad exactly (plus the usual border correction when the Conv pads too). A constant Pad, or one
that pads the batch or channel axis, is left alone with the reason."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from onnx2trt_check.runtime import run_model
from onnx2trt_check.transforms.fold_bn_conv import fold_bn_conv


def bn_pad_conv(*, mode: str, pads: list[int], conv_pads: list[int], groups: int = 1, seed: int = 0,
                channels: int = 4, spatial: tuple[int, int] = (7, 6)) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    gamma = rng.uniform(0.2, 2.0, channels) * rng.choice([-1, 1], channels)
    weights = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in (
        ("gamma", gamma), ("beta", rng.normal(size=channels)), ("mean", rng.normal(size=channels)),
        ("var", rng.uniform(0.1, 3.0, channels)), ("w", rng.normal(size=(6, channels // groups, 3, 3))), ("b", rng.normal(size=6)))]
    weights.append(numpy_helper.from_array(np.array(pads, np.int64), "pads"))
    nodes = [helper.make_node("BatchNormalization", ["x", "gamma", "beta", "mean", "var"], ["n"]),
             helper.make_node("Pad", ["n", "pads"], ["p"], mode=mode),
             helper.make_node("Conv", ["p", "w", "b"], ["y"], pads=conv_pads, group=groups)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, channels, *spatial])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "c", "h", "w"])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], ir_version=9)
    onnx.checker.check_model(model, full_check=True)
    return model


def _outputs(model, seed=1):
    x = np.random.default_rng(seed).normal(size=[d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim])
    return run_model(model, [{"x": x.astype(np.float32)}])[0]["y"].astype(np.float64)


@pytest.mark.parametrize("mode", ["reflect", "edge", "wrap"])
def test_bn_before_a_reflect_or_edge_padded_conv_folds_exactly(mode):
    model = bn_pad_conv(mode=mode, pads=[0, 0, 1, 2, 0, 0, 2, 1], conv_pads=[0, 0, 0, 0])
    result = fold_bn_conv(model)
    assert result.modified, result.report.skips
    assert [n.op_type for n in result.model.graph.node] == ["Pad", "Conv"]
    before, after = _outputs(model), _outputs(result.model)
    np.testing.assert_allclose(after, before, rtol=1e-4, atol=1e-4 * np.abs(before).max())


@settings(max_examples=25, deadline=None)
@given(mode=st.sampled_from(["reflect", "edge"]), spatial_pads=st.lists(st.integers(0, 2), min_size=4, max_size=4),
       conv_pads=st.lists(st.integers(0, 2), min_size=4, max_size=4), groups=st.sampled_from([1, 2]), seed=st.integers(0, 999))
def test_folds_are_exact_for_any_spatial_pads_and_conv_pads(mode, spatial_pads, conv_pads, groups, seed):
    pads = [0, 0, *spatial_pads[:2], 0, 0, *spatial_pads[2:]]
    model = bn_pad_conv(mode=mode, pads=pads, conv_pads=conv_pads, groups=groups, seed=seed)
    result = fold_bn_conv(model)
    assert result.modified, result.report.skips
    before, after = _outputs(model, seed), _outputs(result.model, seed)
    np.testing.assert_allclose(after, before, rtol=1e-4, atol=1e-4 * np.abs(before).max())


@pytest.mark.parametrize(("mode", "pads", "reason"), [
    ("constant", [0, 0, 1, 1, 0, 0, 1, 1], "constant"),
    ("reflect", [0, 1, 1, 1, 0, 1, 1, 1], "channel"),
])
def test_a_pad_that_does_not_commute_with_the_bn_is_left_with_the_reason(mode, pads, reason):
    model = bn_pad_conv(mode=mode, pads=pads, conv_pads=[0, 0, 0, 0], channels=4, spatial=(6, 6))
    if reason == "channel":  # the padded channel count must match the Conv for a valid model
        model = bn_pad_conv(mode=mode, pads=pads, conv_pads=[0, 0, 0, 0], channels=4, spatial=(6, 6), groups=1)
        model.graph.initializer[4].CopyFrom(numpy_helper.from_array(np.ones((6, 6, 3, 3), np.float32), "w"))
    result = fold_bn_conv(model)
    assert not result.modified
    assert any(reason in skip.reason for skip in result.report.skips), result.report.skips
