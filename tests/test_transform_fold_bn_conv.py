"""fold_bn_conv: BatchNormalization -> Conv, exact (with border correction), plain and skip_padded."""

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

from onnx2trt_check.errors import ConfigError
from onnx2trt_check.transforms.fold_bn_conv import fold_bn_conv


@st.composite
def bn_conv_cases(draw, *, padded=None):
    """(model, input shape, conv attributes): BN -> Conv with random geometry and statistics."""
    groups, c_in, c_out = draw(grouping())
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(2))
    dilations = tuple(draw(st.integers(1, 2)) for _ in range(2))
    conv = {"kernel_shape": kernel, "strides": tuple(draw(st.integers(1, 2)) for _ in range(2)),
            "dilations": dilations, "group": groups,
            "pads": tuple(draw(st.integers(0, 2)) for _ in range(4))}
    if padded is not None:
        assume(any(conv["pads"]) == padded)
    shape = (draw(st.integers(1, 2)), c_in, *(draw(st.integers(3, 6)) for _ in range(2)))
    for axis in range(2):
        assume(shape[2 + axis] + conv["pads"][axis] + conv["pads"][2 + axis] >= (kernel[axis] - 1) * dilations[axis] + 1)
    parts = GraphParts()
    draw(bn_params(c_in)).add(parts, "x", "b")
    weight = parts.const("w", draw(float_arrays((c_out, c_in // groups, *kernel))))
    bias = [parts.const("bias", draw(float_arrays((c_out,))))] if draw(st.booleans()) else []
    parts.node("Conv", ["b", weight, *bias], ["y"], **conv)
    return parts.model([tensor_info("x", shape)], [tensor_info("y", None)]), shape, conv


def _feeds(shape, seed=0):
    return {"x": np.random.default_rng(seed).standard_normal(shape).astype(np.float32)}


def _folded(model, **options):
    before = model.SerializeToString()
    result = fold_bn_conv(model, **options)
    assert model.SerializeToString() == before, "input model was mutated"
    assert result.modified, result.report
    onnx.checker.check_model(result.model, full_check=True)
    assert "BatchNormalization" not in op_counts(result.model)
    return result


def border_band(shape, conv) -> np.ndarray:
    """Independent of the code under test: ORT counts the in-bounds taps of each output window
    (ones input, ones kernel, same geometry); the band is where fewer than all taps are inside."""
    parts = GraphParts()
    parts.const("k", np.ones((1, 1, *conv["kernel_shape"])))
    attributes = {k: v for k, v in conv.items() if k != "group"}
    parts.node("Conv", ["ones", "k"], ["count"], **attributes)
    counter = parts.model([tensor_info("ones", (1, 1, *shape[2:]))], [tensor_info("count", None)])
    counts = run(counter, {"ones": np.ones((1, 1, *shape[2:]), np.float32)})["count"][0, 0]
    return counts < np.prod(conv["kernel_shape"]) - 0.5


@given(bn_conv_cases())
def test_exact_mode_matches_everywhere(case):
    model, shape, conv = case
    result = _folded(model)
    assert op_counts(result.model) == ({"Conv": 1, "Add": 1} if any(conv["pads"]) else {"Conv": 1})
    feeds = _feeds(shape)
    assert_close(run(result.model, feeds)["y"], run(model, feeds)["y"])


@given(bn_conv_cases(padded=True))
def test_plain_mode_differs_only_inside_the_border_band(case):
    model, shape, conv = case
    feeds = _feeds(shape)
    result = _folded(model, mode="plain", check_feeds=[feeds])
    assert op_counts(result.model) == {"Conv": 1}
    reference, folded = run(model, feeds)["y"], run(result.model, feeds)["y"]
    band = border_band(shape, conv)
    assert_close(folded[..., ~band], reference[..., ~band])
    figures = result.report.figures["border_error"]["y"]
    measured_border = float(np.abs(folded - reference)[..., band].max(initial=0.0))
    assert figures["border_max_abs"] == pytest.approx(measured_border, rel=1e-6, abs=1e-6)
    assert figures["interior_max_abs"] <= 1e-5 * max(1.0, float(np.abs(reference).max()))


def _hand_model(*, pads, spatial=(5, 5), bn_outputs=("b",), bn_attributes=None, shift=2.0):
    """BN with shift `shift` (gamma 1, mean 0, var 1-eps) -> 3x3 Conv of ones: easy to reason about."""
    parts = GraphParts()
    ones = np.ones(2, np.float32)
    BNParams(ones, ones * shift, ones * 0, ones * (1 - 1e-5), 1e-5).add(parts, "x", bn_outputs[0], **(bn_attributes or {}))
    if len(bn_outputs) > 1:
        parts.nodes[-1].output.extend(bn_outputs[1:])
    parts.const("w", np.ones((1, 2, 3, 3)))
    parts.node("Conv", [bn_outputs[0], "w"], ["y"], pads=pads)
    return parts


def test_plain_fold_with_padding_is_wrong_exactly_at_the_border_and_exact_mode_fixes_it():
    model = _hand_model(pads=[1, 1, 1, 1]).model([tensor_info("x", (1, 2, 5, 5))], [tensor_info("y", None)])
    feeds = _feeds((1, 2, 5, 5))
    reference = run(model, feeds)["y"]
    plain = run(fold_bn_conv(model, mode="plain").model, feeds)["y"]
    # A corner window has 5 of its 9 taps in the padding, 2 channels, shift 2: plain adds 5*2*2 too much.
    assert plain[0, 0, 0, 0] - reference[0, 0, 0, 0] == pytest.approx(20.0, abs=1e-4)
    assert plain[0, 0, 0, 2] - reference[0, 0, 0, 2] == pytest.approx(12.0, abs=1e-4)  # edge: 3 taps out
    assert_close(run(fold_bn_conv(model).model, feeds)["y"], reference)


def test_zero_pads_need_no_correction_in_any_mode():
    model = _hand_model(pads=[0, 0, 0, 0]).model([tensor_info("x", (1, 2, 5, 5))], [tensor_info("y", None)])
    for mode in ("exact", "plain", "skip_padded"):
        result = _folded(model, mode=mode)
        assert op_counts(result.model) == {"Conv": 1}
        assert_close(run(result.model, _feeds((1, 2, 5, 5)))["y"], run(model, _feeds((1, 2, 5, 5)))["y"])


def _assert_skipped(model, fragment, **options):
    before = model.SerializeToString()
    result = fold_bn_conv(model, **options)
    assert not result.modified and result.model.SerializeToString() == before
    assert model.SerializeToString() == before
    assert any(fragment in skip.reason for skip in result.report.skips), result.report.skips
    return result


def test_dynamic_spatial_shape_is_skipped_in_exact_mode_and_folded_in_plain_mode():
    model = _hand_model(pads=[1, 1, 1, 1]).model([tensor_info("x", (1, 2, "h", "w"))], [tensor_info("y", None)])
    _assert_skipped(model, "spatial shape is dynamic")
    assert fold_bn_conv(model, mode="plain").modified


def test_skip_padded_mode_skips_padded_conv():
    model = _hand_model(pads=[0, 1, 0, 1]).model([tensor_info("x", (1, 2, 5, 5))], [tensor_info("y", None)])
    _assert_skipped(model, "not zero", mode="skip_padded")


@pytest.mark.parametrize("second", ["Relu", "Conv"])
def test_bn_with_several_consumers_is_skipped(second):
    parts = _hand_model(pads=[0, 0, 0, 0])
    parts.node(second, ["b", "w"] if second == "Conv" else ["b"], ["z"])
    model = parts.model([tensor_info("x", (1, 2, 5, 5))], [tensor_info("y", None), tensor_info("z", None)])
    _assert_skipped(model, "BN output has 2 consumers")


def test_bn_output_that_is_a_graph_output_is_skipped():
    model = _hand_model(pads=[0, 0, 0, 0]).model([tensor_info("x", (1, 2, 5, 5))], [tensor_info("y", None), tensor_info("b", None)])
    _assert_skipped(model, "BN output has 2 consumers")


def test_training_mode_bn_is_skipped():
    parts = _hand_model(pads=[0, 0, 0, 0], bn_outputs=("b", "rm", "rv"), bn_attributes={"training_mode": 1})
    _assert_skipped(parts.model([tensor_info("x", (1, 2, 5, 5))], [tensor_info("y", None)]), "training mode")


def test_non_constant_bn_params_are_skipped():
    parts = _hand_model(pads=[0, 0, 0, 0])
    parts.initializers = [t for t in parts.initializers if t.name != "b_var"]
    model = parts.model([tensor_info("x", (1, 2, 5, 5)), tensor_info("b_var", (2,))], [tensor_info("y", None)])
    _assert_skipped(model, "not all constants")


def test_misuse_raises_config_error():
    model = _hand_model(pads=[0, 0, 0, 0]).model([tensor_info("x", (1, 2, 5, 5))], [tensor_info("y", None)])
    with pytest.raises(ConfigError, match="mode"):
        fold_bn_conv(model, mode="approximate")
    with pytest.raises(ConfigError, match="check_feeds"):
        fold_bn_conv(model, check_feeds=[_feeds((1, 2, 5, 5))])
