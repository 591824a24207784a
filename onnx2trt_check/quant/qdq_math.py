"""The int8 quantization arithmetic of ONNX QuantizeLinear / DequantizeLinear, as TensorRT uses it.

TensorRT's explicit quantization is symmetric: int8 in [-128, 127], zero point 0, scale = amax / 127.
Every function here computes in float32, as QuantizeLinear with a float32 scale does, so the results
match ONNX Runtime bit for bit (rounding is half to even, `np.rint`, as the ONNX spec requires).

`scale` (and `zero_point`) is a scalar for per-tensor quantization, or a 1-D array with one entry per
slice along `axis` for per-channel quantization (DequantizeLinear's `axis` attribute).
"""

from __future__ import annotations

import numpy as np

from onnx2trt_check.errors import ConfigError

INT8_MIN = -128
INT8_MAX = 127
# Symmetric quantization maps amax to +127, not -128, so that +amax and -amax are both exact.
SYMMETRIC_LEVELS = 127
# The scale of an all-zero tensor: any positive scale quantizes zeros to 0; 1.0 is what
# onnxruntime.quantization uses for a degenerate range and keeps 1/scale finite.
ZERO_RANGE_SCALE = 1.0


def _along_axis(values, ndim: int, axis: int | None, what: str, length: int | None) -> np.ndarray:
    """`values` shaped to broadcast against an ndim-array along `axis` (unchanged when per-tensor)."""
    values = np.asarray(values)
    if axis is None:
        if values.size != 1:
            raise ConfigError(f"{what} has {values.size} entries but axis is None; pass axis= for per-channel")
        return values.reshape(())
    if values.ndim > 1 or values.size not in (1, length):
        raise ConfigError(f"{what} has shape {values.shape}, expected ({length},) for axis {axis}; pass one value per channel")
    shape = [1] * ndim
    shape[axis] = -1
    return values.reshape(shape)


def _normalized_axis(axis: int | None, ndim: int) -> int | None:
    if axis is None:
        return None
    if not -ndim <= axis < ndim:
        raise ConfigError(f"axis {axis} is out of range for a {ndim}-d tensor; pass -{ndim} <= axis < {ndim}")
    return axis % ndim


def quantize(x, scale, zero_point=0, *, axis: int | None = None) -> np.ndarray:
    """QuantizeLinear to int8: saturate(round_half_even(x / scale) + zero_point) into [-128, 127]."""
    x = np.asarray(x, dtype=np.float32)
    axis = _normalized_axis(axis, x.ndim)
    length = x.shape[axis] if axis is not None else None
    scale = _along_axis(np.asarray(scale, dtype=np.float32), x.ndim, axis, "scale", length)
    zero_point = _along_axis(np.asarray(zero_point, dtype=np.int32), x.ndim, axis, "zero_point", length)
    # One float32 working array, edited in place: a 2 GB weight must not cost five of it in
    # temporaries (float32 + int32 promotes to float64). Adding the zero point in float32 is exact
    # wherever the clip keeps the value (|x| < 2**24), so the result is the same.
    with np.errstate(over="ignore", invalid="ignore"):
        rounded = np.asarray(x / scale)
        np.rint(rounded, out=rounded)
        if np.any(zero_point):
            rounded += zero_point.astype(np.float32)
    np.clip(rounded, INT8_MIN, INT8_MAX, out=rounded)
    return rounded.astype(np.int8)


def dequantize(q, scale, zero_point=0, *, axis: int | None = None) -> np.ndarray:
    """DequantizeLinear: (q - zero_point) * scale, in float32."""
    q = np.asarray(q)
    axis = _normalized_axis(axis, q.ndim)
    length = q.shape[axis] if axis is not None else None
    scale = _along_axis(np.asarray(scale, dtype=np.float32), q.ndim, axis, "scale", length)
    zero_point = _along_axis(np.asarray(zero_point, dtype=np.int32), q.ndim, axis, "zero_point", length)
    return ((q.astype(np.int32) - zero_point).astype(np.float32) * scale).astype(np.float32)


def fake_quantize(x, scale, *, axis: int | None = None) -> np.ndarray:
    """Symmetric quantize-then-dequantize (zero point 0): what a Q->DQ pair computes."""
    return dequantize(quantize(x, scale, axis=axis), scale, axis=axis)


def symmetric_scale(amax) -> np.ndarray | np.float32:
    """scale = amax / 127 (scalar or per channel). A range whose scale would be 0 or subnormal
    (amax < 127 * float32 tiny, ~1.5e-36: an all-zero tensor or channel) gets scale 1.0, as in
    onnxruntime.quantization: x / 0 is undefined, and a subnormal scale has too few bits to map
    amax to 127. Such values quantize to 0."""
    amax = np.asarray(amax, dtype=np.float32)
    if not np.all(np.isfinite(amax)) or np.any(amax < 0):
        raise ConfigError(f"amax must be finite and >= 0, got {amax.ravel()[:4]}; check the calibration data for NaN/Inf")
    scale = amax / np.float32(SYMMETRIC_LEVELS)
    scale = np.where(scale >= np.finfo(np.float32).tiny, scale, np.float32(ZERO_RANGE_SCALE)).astype(np.float32)
    return scale[()] if scale.ndim == 0 else scale


def per_channel_amax(w, axis: int) -> np.ndarray:
    """max |w| over every axis but `axis`: one amax per output (or input) channel, float32."""
    w = np.asarray(w, dtype=np.float32)
    axis = _normalized_axis(axis, w.ndim)
    reduce_axes = tuple(a for a in range(w.ndim) if a != axis)
    return np.max(np.abs(w), axis=reduce_axes).astype(np.float32)


def per_tensor_amax(x) -> np.float32:
    """max |x| over the whole tensor, float32 (0 for an empty tensor)."""
    x = np.asarray(x, dtype=np.float32)
    return np.float32(np.max(np.abs(x))) if x.size else np.float32(0.0)
