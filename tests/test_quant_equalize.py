"""Cross-layer equalization: function preserved, ranges balanced, idempotent, ReLU6 guarded,
per-tensor int8 error reduced."""

import numpy as np
import onnx
import onnx.helper as oh
import onnx.numpy_helper as nh
import pytest
from hypothesis import given
from hypothesis import strategies as st

from onnx2trt_check.errors import ConfigError
from onnx2trt_check.quant.equalize import equalize
from onnx2trt_check.runtime import run_model

BATCH, SIZE = 2, 6


def _conv_chain(seed, c_in, layers, *, spread=1.5, between_inits=()):
    """Convs in a row. layers: (c_out, group, kernel, act) with act in Relu/PRelu/LeakyRelu/Clip/
    BatchNormalization/None after each conv but the last. Output channel j of each weight is scaled
    by 10**U(-spread, spread) so that the per-channel ranges differ widely."""
    rng = np.random.default_rng(seed)
    nodes, inits, value, channels = [], list(between_inits), "x", c_in
    for index, (c_out, group, kernel, act) in enumerate(layers):
        spread_scale = 10 ** rng.uniform(-spread, spread, size=(c_out, 1, 1, 1))
        w = (rng.normal(size=(c_out, channels // group, kernel, kernel)) * spread_scale).astype(np.float32)
        b = rng.normal(size=c_out).astype(np.float32)
        inits += [nh.from_array(w, f"w{index}"), nh.from_array(b, f"b{index}")]
        pad = kernel // 2
        nodes.append(oh.make_node("Conv", [value, f"w{index}", f"b{index}"], [f"c{index}"], name=f"conv{index}", group=group, pads=[pad] * 4))
        value, channels = f"c{index}", c_out
        if act is not None and index < len(layers) - 1:
            nodes.append(_activation(act, index, c_out, rng, inits))
            value = f"a{index}"
    graph = oh.make_graph(nodes, "chain", [oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [BATCH, c_in, SIZE, SIZE])],
                          [oh.make_tensor_value_info(value, onnx.TensorProto.FLOAT, None)], inits)
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])


def _activation(act, index, channels, rng, inits):
    inputs, attributes = [f"c{index}"], {}
    if act == "PRelu":
        inits.append(nh.from_array(rng.uniform(0.05, 0.5, size=(channels, 1, 1)).astype(np.float32), f"slope{index}"))
        inputs.append(f"slope{index}")
    elif act == "LeakyRelu":
        attributes["alpha"] = 0.1
    elif act == "Clip":
        inits += [nh.from_array(np.array(0.0, np.float32), f"lo{index}"), nh.from_array(np.array(6.0, np.float32), f"hi{index}")]
        inputs += [f"lo{index}", f"hi{index}"]
    elif act == "BatchNormalization":
        for name, array in (("s", rng.uniform(0.5, 2, channels)), ("o", rng.normal(size=channels)), ("m", rng.normal(size=channels)), ("v", rng.uniform(0.5, 2, channels))):
            inits.append(nh.from_array(array.astype(np.float32), f"bn{name}{index}"))
            inputs.append(f"bn{name}{index}")
    return oh.make_node(act, inputs, [f"a{index}"], name=f"act{index}", **attributes)


def _feeds(seed, c_in, count=2):
    rng = np.random.default_rng(seed + 1)
    return [{"x": rng.normal(size=(BATCH, c_in, SIZE, SIZE)).astype(np.float32)} for _ in range(count)]


def _weights(model):
    return {t.name: nh.to_array(t) for t in model.graph.initializer}


def _outputs(model, feeds):
    return np.concatenate([list(out.values())[0].ravel() for out in run_model(model, feeds)])


def _assert_same_function(original, transformed, feeds, rtol=1e-5):
    """Equal within float32 rounding, relative to the output's magnitude."""
    reference, candidate = _outputs(original, feeds), _outputs(transformed, feeds)
    worst = np.max(np.abs(candidate - reference)) / np.max(np.abs(reference))
    assert worst <= rtol, f"max abs diff is {worst:.2e} of the output's max"


def _input_ranges(w2, group):
    """max |W2| over everything that reads input channel i, by explicit loop (the reference)."""
    c_out, c_per_group = w2.shape[:2]
    ranges = []
    for i in range(c_per_group * group):
        rows = slice((i // c_per_group) * (c_out // group), (i // c_per_group + 1) * (c_out // group))
        ranges.append(np.max(np.abs(w2[rows, i % c_per_group])))
    return np.array(ranges)


activations = st.sampled_from(["Relu", "PRelu", "LeakyRelu", None])


@given(seed=st.integers(0, 2**16), c0=st.integers(1, 4), c1=st.integers(1, 6), c2=st.integers(1, 5), kernel=st.sampled_from([1, 3]), act=activations)
def test_cle_preserves_the_function_of_a_pair(seed, c0, c1, c2, kernel, act):
    model = _conv_chain(seed, c0, [(c1, 1, kernel, act), (c2, 1, kernel, None)])
    before = model.SerializeToString()
    result = equalize(model)
    assert model.SerializeToString() == before, "input model mutated"
    assert result.modified and len(result.report.matches) == 1
    _assert_same_function(model, result.model, _feeds(seed, c0))


@given(seed=st.integers(0, 2**16), c_mid=st.sampled_from([2, 4, 6]), groups=st.sampled_from([(1, 2), (2, 1), (1, "dw"), (2, "dw")]), act=activations)
def test_cle_preserves_grouped_and_depthwise_separable_triples(seed, c_mid, groups, act):
    first_group, mid_group = groups
    mid_group = c_mid if mid_group == "dw" else mid_group
    layers = [(c_mid, first_group, 1, act), (c_mid, mid_group, 3, act), (3, 1, 1, None)]
    model = _conv_chain(seed, 2, layers)
    result = equalize(model)
    assert len(result.report.matches) == 2, result.report
    _assert_same_function(model, result.model, _feeds(seed, 2))


@given(seed=st.integers(0, 2**16), c1=st.sampled_from([2, 4, 6]), group2=st.sampled_from([1, 2, "dw"]))
def test_one_iteration_makes_both_ranges_the_geometric_mean(seed, c1, group2):
    group2 = c1 if group2 == "dw" else group2
    model = _conv_chain(seed, 3, [(c1, 1, 3, "Relu"), (4 * group2 if group2 > 1 else 5, group2, 3, None)])
    before = _weights(model)
    after = _weights(equalize(model, max_iterations=1).model)
    target = np.sqrt(np.max(np.abs(before["w0"]), axis=(1, 2, 3)) * _input_ranges(before["w1"], group2))
    np.testing.assert_allclose(np.max(np.abs(after["w0"]), axis=(1, 2, 3)), target, rtol=1e-5)
    np.testing.assert_allclose(_input_ranges(after["w1"], group2), target, rtol=1e-5)
    # the bias of conv0 follows its output channel: b / s with s = r1 / sqrt(r1 r2)
    scale = np.max(np.abs(before["w0"]), axis=(1, 2, 3)) / target
    np.testing.assert_allclose(after["b0"], before["b0"] / scale, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(after["b1"], before["b1"])


@given(seed=st.integers(0, 2**16), c_mid=st.sampled_from([2, 4]))
def test_cle_is_idempotent(seed, c_mid):
    model = _conv_chain(seed, 2, [(c_mid, 1, 1, "Relu"), (c_mid, c_mid, 3, "Relu"), (3, 1, 1, None)])
    once = equalize(model)
    twice = equalize(once.model)
    assert once.report.figures["cle_converged"]
    for name, array in _weights(once.model).items():
        np.testing.assert_allclose(_weights(twice.model)[name], array, rtol=1e-3, atol=1e-6, err_msg=name)


def _relu6_model():
    # Seed and spread chosen so that channel ranges differ by orders of magnitude (s_i far from 1).
    return _conv_chain(7, 3, [(4, 1, 3, "Clip"), (5, 1, 3, None)], spread=2.0)


def _scaled_by_hand(model):
    """The CLE rescaling of the relu6 model, computed here, with the Clip left in place."""
    weights = _weights(model)
    s = np.sqrt(np.max(np.abs(weights["w0"]), axis=(1, 2, 3)) / np.max(np.abs(weights["w1"]), axis=(0, 2, 3)))
    scaled = onnx.ModelProto()
    scaled.CopyFrom(model)
    new = {"w0": weights["w0"] / s[:, None, None, None], "b0": weights["b0"] / s, "w1": weights["w1"] * s[None, :, None, None]}
    for tensor in scaled.graph.initializer:
        if tensor.name in new:
            tensor.CopyFrom(nh.from_array(new[tensor.name].astype(np.float32), tensor.name))
    return scaled


def _with_relu(model):
    swapped = onnx.ModelProto()
    swapped.CopyFrom(model)
    node = next(n for n in swapped.graph.node if n.op_type == "Clip")
    node.op_type = "Relu"
    del node.input[1:]
    return swapped


def test_relu6_counterexample_scaling_through_clip_changes_the_output():
    model, feeds = _relu6_model(), _feeds(7, 3)
    reference, scaled = _outputs(model, feeds), _outputs(_scaled_by_hand(model), feeds)
    assert np.max(np.abs(scaled - reference)) > 0.1 * np.max(np.abs(reference))
    result = equalize(model)
    assert not result.modified and result.model.SerializeToString() == model.SerializeToString()
    assert [s.reason for s in result.report.skips] == [
        "ReLU6 (Clip 0..6) is not positive-homogeneous: scaling would change the output; pass relu6='swap_to_relu' to replace it by Relu"
    ]


def test_relu6_swap_reports_its_effect_and_then_equalizes():
    model, feeds = _relu6_model(), _feeds(7, 3)
    result = equalize(model, relu6="swap_to_relu", check_feeds=feeds)
    reference, relu_version = _outputs(model, feeds).astype(np.float64), _outputs(_with_relu(model), feeds)
    figures = result.report.figures
    assert figures["relu6_swapped"] == 1 and len(result.report.matches) == 1
    assert figures["relu6_swap_max_abs_diff"] == pytest.approx(np.max(np.abs(relu_version - reference)), rel=1e-6)
    expected_rel = np.linalg.norm(relu_version - reference) / np.linalg.norm(reference)
    assert figures["relu6_swap_rel_l2_error"] == pytest.approx(expected_rel, rel=1e-5)
    _assert_same_function(_with_relu(model), result.model, feeds)


@pytest.mark.parametrize(
    ("act", "reason"),
    [("BatchNormalization", "BatchNormalization between the convs: fold BN first"), ("Clip", "not positive-homogeneous")],
)
def test_unsupported_middle_ops_are_skipped_with_reason(act, reason):
    model = _conv_chain(3, 2, [(4, 1, 1, act), (3, 1, 1, None)])
    result = equalize(model)
    assert not result.modified and len(result.report.skips) == 1
    assert reason in result.report.skips[0].reason


def test_a_value_with_two_consumers_is_skipped():
    model = _conv_chain(3, 2, [(4, 1, 1, "Relu"), (3, 1, 1, None)])
    model.graph.output.append(oh.make_tensor_value_info("a0", onnx.TensorProto.FLOAT, None))
    result = equalize(model)
    assert not result.modified and "graph output" in result.report.skips[0].reason


def _sqnr_db(reference, candidate):
    return 10 * np.log10(np.sum(reference.astype(np.float64) ** 2) / np.sum((candidate - reference).astype(np.float64) ** 2))


def _per_tensor_int8(model):
    """Every conv weight fake-quantized per tensor (symmetric int8, scale = amax / 127), by hand."""
    quantized = onnx.ModelProto()
    quantized.CopyFrom(model)
    for tensor in quantized.graph.initializer:
        if tensor.name.startswith("w"):
            w = nh.to_array(tensor)
            scale = np.float32(np.max(np.abs(w)) / 127)
            tensor.CopyFrom(nh.from_array((np.clip(np.rint(w / scale), -128, 127) * scale).astype(np.float32), tensor.name))
    return quantized


def _planted_spread_model(seed):
    """Conv -> Relu -> Conv where output channel i of conv0 is scaled by d_i = 10**U(-2, 2) and input
    channel i of conv1 by 1 / d_i: every channel matters equally to the output (as after folding a
    BN whose scales differ per channel), but the weight ranges of conv0 span four decades."""
    model = _conv_chain(seed, 3, [(8, 1, 3, "Relu"), (8, 1, 3, None)], spread=0.0)
    d = 10 ** np.random.default_rng(seed + 2).uniform(-2, 2, size=8)
    planted = {"w0": d[:, None, None, None], "b0": d, "w1": 1 / d[None, :, None, None]}
    for tensor in model.graph.initializer:
        if tensor.name in planted:
            tensor.CopyFrom(nh.from_array((nh.to_array(tensor) * planted[tensor.name]).astype(np.float32), tensor.name))
    return model


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_cle_improves_per_tensor_int8_sqnr_on_spread_channel_ranges(seed):
    model = _planted_spread_model(seed)
    feeds = _feeds(seed, 3, count=4)
    equalized = equalize(model).model
    reference = _outputs(model, feeds)
    before = _sqnr_db(reference, _outputs(_per_tensor_int8(model), feeds))
    after = _sqnr_db(reference, _outputs(_per_tensor_int8(equalized), feeds))
    print(f"seed {seed}: per-tensor int8 output SQNR {before:.1f} dB -> {after:.1f} dB after CLE")
    assert after > before + 10


def test_high_bias_absorption_keeps_the_function_and_lowers_activation_ranges():
    model = _conv_chain(5, 3, [(6, 1, 3, "Relu"), (4, 1, 1, None)], spread=0.5)
    for tensor in model.graph.initializer:  # plant large positive biases so some channel never goes below 0
        if tensor.name == "b0":
            tensor.CopyFrom(nh.from_array(np.full(6, 40.0, np.float32), "b0"))
    feeds = _feeds(5, 3, count=3)
    plain, absorbed = equalize(model), equalize(model, absorb_high_bias=True, check_feeds=feeds)
    assert absorbed.report.figures["high_bias_channels_absorbed"] > 0
    _assert_same_function(model, absorbed.model, feeds, rtol=1e-5)
    assert np.all(_weights(absorbed.model)["b0"] <= _weights(plain.model)["b0"])
    assert np.any(_weights(absorbed.model)["b0"] < _weights(plain.model)["b0"] - 1.0)


def test_misuse_raises_config_error():
    model = _conv_chain(1, 2, [(2, 1, 1, "Relu"), (2, 1, 1, None)])
    with pytest.raises(ConfigError, match="relu6"):
        equalize(model, relu6="clip")
    with pytest.raises(ConfigError, match="check_feeds"):
        equalize(model, absorb_high_bias=True)
    with pytest.raises(ConfigError, match="max_iterations"):
        equalize(model, max_iterations=0)


def test_relu6_bounds_from_constant_nodes_are_recognised():
    """PyTorch exports ReLU6 as Clip whose bounds come from Constant nodes, not initializers."""
    rng = np.random.default_rng(0)
    w1 = onnx.numpy_helper.from_array(rng.normal(size=(4, 3, 1, 1)).astype(np.float32), "w1")
    w2 = onnx.numpy_helper.from_array(rng.normal(size=(2, 4, 1, 1)).astype(np.float32), "w2")
    nodes = [
        onnx.helper.make_node("Conv", ["x", "w1"], ["a"], name="conv1"),
        onnx.helper.make_node("Constant", [], ["lo"], value=onnx.numpy_helper.from_array(np.array(0.0, np.float32))),
        onnx.helper.make_node("Constant", [], ["hi"], value=onnx.numpy_helper.from_array(np.array(6.0, np.float32))),
        onnx.helper.make_node("Clip", ["a", "lo", "hi"], ["r"], name="relu6"),
        onnx.helper.make_node("Conv", ["r", "w2"], ["y"], name="conv2"),
    ]
    graph = onnx.helper.make_graph(
        nodes, "g", [onnx.helper.make_tensor_value_info("x", 1, [1, 3, 4, 4])], [onnx.helper.make_tensor_value_info("y", 1, [1, 2, 4, 4])], [w1, w2]
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    result = equalize(model, relu6="skip")
    assert not result.modified
    assert any(s.reason.startswith("ReLU6 (Clip 0..6) is not positive-homogeneous") for s in result.report.skips)
