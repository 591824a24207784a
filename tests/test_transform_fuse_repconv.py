"""fuse_repconv: RepVGG/RepConv blocks (KxK + 1x1 + identity branches, with or without BN)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import given
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

from onnx2trt_check.transforms.fold_conv_bn import fold_conv_bn
from onnx2trt_check.transforms.fuse_repconv import fuse_repconv


@st.composite
def repconv_cases(draw):
    """(model, input shape): a random RepConv block summed by randomly ordered chained Adds."""
    groups, c_in, c_out = draw(grouping())
    if draw(st.booleans()):
        c_out = c_in  # square blocks, so identity branches (incl. grouped) come up often
    k = draw(st.sampled_from([1, 3]))
    dilation = draw(st.integers(1, 2))
    stride = draw(st.integers(1, 2))
    # Aligned by construction: the 1x1 pads, the tap where the 1x1 sits, then the KxK pads.
    one_pads = [draw(st.sampled_from([0, 1])) for _ in range(4)] if draw(st.booleans()) else [0] * 4
    offsets = [draw(st.integers(0, k - 1)) for _ in range(2)]
    pads = [p + o * dilation for p, o in zip(one_pads[:2], offsets)] + [
        p + dilation * (k - 1 - o) for p, o in zip(one_pads[2:], offsets)]
    identity_fits = c_in == c_out and stride == 1 and not any(one_pads)
    kinds = ["kxk", "1x1"] + (["identity"] if identity_fits else [])
    chosen = draw(st.lists(st.sampled_from(kinds), min_size=2, max_size=3, unique=True).filter(
        lambda c: any(kind != "identity" for kind in c)))
    parts = GraphParts()
    leaves = [_branch(draw, parts, kind, groups=groups, c_in=c_in, c_out=c_out, k=k, stride=stride,
                      dilation=dilation, pads=pads, one_pads=one_pads) for kind in chosen]
    leaves = draw(st.permutations(leaves))
    total = leaves[0]
    for index, leaf in enumerate(leaves[1:]):
        total = parts.node("Add", [total, leaf], [f"sum{index}"])
    spatial = [draw(st.integers(max(3, dilation * (k - 1) + 1), 6)) for _ in range(2)]
    shape = (draw(st.integers(1, 2)), c_in, *spatial)
    return parts.model([tensor_info("x", shape)], [tensor_info(total, None)]), shape


def _branch(draw, parts, kind, *, groups, c_in, c_out, k, stride, dilation, pads, one_pads) -> str:
    """One branch over "x", maybe with a conv bias, maybe followed by a BN; returns its output."""
    if kind == "identity":
        out = "x"
    else:
        size, branch_pads = (k, pads) if kind == "kxk" else (1, one_pads)
        inputs = ["x", parts.const(f"w_{kind}", draw(float_arrays((c_out, c_in // groups, size, size))))]
        if draw(st.booleans()):
            inputs.append(parts.const(f"b_{kind}", draw(float_arrays((c_out,)))))
        out = parts.node("Conv", inputs, [f"conv_{kind}"], group=groups, strides=[stride] * 2,
                         dilations=[dilation] * 2, pads=branch_pads)
    if draw(st.booleans()):
        out = draw(bn_params(c_out)).add(parts, out, f"bn_{kind}")
    return out


def _fused(model: onnx.ModelProto, fuse=fuse_repconv) -> onnx.ModelProto:
    before = model.SerializeToString()
    result = fuse(model)
    assert model.SerializeToString() == before, "input model was mutated"
    assert result.modified, result.report
    onnx.checker.check_model(result.model, full_check=True)
    return result.model


def _assert_equivalent(model, fused, shape, seed=0):
    feeds = {"x": np.random.default_rng(seed).standard_normal(shape).astype(np.float32)}
    name = model.graph.output[0].name
    assert_close(run(fused, feeds)[name], run(model, feeds)[name])


@given(repconv_cases())
def test_repconv_block_fuses_into_one_equivalent_conv(case):
    model, shape = case
    fused = _fused(model)
    assert op_counts(fused) == {"Conv": 1}
    _assert_equivalent(model, fused, shape)


@given(repconv_cases())
def test_repconv_fuses_the_same_after_fold_conv_bn(case):
    model, shape = case
    folded = fold_conv_bn(model).model
    fused = _fused(folded)
    assert op_counts(fused) == {"Conv": 1}
    _assert_equivalent(model, fused, shape)


# --- hand-built blocks for the exact kernel layout and the must-not-match cases ---------------------


def _block(*, c=2, group=1, k1_attrs=None, k3_attrs=None, extra_outputs=(), identity=False, bn_on_1x1=True):
    """x -> Conv3x3 (pads 1) + Conv1x1 [+ BN] [+ x] summed by Adds."""
    rng = np.random.default_rng(4)
    parts = GraphParts()
    parts.const("w3", rng.standard_normal((c, c // group, 3, 3)))
    parts.const("w1", rng.standard_normal((c, c // group, 1, 1)))
    parts.node("Conv", ["x", "w3"], ["c3"], **{"pads": [1, 1, 1, 1], "group": group, **(k3_attrs or {})})
    parts.node("Conv", ["x", "w1"], ["c1"], **{"group": group, **(k1_attrs or {})})
    one = "c1"
    if bn_on_1x1:
        one = BNParams(*(np.full(c, v, np.float32) for v in (-0.5, 0.3, 0.1, 2.0)), 1e-5).add(parts, "c1", "b1")
    total = parts.node("Add", ["c3", one], ["s0"])
    if identity:
        total = parts.node("Add", [total, "x"], ["s1"])
    outputs = [tensor_info(total, None)] + [tensor_info(name, None) for name in extra_outputs]
    return parts, outputs


X = tensor_info("x", (1, 2, 6, 6))


def test_1x1_and_identity_land_on_the_kernel_center():
    parts, outputs = _block(identity=True, bn_on_1x1=False)
    fused = _fused(parts.model([X], outputs))
    weight = {t.name: onnx.numpy_helper.to_array(t) for t in fused.graph.initializer}
    (fused_weight,) = [w for w in weight.values() if w.ndim == 4]
    rng = np.random.default_rng(4)  # the same draws, in the same order, as _block
    w3, w1 = rng.standard_normal((2, 2, 3, 3)), rng.standard_normal((2, 2, 1, 1))
    expected = w3.copy()
    expected[:, :, 1, 1] += w1[:, :, 0, 0] + np.eye(2)
    np.testing.assert_allclose(fused_weight, expected, rtol=1e-6)


@pytest.mark.parametrize("channels", [2, 4])  # depthwise, then 2 channels per group
def test_grouped_identity_is_a_grouped_identity_kernel(channels):
    parts, outputs = _block(c=channels, group=2, identity=True)
    model = parts.model([tensor_info("x", (1, channels, 6, 6))], outputs)
    fused = _fused(model)
    assert op_counts(fused) == {"Conv": 1}
    _assert_equivalent(model, fused, (1, channels, 6, 6))


def _assert_skipped(model, fragment):
    before = model.SerializeToString()
    result = fuse_repconv(model)
    assert not result.modified and result.model.SerializeToString() == before
    assert model.SerializeToString() == before
    assert any(fragment in skip.reason for skip in result.report.skips), result.report.skips


def test_skips_inconsistent_strides():
    parts, outputs = _block(k1_attrs={"strides": [2, 2]}, k3_attrs={"strides": [1, 1]})
    _assert_skipped(parts.model([X], outputs), "inconsistent strides")


def test_skips_inconsistent_groups():
    parts, outputs = _block()
    parts.nodes[1].attribute.append(onnx.helper.make_attribute("group", 2))
    parts.initializers[1] = onnx.numpy_helper.from_array(np.ones((2, 1, 1, 1), np.float32), "w1")
    _assert_skipped(parts.model([X], outputs), "inconsistent groups")


def test_skips_inconsistent_dilations():
    parts, outputs = _block(k3_attrs={"dilations": [2, 2], "pads": [2, 2, 2, 2]})
    parts.initializers[1] = onnx.numpy_helper.from_array(np.ones((2, 2, 3, 3), np.float32), "w1")
    parts.nodes[1].attribute.append(onnx.helper.make_attribute("pads", [1, 1, 1, 1]))
    _assert_skipped(parts.model([X], outputs), "inconsistent dilations")


def test_skips_misaligned_1x1_padding():
    parts, outputs = _block(k1_attrs={"pads": [1, 1, 1, 1]})
    _assert_skipped(parts.model([X], outputs), "do not align")


def test_skips_identity_whose_shape_differs():
    parts, outputs = _block(k1_attrs={"strides": [2, 2]}, k3_attrs={"strides": [2, 2]}, identity=True)
    model = parts.model([X], outputs)
    result = fuse_repconv(model)
    # The inner Add (3x3 + 1x1, both stride 2) is a valid block; the outer one adds x of another shape.
    assert any("identity branch with strides" in s.reason for s in result.report.skips), result.report.skips


def test_skips_non_constant_weight():
    parts, outputs = _block()
    parts.initializers = [t for t in parts.initializers if t.name != "w1"]
    _assert_skipped(parts.model([X, tensor_info("w1", (2, 2, 1, 1))], outputs), "weight is not a constant")


def test_skips_intermediate_value_with_other_consumers():
    parts, outputs = _block(extra_outputs=("c1",))
    _assert_skipped(parts.model([X], outputs), "intermediate value 'c1'")


def test_skips_sum_of_branches_over_different_inputs():
    parts, outputs = _block()
    parts.node("Relu", ["x"], ["r"])
    parts.nodes[1].input[0] = "r"  # the 1x1 now reads relu(x)
    parts.nodes.insert(0, parts.nodes.pop())
    parts.node("Add", ["s0", "x"], ["s1"])
    model = parts.model([X], [tensor_info("s1", None)])
    result = fuse_repconv(model)
    assert not result.modified
    assert any("different inputs" in s.reason for s in result.report.skips), result.report.skips


def test_plain_residual_add_is_not_a_candidate():
    parts = GraphParts()
    parts.const("w", np.ones((2, 2, 3, 3)))
    parts.node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1])
    parts.node("Relu", ["c"], ["r"])
    parts.node("Add", ["x", "r"], ["y"])
    result = fuse_repconv(parts.model([X], [tensor_info("y", None)]))
    assert not result.modified and not result.report.skips
