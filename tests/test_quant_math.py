"""Property tests of the int8 QDQ arithmetic, with ONNX Runtime's QuantizeLinear/DequantizeLinear
as the oracle for rounding and saturation."""

import numpy as np
import onnx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from onnx2trt_check.errors import ConfigError
from onnx2trt_check.quant.qdq_math import (
    dequantize,
    fake_quantize,
    per_channel_amax,
    quantize,
    symmetric_scale,
)
from onnx2trt_check.runtime import create_session

ALL_INT8 = np.arange(-128, 128, dtype=np.int8)


def _f32(value: float) -> float:
    return float(np.float32(value))


scales = st.floats(_f32(1e-6), _f32(1e3), width=32)
finite32 = st.floats(_f32(-1e4), _f32(1e4), width=32)


def _ort_session(op: str, *, per_channel: bool):
    """A one-node QuantizeLinear/DequantizeLinear model with x and scale as runtime inputs."""
    x_type = "float" if op == "QuantizeLinear" else "int8"
    scale_shape = "[C]" if per_channel else "[]"
    zero = "{0, 0, 0}" if per_channel else "{0}"
    zp_shape = "[3]" if per_channel else ""
    axis = " <axis = 1>" if per_channel else ""
    text = f"""<ir_version: 8, opset_import: ["": 19]>
    g ({x_type}[N, C] x, float{scale_shape} s) => (y) <int8{zp_shape} zp = {zero}> {{ y = {op}{axis}(x, s, zp) }}"""
    return create_session(onnx.parser.parse_model(text), optimized=False)


@pytest.fixture(scope="module")
def ort_q():
    return _ort_session("QuantizeLinear", per_channel=False)


@pytest.fixture(scope="module")
def ort_q_axis():
    return _ort_session("QuantizeLinear", per_channel=True)


@pytest.fixture(scope="module")
def ort_dq_axis():
    return _ort_session("DequantizeLinear", per_channel=True)


@given(scale=scales)
def test_quantize_of_dequantize_is_identity_for_every_int8(scale):
    q = ALL_INT8
    assert np.array_equal(quantize(dequantize(q, scale), scale), q)


@given(scale=hnp.arrays(np.float32, 3, elements=scales))
def test_quantize_of_dequantize_is_identity_per_channel(scale):
    q = np.broadcast_to(ALL_INT8[:, None], (256, 3))
    assert np.array_equal(quantize(dequantize(q, scale, axis=1), scale, axis=1), q)


@given(scale=scales, fractions=hnp.arrays(np.float64, 64, elements=st.floats(-128.0, 127.0)))
def test_qdq_error_is_at_most_half_a_step_inside_the_range(scale, fractions):
    x = (fractions * scale).astype(np.float32)
    error = np.abs(fake_quantize(x, scale).astype(np.float64) - x)
    # float32 arithmetic (x / scale, q * scale) adds a few ulps on top of the half step.
    assert np.all(error <= scale / 2 * (1 + 1e-5) + np.abs(x) * 1e-6)


@given(scale=scales, excess=st.floats(1.0, 1e3))
def test_outside_the_range_saturates(scale, excess):
    x = np.array([128.0 * scale * excess + scale, -129.0 * scale * excess - scale], np.float32)
    assert quantize(x, scale).tolist() == [127, -128]


@given(k=st.integers(-140, 140), exponent=st.integers(-12, 6))
def test_ties_round_half_to_even_like_onnxruntime(ort_q, k, exponent):
    scale = np.float32(2.0**exponent)  # a power of two: (k + 0.5) * scale is an exact tie
    x = np.array([[(k + 0.5) * scale, -(k + 0.5) * scale]], np.float32)
    even = [k if k % 2 == 0 else k + 1, -(k if k % 2 == 0 else k + 1)]
    expected = np.clip(even, -128, 127)
    ours = quantize(x, scale)
    assert ours.tolist()[0] == expected.tolist()
    assert np.array_equal(ours, ort_q.run(None, {"x": x, "s": np.array(scale)})[0])


@given(x=hnp.arrays(np.float32, (4, 3), elements=finite32), scale=scales)
def test_quantize_matches_onnxruntime_per_tensor(ort_q, x, scale):
    expected = ort_q.run(None, {"x": x, "s": np.array(scale, np.float32)})[0]
    assert np.array_equal(quantize(x, scale), expected)


@given(x=hnp.arrays(np.float32, (4, 3), elements=finite32), scale=hnp.arrays(np.float32, 3, elements=scales))
def test_quantize_and_dequantize_match_onnxruntime_per_channel(ort_q_axis, ort_dq_axis, x, scale):
    q = quantize(x, scale, axis=1)
    assert np.array_equal(q, ort_q_axis.run(None, {"x": x, "s": scale})[0])
    assert np.array_equal(dequantize(q, scale, axis=1), ort_dq_axis.run(None, {"x": q, "s": scale})[0])


@pytest.fixture(scope="module")
def ort_q_zero_point():
    text = """<ir_version: 8, opset_import: ["": 19]>
    g (float[N, C] x, float[C] s, int8[C] zp) => (y) { y = QuantizeLinear<axis = 1>(x, s, zp) }"""
    return create_session(onnx.parser.parse_model(text), optimized=False)


@given(x=hnp.arrays(np.float32, (4, 3), elements=st.floats(_f32(-3e38), _f32(3e38), width=32)),
       scale=hnp.arrays(np.float32, 3, elements=scales), zero_point=hnp.arrays(np.int8, 3))
def test_quantize_with_a_zero_point_matches_onnxruntime(ort_q_zero_point, x, scale, zero_point):
    # quantize works in float32 in place (no float64 copy of a large weight): the zero point is
    # added in float32, which must still round and saturate like ORT over the whole float range.
    expected = ort_q_zero_point.run(None, {"x": x, "s": scale, "zp": zero_point})[0]
    assert np.array_equal(quantize(x, scale, zero_point, axis=1), expected)


@given(amax=st.floats(_f32(1e-30), _f32(1e30), width=32))
def test_symmetric_scale_maps_amax_to_127(amax):
    scale = symmetric_scale(amax)
    assert np.isclose(scale, amax / 127, rtol=1e-6)
    assert quantize([amax, -amax], scale).tolist() == [127, -127]


def test_symmetric_scale_guards_zero_and_rejects_negative():
    assert symmetric_scale(0.0) == 1.0
    assert symmetric_scale([0.0, 127.0]).tolist() == [1.0, 1.0]
    assert quantize(np.zeros(3), symmetric_scale(0.0)).tolist() == [0, 0, 0]
    with pytest.raises(ConfigError, match="amax"):
        symmetric_scale(-1.0)
    with pytest.raises(ConfigError, match="amax"):
        symmetric_scale(np.nan)


@given(
    w=hnp.arrays(np.float32, hnp.array_shapes(min_dims=2, max_dims=4, max_side=4), elements=finite32),
    data=st.data(),
)
def test_per_channel_amax_maps_each_channel_amax_to_127(w, data):
    axis = data.draw(st.integers(-w.ndim, w.ndim - 1))
    amax = per_channel_amax(w, axis)
    channels = [np.take(w, c, axis=axis) for c in range(w.shape[axis])]
    assert amax.tolist() == [float(np.max(np.abs(ch))) for ch in channels]
    q = quantize(w, symmetric_scale(amax), axis=axis)
    for c, channel_amax in enumerate(amax):
        # A scale below float32's smallest normal is replaced by 1.0: the channel quantizes to 0.
        expected = 127 if channel_amax / np.float32(127) >= np.finfo(np.float32).tiny else 0
        assert np.max(np.abs(np.take(q, c, axis=axis).astype(int))) == expected


def test_misuse_names_the_problem():
    with pytest.raises(ConfigError, match="per-channel"):
        quantize(np.ones((2, 3)), [1.0, 2.0, 3.0])
    with pytest.raises(ConfigError, match="expected"):
        quantize(np.ones((2, 3)), [1.0, 2.0], axis=1)
    with pytest.raises(ConfigError, match="out of range"):
        quantize(np.ones((2, 3)), [1.0, 2.0], axis=2)
