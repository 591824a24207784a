"""The int8 family's options and summary, and the int8 pipeline the ort-int8 target runs."""

import types

import numpy as np
import onnx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from onnx import helper, numpy_helper

from onnx2trt_check.errors import ConfigError
from onnx2trt_check.pytest_plugin import int8 as quant_checks
from onnx2trt_check.pytest_plugin.options import DEST_PREFIX
from onnx2trt_check.quant.pipeline import (
    Int8Settings,
    _amax_summary,
    prepare_for_quantization,
    settings_from,
)
from onnx2trt_check.runtime import run_model

OPTION_DEFAULTS = {
    "calibration_data": None, "calibration_method": None, "calibration_percentile": None, "per_tensor": False, "cle": False,
    "cle_relu6": None, "bias_correction": False, "quant_exclude": [], "calibration_sweep": False,
}


def options(**given_values):
    """A stand-in for the pytest config: read_options only calls getoption, by our prefixed dests."""
    values = {DEST_PREFIX + name: value for name, value in {**OPTION_DEFAULTS, **given_values}.items()}
    return types.SimpleNamespace(getoption=values.__getitem__)


def conv_bn_relu_conv(w1: np.ndarray, w2: np.ndarray, gamma: np.ndarray) -> onnx.ModelProto:
    """Conv(w1) -> BN(gamma, beta 0.1, mean 0, var 1) -> Relu -> Conv(w2), both convs named."""
    c = w1.shape[0]
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in (
        ("w1", w1), ("w2", w2), ("gamma", gamma), ("beta", np.full(c, 0.1)), ("mean", np.zeros(c)), ("var", np.ones(c)))]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["a", "gamma", "beta", "mean", "var"], ["b"], name="bn"),
        helper.make_node("Relu", ["b"], ["r"], name="relu"),
        helper.make_node("Conv", ["r", "w2"], ["y"], name="conv2"),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", 1, [1, 2, 5, 5])], [helper.make_tensor_value_info("y", 1, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_read_options_keeps_the_values_by_dest_name(tmp_path):
    calib = tmp_path / "c.npz"
    np.savez(calib, x=np.zeros((2, 1, 4), np.float32))
    read = quant_checks.read_options(options(calibration_data=str(calib), calibration_method="max", quant_exclude=["fc"], calibration_sweep=True))
    assert read["calibration_data"] == calib and read["calibration_method"] == "max" and read["quant_exclude"] == ["fc"]


@pytest.mark.parametrize(
    "values, message",
    [
        ({"calibration_data": "nowhere.npz"}, "does not exist"),
        ({"calibration_percentile": 100.5}, "outside (0, 100]"),
        ({"quant_exclude": ["[a-"]}, "is not a valid regex"),
        ({"calibration_sweep": True}, "needs calibration data"),
    ],
)
def test_read_options_rejects_misuse(values, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        quant_checks.read_options(options(**values))


def test_settings_from_maps_each_option():
    extra = {"calibration_method": "percentile", "calibration_percentile": 99.9, "per_tensor": True, "cle": True,
             "cle_relu6": "swap_to_relu", "bias_correction": True, "quant_exclude": ["a", "b"]}
    assert settings_from(extra) == Int8Settings(method="percentile", percentile=99.9, per_channel=False, cle=True,
                                                cle_relu6="swap_to_relu", bias_correction=True, exclude=("a", "b"))
    assert settings_from({}) == Int8Settings()
    assert Int8Settings(method="percentile", percentile=99.999, per_channel=False, cle=True, bias_correction=True).label == "percentile-99.999 per-tensor+cle+bc"


def test_sweep_lines_follow_the_sweep_order_whatever_order_results_arrive_in():
    figures = {"engine": "onnxruntime", "outputs": {"y": {"sqnr_db": 30.0, "max_abs": 0.1, "top1": 1.0}}}
    rows = [("m.onnx", f"calibration[{c}]", "passed", figures) for c in ("mse", "max", "entropy", "percentile-99.999", "percentile-99.99")]
    lines = quant_checks.sweep_lines(rows)
    assert lines[0] == "m.onnx"
    assert [line.split()[0] for line in lines[1:]] == [f"calibration[{c}]" for c in ("max", "percentile-99.99", "percentile-99.999", "entropy", "mse")]
    assert "min SQNR 30.0 dB" in lines[1] and "top-1 100.0%" in lines[1]


@given(hnp.arrays(np.float64, st.integers(1, 12), elements=st.floats(1e-3, 1e3)), st.sampled_from([None, 0, 1]))
def test_amax_summary_spans_every_channel(amax, axis):
    values = tuple(amax.tolist()) if axis is not None else float(amax[0])
    summary = _amax_summary(values, axis)
    expected = amax if axis is not None else amax[:1]
    assert summary["channels"] == expected.size
    assert summary["min"] == expected.min() and summary["max"] == expected.max()


finite = st.floats(-2, 2, allow_nan=False, width=32)


@given(
    hnp.arrays(np.float32, (3, 2, 3, 3), elements=finite),
    hnp.arrays(np.float32, (2, 3, 1, 1), elements=finite),
    hnp.arrays(np.float32, 3, elements=st.floats(0.125, 3, width=32)),
)
def test_preparation_without_bias_correction_keeps_the_float_function(w1, w2, gamma):
    model = conv_bn_relu_conv(w1, w2, gamma)
    feeds = [{"x": np.random.default_rng(i).normal(size=(1, 2, 5, 5)).astype(np.float32)} for i in range(3)]
    prepared, steps = prepare_for_quantization(model, feeds, Int8Settings(cle=True))
    assert steps["fold_conv_bn"] == {"folded": 1}
    assert steps["cle"]["pairs"] == 1  # conv1 -> relu -> conv2 was equalized, not skipped
    assert "BatchNormalization" not in {n.op_type for n in prepared.graph.node}
    for before, after in zip(run_model(model, feeds), run_model(prepared, feeds)):
        np.testing.assert_allclose(after["y"], before["y"], rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(before["y"]).max())))
