"""Bias correction: layer by layer in the QDQ model, each layer's mean output error (measured with the
layers before it corrected) is cancelled per channel, and kept only where the held-out error drops;
nothing else changes; the analytic version agrees with the measured expectation."""

import numpy as np
import onnx
import onnx.helper as oh
import onnx.numpy_helper as nh
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onnx2trt_check.errors import ConfigError
from onnx2trt_check.quant.bias_correction import (
    analytic_bias_correction,
    correct_bias,
    per_channel_int8,
    relu_normal_mean,
)
from onnx2trt_check.quant.objective import output_sqnr_db
from onnx2trt_check.quant.quantize import quantize_model
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


def _qdq(model, feeds, per_channel=True):
    return quantize_model(model, feeds, method="max", per_channel=per_channel).model


def _exposed(model, names, feeds):
    """Each named tensor over the feeds, from a copy of `model` that outputs it (written apart from
    the module: plain protobuf edits)."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.extend(oh.make_tensor_value_info(n, FLOAT, None) for n in names if n not in {o.name for o in probe.graph.output})
    return [{n: out[n] for n in names} for out in run_model(probe, feeds)]


LAYER_OUTPUTS = {"conv0": "c0", "conv1": "c1", "fc": "y"}


def _mean_errors(float_model, qdq_model, feeds):
    """Per layer, the mean over feeds, batch and positions of (QDQ output - float output) per
    channel, and the largest |float output| (the scale of float32 rounding)."""
    names = list(LAYER_OUTPUTS.values())
    floats, quantized = _exposed(float_model, names, feeds), _exposed(qdq_model, names, feeds)
    found = {}
    for layer, name in LAYER_OUTPUTS.items():
        diffs = [np.moveaxis(q[name].astype(np.float64) - f[name], 1, 0).reshape(q[name].shape[1], -1) for f, q in zip(floats, quantized)]
        found[layer] = (np.concatenate(diffs, axis=1).mean(axis=1), max(float(np.abs(f[name]).max()) for f in floats))
    return found


@settings(deadline=None, max_examples=25)
@given(seed=st.integers(0, 2**16), group=st.sampled_from([1, 2, 4]), conv_bias=st.booleans(), trans_b=st.sampled_from([0, 1]), beta=st.sampled_from([1.0, 0.25]), gemm_bias=st.booleans(), per_channel=st.booleans())
def test_one_feed_every_layer_keeps_a_zero_mean_output_error_measured_after_the_layers_before_it(seed, group, conv_bias, trans_b, beta, gemm_bias, per_channel):
    model = _network(seed, group=group, conv_bias=conv_bias, trans_b=trans_b, beta=beta, gemm_bias=gemm_bias)
    feeds = _feeds(seed, count=1)
    qdq = _qdq(model, feeds, per_channel)
    before = (model.SerializeToString(), qdq.SerializeToString())
    result = correct_bias(model, qdq, feeds, guard=False)  # the layer checks alone
    assert (model.SerializeToString(), qdq.SerializeToString()) == before, "input model mutated"
    assert [m.nodes for m in result.report.matches] == [("conv0",), ("conv1",), ("fc",)]
    # Sequential: a layer's error is measured with every layer before it corrected, so in the final
    # model each one's mean error is zero (later layers cannot change an earlier layer's output).
    for layer, (mean_error, scale) in _mean_errors(model, result.model, feeds).items():
        assert np.max(np.abs(mean_error)) <= 1e-5 * scale, (layer, mean_error, scale)
    unchanged = {k: v for k, v in _initializers(qdq).items() if not k.startswith("b")}
    for name, array in unchanged.items():
        np.testing.assert_array_equal(_initializers(result.model)[name], array, err_msg=name)


def test_uncorrected_quantization_has_a_mean_error_the_test_can_see():
    # Guards the test above against passing vacuously: without correction the mean error is visible.
    model, feeds = _network(3), _feeds(3, count=1)
    errors = _mean_errors(model, _qdq(model, feeds), feeds)
    mean_error, scale = errors["conv1"]
    assert np.max(np.abs(mean_error)) > 1e-4 * scale


def _held_out_error(float_model, qdq_model, feeds, layer):
    name = LAYER_OUTPUTS[layer]
    floats, quantized = _exposed(float_model, [name], feeds), _exposed(qdq_model, [name], feeds)
    return sum(float(np.sum((q[name].astype(np.float64) - f[name]) ** 2)) for f, q in zip(floats, quantized))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_correction_is_kept_only_where_it_lowers_the_held_out_error(seed):
    model = _network(seed)
    feeds = _feeds(seed, count=8)
    held = [feeds[3], feeds[7]]  # every 4th feed is held out
    qdq = _qdq(model, feeds)
    result = correct_bias(model, qdq, feeds, guard=False)  # the layer checks alone
    assert result.report.figures["held_out_feeds"] == 2
    for layer in LAYER_OUTPUTS:
        kept = any(m.nodes == (layer,) for m in result.report.matches)
        skipped = [s.reason for s in result.report.skips if s.nodes == (layer,)]
        assert kept != bool(skipped)
        if skipped:
            assert "would not lower the output error on the held-out feeds" in skipped[0]
    # Layer by layer, each kept correction lowered that layer's held-out error given the layers
    # before it: so the first layer's held-out error never rises.
    assert _held_out_error(model, result.model, held, "conv0") <= _held_out_error(model, qdq, held, "conv0")


def test_a_correction_that_the_held_out_feeds_contradict_is_skipped():
    model = _network(4)
    rng = np.random.default_rng(9)
    base = rng.normal(size=(2, 3, 4, 4)).astype(np.float32)
    # Fitting feeds and held-out feeds are each other's negatives: conv0's mean error flips sign.
    feeds = [{"x": base if i % 4 != 3 else -base} for i in range(8)]
    result = correct_bias(model, _qdq(model, feeds), feeds)
    reasons = {s.nodes: s.reason for s in result.report.skips}
    assert ("conv0",) in reasons and "MSE" in reasons[("conv0",)]


def _cancelling_paths(seed):
    """y = Conv(x, W) + b - MatMul(x^T, W^T)^T: both paths round W and x alike (per-channel scales
    from the same rows), so their weight errors cancel in y. Correcting the Conv alone lowers its own
    output error and breaks the cancellation."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(4, 4)).astype(np.float32)
    model = onnx.parser.parse_model("""<ir_version: 8, opset_import: ["": 17]>
    g (float[1, 4, 6, 6] x) => (float[1, 4, 6, 6] y) {
        a = Conv(x, wa, ba)
        xt = Transpose <perm = [0, 2, 3, 1]> (x)
        m = MatMul(xt, wb)
        b = Transpose <perm = [0, 3, 1, 2]> (m)
        y = Sub(a, b)
    }""")
    model.graph.initializer.extend([nh.from_array(w.reshape(4, 4, 1, 1), "wa"), nh.from_array(w.T.copy(), "wb"),
                                    nh.from_array(rng.normal(size=4).astype(np.float32), "ba")])
    feeds = [{"x": (rng.normal(size=(1, 4, 6, 6)) + 1.5).astype(np.float32)} for _ in range(24)]
    return model, feeds


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_corrections_that_lower_the_held_out_output_sqnr_together_are_all_dropped(seed):
    model, feeds = _cancelling_paths(seed)
    qdq = quantize_model(model, feeds, method="max").model
    result = correct_bias(model, qdq, feeds)
    held = feeds[3::4]
    reference = run_model(model, held)
    assert output_sqnr_db(reference, run_model(result.model, held)) >= output_sqnr_db(reference, run_model(qdq, held))
    reasons = {s.nodes: s.reason for s in result.report.skips}
    assert not result.modified and not result.report.matches and "dropped" in reasons[("Conv(a)",)]
    figures = result.report.figures["output_sqnr_db"]
    assert figures["with"] < figures["without"] and result.report.figures["corrected"] == 0


@pytest.mark.parametrize("seed", [0, 3])
def test_kept_corrections_do_not_lower_the_held_out_output_sqnr(seed):
    model, feeds = _network(seed), _feeds(seed, count=12)
    qdq = _qdq(model, feeds)
    result = correct_bias(model, qdq, feeds)
    held = feeds[3::4]
    reference = run_model(model, held)
    assert result.modified and output_sqnr_db(reference, run_model(result.model, held)) >= output_sqnr_db(reference, run_model(qdq, held))


def test_a_layer_left_in_float_is_skipped_with_the_reason():
    model, feeds = _network(5), _feeds(5, count=1)
    qdq = quantize_model(model, feeds, method="max", exclude=["conv1"]).model
    result = correct_bias(model, qdq, feeds, guard=False)  # the layer checks alone
    assert [m.nodes for m in result.report.matches] == [("conv0",), ("fc",)]
    assert any(s.nodes == ("conv1",) and "not quantized" in s.reason for s in result.report.skips)


def test_a_missing_bias_is_added():
    model, feeds = _network(6, conv_bias=False), _feeds(6, count=1)
    result = correct_bias(model, _qdq(model, feeds), feeds)
    conv1 = next(n for n in result.model.graph.node if n.name == "conv1")
    assert len(conv1.input) == 3 and _initializers(result.model)[conv1.input[2]].shape == (4,)


def test_misuse_raises_config_error():
    model = _network(1)
    with pytest.raises(ConfigError, match="calibration_feeds"):
        correct_bias(model, _qdq(model, _feeds(1)), [])


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
    # The empirical expectation, measured: the conv's input r = Relu(BN(x)) from the model, then
    # the conv with weight W_q - W and no bias over it, averaged per output channel.
    weight = _initializers(model)["w"]
    delta = per_channel_int8(weight, 0) - weight
    inputs = [out["r"] for out in _exposed(model, ["r"], feeds)]
    errors = [_layer_output(model, "conv", x, delta, None) for x in inputs]
    empirical = -np.concatenate([np.moveaxis(e, 1, 0).reshape(4, -1) for e in errors], axis=1).mean(axis=1)
    assert np.max(np.abs(empirical)) > 0
    # 32000 samples per channel: the empirical mean is within a few percent of the expectation.
    np.testing.assert_allclose(analytic, empirical, rtol=0.05, atol=0.05 * np.max(np.abs(empirical)))


def test_analytic_correction_skips_layers_without_bn_statistics():
    result = analytic_bias_correction(_network(2))
    assert not result.modified and len(result.report.skips) == 3
    assert "BatchNormalization" in result.report.skips[0].reason
