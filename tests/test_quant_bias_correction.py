"""Bias correction: the mean output error of quantized weights is cancelled per channel on the
calibration data; nothing else changes; the analytic version agrees with the empirical one."""

import numpy as np
import onnx
import onnx.helper as oh
import onnx.numpy_helper as nh
import pytest
from hypothesis import given
from hypothesis import strategies as st

from onnx2trt_check.errors import ConfigError
from onnx2trt_check.quant.bias_correction import (
    analytic_bias_correction,
    correct_bias,
    per_tensor_int8,
    relu_normal_mean,
)
from onnx2trt_check.runtime import run_model

FLOAT = onnx.TensorProto.FLOAT


def _network(seed, *, c_in=3, c_mid=4, group=1, conv_bias=True, trans_b=1, beta=1.0, gemm_bias=True):
    """x -> Conv -> Relu -> Conv(group) -> Relu -> Flatten -> Gemm, 4x4 images."""
    rng = np.random.default_rng(seed)
    w0 = rng.normal(size=(c_mid, c_in, 3, 3)) * 10 ** rng.uniform(-1, 1, size=(c_mid, 1, 1, 1))
    w1 = rng.normal(size=(c_mid, c_mid // group, 3, 3))
    n_out, k = 5, c_mid * 16
    w2 = rng.normal(size=(n_out, k) if trans_b else (k, n_out)) / 4
    arrays = {"w0": w0, "b0": rng.normal(size=c_mid), "w1": w1, "b1": rng.normal(size=c_mid), "w2": w2, "b2": rng.normal(size=n_out)}
    inits = [nh.from_array(a.astype(np.float32), name) for name, a in arrays.items() if conv_bias or name != "b1"]
    gemm_inputs = ["flat", "w2", "b2"] if gemm_bias else ["flat", "w2"]
    if not gemm_bias:
        inits = [t for t in inits if t.name != "b2"]
    nodes = [
        oh.make_node("Conv", ["x", "w0", "b0"], ["c0"], name="conv0", pads=[1] * 4),
        oh.make_node("Relu", ["c0"], ["r0"]),
        oh.make_node("Conv", ["r0", "w1", "b1"] if conv_bias else ["r0", "w1"], ["c1"], name="conv1", pads=[1] * 4, group=group),
        oh.make_node("Relu", ["c1"], ["r1"]),
        oh.make_node("Flatten", ["r1"], ["flat"]),
        oh.make_node("Gemm", gemm_inputs, ["y"], name="fc", transB=trans_b, beta=beta, alpha=0.5),
    ]
    graph = oh.make_graph(nodes, "net", [oh.make_tensor_value_info("x", FLOAT, [2, c_in, 4, 4])], [oh.make_tensor_value_info("y", FLOAT, None)], inits)
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])


def _feeds(seed, c_in=3, count=3):
    rng = np.random.default_rng(seed + 1)
    return [{"x": rng.normal(size=(2, c_in, 4, 4)).astype(np.float32)} for _ in range(count)]


def _initializers(model):
    return {t.name: nh.to_array(t) for t in model.graph.initializer}


def _ref_per_channel(w, axis):
    """Symmetric per-channel int8, written independently: scale = amax / 127, round half even."""
    amax = np.max(np.abs(np.moveaxis(w, axis, 0)).reshape(w.shape[axis], -1), axis=1)
    scale = np.where(amax > 0, amax / 127, 1).astype(np.float32)
    shape = [1] * w.ndim
    shape[axis] = -1
    return (np.clip(np.rint(w / scale.reshape(shape)), -128, 127) * scale.reshape(shape)).astype(np.float32)


def _ref_per_tensor(w, axis):
    scale = np.float32(np.max(np.abs(w)) / 127)
    return (np.clip(np.rint(w / scale), -128, 127) * scale).astype(np.float32)


def _layer_inputs(model, feeds):
    """Each layer's float input (by running the original model with the values exposed)."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for name in ("x", "r0", "flat"):
        if name != "x":
            probe.graph.output.append(oh.make_tensor_value_info(name, FLOAT, None))
    outputs = run_model(probe, feeds)
    return {"conv0": [f["x"] for f in feeds], "conv1": [o["r0"] for o in outputs], "fc": [o["flat"] for o in outputs]}


def _layer_output(model, node_name, x, weight, bias):
    """One node of `model` run alone by ONNX Runtime, with the given weight and bias."""
    node = onnx.NodeProto()
    node.CopyFrom(next(n for n in model.graph.node if n.name == node_name))
    del node.input[:]
    node.input.extend(["x", "w"] + (["b"] if bias is not None else []))
    node.output[:] = ["y"]
    inits = [nh.from_array(weight, "w")] + ([nh.from_array(bias, "b")] if bias is not None else [])
    graph = oh.make_graph([node], "one", [oh.make_tensor_value_info("x", FLOAT, x.shape)], [oh.make_tensor_value_info("y", FLOAT, None)], inits)
    return run_model(oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)]), [{"x": x}])[0]["y"]


def _bias_name(model, node_name):
    node = next(n for n in model.graph.node if n.name == node_name)
    return node.input[2] if len(node.input) > 2 else None


def _mean_error_per_channel(original, corrected, node_name, inputs, quantizer, axis):
    """mean over data of (layer with quantized weight and corrected bias) - (float layer), per
    channel, and the float output's max |y| (the scale of float32 rounding)."""
    weight = _initializers(original)["w" + node_name[-1] if node_name != "fc" else "w2"]
    old_bias, new_bias = (_initializers(m).get(_bias_name(m, node_name)) for m in (original, corrected))
    floats = [_layer_output(original, node_name, x, weight, old_bias) for x in inputs]
    diffs = [_layer_output(corrected, node_name, x, quantizer(weight, axis), new_bias) - y for x, y in zip(inputs, floats)]
    per_channel = np.concatenate([np.moveaxis(d, 1, 0).reshape(d.shape[1], -1) for d in diffs], axis=1).astype(np.float64)
    return per_channel.mean(axis=1), float(np.max(np.abs(floats)))


@given(seed=st.integers(0, 2**16), group=st.sampled_from([1, 2, 4]), conv_bias=st.booleans(), trans_b=st.sampled_from([0, 1]), beta=st.sampled_from([1.0, 0.25]), gemm_bias=st.booleans())
def test_corrected_layers_have_zero_mean_output_error_per_channel(seed, group, conv_bias, trans_b, beta, gemm_bias):
    model = _network(seed, group=group, conv_bias=conv_bias, trans_b=trans_b, beta=beta, gemm_bias=gemm_bias)
    before = model.SerializeToString()
    feeds = _feeds(seed)
    result = correct_bias(model, feeds)
    assert model.SerializeToString() == before, "input model mutated"
    assert len(result.report.matches) == 3
    inputs = _layer_inputs(model, feeds)
    for name, axis in (("conv0", 0), ("conv1", 0), ("fc", 0 if trans_b else 1)):
        mean_error, scale = _mean_error_per_channel(model, result.model, name, inputs[name], _ref_per_channel, axis)
        assert np.max(np.abs(mean_error)) <= 1e-5 * scale, (name, mean_error, scale)
    for weight in ("w0", "w1", "w2"):
        np.testing.assert_array_equal(_initializers(result.model)[weight], _initializers(model)[weight])


def test_uncorrected_quantization_has_a_mean_error_the_test_can_see():
    # Guards the test above against passing vacuously: without correction the mean error is visible.
    model, feeds = _network(3), _feeds(3)
    inputs = _layer_inputs(model, feeds)
    mean_error, scale = _mean_error_per_channel(model, model, "conv1", inputs["conv1"], _ref_per_channel, 0)
    print(f"uncorrected max |mean error| {np.max(np.abs(mean_error)):.2e}, output scale {scale:.2e}")
    assert np.max(np.abs(mean_error)) > 1e-4 * scale


def test_only_the_named_nodes_change_and_per_tensor_quantizer_is_used():
    model, feeds = _network(5), _feeds(5)
    result = correct_bias(model, feeds, nodes=["conv1"], weight_quantizer=per_tensor_int8)
    before, after = _initializers(model), _initializers(result.model)
    assert [m.nodes for m in result.report.matches] == [("conv1",)]
    for name in before:
        if name != "b1":
            np.testing.assert_array_equal(after[name], before[name], err_msg=name)
    mean_error, scale = _mean_error_per_channel(model, result.model, "conv1", _layer_inputs(model, feeds)["conv1"], _ref_per_tensor, 0)
    assert np.max(np.abs(mean_error)) <= 1e-5 * scale


def test_a_missing_bias_is_added():
    model, feeds = _network(6, conv_bias=False), _feeds(6)
    result = correct_bias(model, feeds, nodes=["conv1"])
    conv1 = next(n for n in result.model.graph.node if n.name == "conv1")
    assert len(conv1.input) == 3 and _initializers(result.model)[conv1.input[2]].shape == (4,)


def test_misuse_raises_config_error():
    model = _network(1)
    with pytest.raises(ConfigError, match="calibration_feeds"):
        correct_bias(model, [])
    with pytest.raises(ConfigError, match="conv9"):
        correct_bias(model, _feeds(1), nodes=["conv9"])


@given(mean=st.floats(-3, 3), std=st.floats(0.05, 3))
def test_relu_normal_mean_matches_monte_carlo(mean, std):
    samples = np.random.default_rng(0).normal(mean, std, size=400_000)
    clipped = np.maximum(samples, 0)
    # 5 standard errors of the sample mean. max(X, 0) is 1-Lipschitz, so its variance is at most
    # std^2: a bound that holds where the sample's own spread is 0 (no sample above 0 at mean -3,
    # std 0.6) and where numerical integration misses a narrow peak (mean 2.66, std 0.05).
    assert relu_normal_mean(mean, std) == pytest.approx(clipped.mean(), abs=5 * std / np.sqrt(samples.size))


def _bn_relu_conv(seed, group, channels=4):
    """x -> BatchNormalization(mean 0, var 1 - eps: output exactly gamma*x + beta) -> Relu -> 1x1 Conv."""
    rng = np.random.default_rng(seed)
    arrays = {
        "gamma": rng.uniform(0.5, 2, channels) * rng.choice([-1, 1], channels),
        "beta": rng.normal(size=channels),
        "mean": np.zeros(channels),
        "var": np.full(channels, 1 - 1e-5),
        "w": rng.normal(size=(4, channels // group, 1, 1)) * 10 ** rng.uniform(-1, 1, size=(4, 1, 1, 1)),
        "b": rng.normal(size=4),
    }
    nodes = [
        oh.make_node("BatchNormalization", ["x", "gamma", "beta", "mean", "var"], ["n"], epsilon=1e-5),
        oh.make_node("Relu", ["n"], ["r"]),
        oh.make_node("Conv", ["r", "w", "b"], ["y"], name="conv", group=group),
    ]
    inits = [nh.from_array(a.astype(np.float32), k) for k, a in arrays.items()]
    graph = oh.make_graph(nodes, "bn", [oh.make_tensor_value_info("x", FLOAT, [500, channels, 4, 4])], [oh.make_tensor_value_info("y", FLOAT, None)], inits)
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])


@pytest.mark.parametrize(("seed", "group"), [(0, 1), (1, 2)])
def test_analytic_correction_agrees_with_the_empirical_one_on_normal_inputs(seed, group):
    model = _bn_relu_conv(seed, group)
    rng = np.random.default_rng(seed + 10)
    feeds = [{"x": rng.normal(size=(500, 4, 4, 4)).astype(np.float32)} for _ in range(4)]
    original = _initializers(model)["b"]
    analytic = _initializers(analytic_bias_correction(model).model)["b"] - original
    empirical = _initializers(correct_bias(model, feeds).model)["b"] - original
    assert np.max(np.abs(empirical)) > 0
    # 32000 samples per channel: the empirical mean is within a few percent of the expectation.
    np.testing.assert_allclose(analytic, empirical, rtol=0.05, atol=0.05 * np.max(np.abs(empirical)))


def test_analytic_correction_skips_layers_without_bn_statistics():
    result = analytic_bias_correction(_network(2))
    assert not result.modified and len(result.report.skips) == 3
    assert "BatchNormalization" in result.report.skips[0].reason
