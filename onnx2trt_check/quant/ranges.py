"""The activation range methods: the amax of one tensor from its calibration statistics.

* `amax_max`: max|x|.
* `amax_percentile`: the given percentile of |x|.
* `amax_entropy`: TensorRT's KL-divergence search (128 levels, thresholds from bin 128 to the last).
* `amax_mse`: the threshold whose quantize-dequantize of the histogram has the least squared error.

All are pure functions of `TensorStats` (quant/calibrate.py). The two searches score every candidate
threshold of the histogram at once from cumulative sums, instead of one pass over the bins per
candidate (TensorRT's tools loop in Python: O(bins^2) per tensor, 0.6 s for 2048 bins). Written by
hand because no maintained library exposes these searches over a histogram: pytorch-quantization
and ModelOpt need torch, onnxruntime.quantization's entropy calibrator tries one threshold with its
default 128/128 bins (it degenerates to max).

Both searches treat scores equal within float rounding (TIE_RTOL) as equal, so that which of two
equal candidates wins does not depend on the order of a floating-point sum: entropy takes the last
of them (TensorRT's `last_argmin`), mse the first (its `argmin`).
"""

from __future__ import annotations

import numpy as np

from onnx2trt_check.errors import ConfigError
from onnx2trt_check.quant.calibrate import TensorStats
from onnx2trt_check.quant.qdq_math import SYMMETRIC_LEVELS, symmetric_scale

METHODS = ("max", "percentile", "entropy", "mse")
# 8-bit signed: 128 magnitude levels (TensorRT's `1 << (num_bits - 1)`).
NUM_QUANTIZED_BINS = 128
START_BIN = 128
# Scores within this distance of the best are ties: relative, and absolute for divergences near
# zero (the rounding of the prefix sums is ~1e-15 of their size).
TIE_RTOL = 1e-9
TIE_ATOL = 1e-12


def amax_max(stats: TensorStats) -> float:
    """max|x| over all calibration data."""
    return float(stats.amax)


def amax_percentile(stats: TensorStats, percentile: float) -> float:
    """The `percentile` (in [0, 100]) of |x|: the edge of the histogram bin where the cumulative
    count reaches it, as pytorch-quantization's `_compute_amax_percentile`, capped at max|x|."""
    if not 0.0 <= percentile <= 100.0:
        raise ConfigError(f"percentile {percentile} is outside [0, 100]; pass e.g. 99.99")
    if stats.counts is None:
        return 0.0
    cdf = np.cumsum(stats.counts / stats.counts.sum())
    index = min(int(np.searchsorted(cdf, percentile / 100.0)), len(stats.counts))
    return float(min(stats.edges[index], stats.amax))


# ---------------------------------------------------------------- entropy


def entropy_divergences(counts: np.ndarray, *, start_bin: int = START_BIN, stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(candidate threshold bins i, KL(reference || quantized) of each), TensorRT's definition: the
    reference is the histogram up to bin i with everything beyond added to bin i-1; the candidate
    spreads each of 128 levels' count evenly over its nonzero bins (levels split [0, i) as
    np.digitize over np.linspace(0, i, 129) does). The zero bin is replaced by bin 1 first, as
    TensorRT does (it is huge after a ReLU). An empty candidate, or one that is zero where the
    reference is not, diverges infinitely.

    With r the reference (total R), S_j/N_j the count/nonzero bins of level j and C the count
    below i, KL = (sum r log r - sum_j R_j log(S_j/N_j)) / R - log R + log C, where R_j is level
    j's reference count: every term is a difference of prefix sums."""
    bins = counts.astype(np.float64)
    bins[0] = bins[1]
    candidates = np.arange(start_bin, len(bins) + 1, stride)
    below = np.concatenate([[0.0], np.cumsum(bins)])
    nonzero = np.concatenate([[0], np.cumsum(bins != 0)])
    bin_entropy = np.concatenate([[0.0], np.cumsum(_x_log_x(bins))])
    total = below[-1]
    starts = _level_starts(candidates)  # level j holds bins starts[j] <= k < starts[j+1]
    level_counts, level_bins = np.diff(below[starts], axis=1), np.diff(nonzero[starts], axis=1)
    tail = total - below[candidates]
    last_bin = bins[candidates - 1]
    level_reference = level_counts.copy()
    level_reference[:, -1] += tail  # bin i-1 lies in the last level (i >= 128)
    density = np.divide(level_counts, level_bins, out=np.ones_like(level_counts), where=level_bins > 0)
    cross = np.sum(level_reference * np.log(density), axis=1)
    own = bin_entropy[candidates - 1] + _x_log_x(last_bin + tail)
    with np.errstate(divide="ignore"):
        divergence = (own - cross) / total - np.log(total) + np.log(below[candidates])
    impossible = (below[candidates] == 0) | ((last_bin == 0) & (tail > 0))
    return candidates, np.where(impossible, np.inf, np.maximum(divergence, 0.0))


def _level_starts(candidates: np.ndarray) -> np.ndarray:
    """ceil of TensorRT's level edges np.linspace(0, i, 129) per candidate i, in integers:
    ceil(j * i / 128). linspace's edges are exactly j * (i / 128) (a power-of-two step, products
    far below 2**53), so this is the same array without the float matrix and its ceil, a third
    of the search's time (tests/test_quant_calibrate.py compares them for every i below 40000)."""
    products = np.arange(NUM_QUANTIZED_BINS + 1, dtype=np.int64)[None, :] * candidates.astype(np.int64)[:, None]
    return (products + (NUM_QUANTIZED_BINS - 1)) >> (NUM_QUANTIZED_BINS.bit_length() - 1)  # ceil of / 128, as a shift


def _x_log_x(values: np.ndarray) -> np.ndarray:
    return values * np.log(np.where(values > 0, values, 1.0))


def amax_entropy(stats: TensorStats, *, start_bin: int = START_BIN, stride: int = 1) -> float:
    """TensorRT's entropy calibration (pytorch-quantization `_compute_amax_entropy`): the last
    threshold of least KL divergence (entropy_divergences), as the bin's upper edge, capped at
    max|x|. Defaults: start_bin 128, stride 1."""
    if stats.counts is None:
        return 0.0
    candidates, divergences = entropy_divergences(stats.counts, start_bin=start_bin, stride=stride)
    if not np.isfinite(divergences).any():
        return float(stats.amax)
    best = np.flatnonzero(divergences <= _tie_bound(divergences, TIE_ATOL))[-1]
    return float(min(stats.edges[candidates[best]], stats.amax))


def _tie_bound(scores: np.ndarray, atol: float = 0.0) -> float:
    least = float(np.min(scores))
    return least + TIE_RTOL * abs(least) + atol


# ---------------------------------------------------------------- mse


def mse_errors(stats: TensorStats, *, start_bin: int = START_BIN, stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(candidate amax, count-weighted squared error of each): amax is a bin center from
    `start_bin` on (pytorch-quantization `_compute_amax_mse`), the error is of the bin centers
    through a float32 Q->DQ pair with scale amax/127 against the centers, in float64.

    Every center that rounds to level L has the error (v_L - c)^2 with v_L = L * scale (the float32
    product DequantizeLinear computes), so a level's sum is v_L^2 n - 2 v_L sum(n c) + sum(n c^2)
    over its bins: prefix sums, once the first bin of each level is known. That bin comes from the
    real-valued boundary (L - 1/2) * scale; a center within float rounding of it may land on either
    side, where its error is (scale/2)^2 either way up to that rounding."""
    centers = ((stats.edges[1:] + stats.edges[:-1]) / 2).astype(np.float32)
    candidates = np.arange(start_bin, len(centers), stride)
    amax = centers[candidates]
    scales = np.atleast_1d(symmetric_scale(amax)).astype(np.float64)
    levels = np.arange(SYMMETRIC_LEVELS + 1, dtype=np.float32)
    boundaries = np.outer(scales, levels[1:] - 0.5) / stats.width - 0.5  # in bins: center k is (k + 1/2) * width
    starts = np.clip(np.ceil(boundaries), 0, len(centers)).astype(np.int64)
    starts = np.concatenate([np.zeros((len(scales), 1), np.int64), starts, np.full((len(scales), 1), len(centers))], axis=1)
    counts, values = stats.counts.astype(np.float64), centers.astype(np.float64)
    n, first, second = (np.diff(np.concatenate([[0.0], np.cumsum(counts * values**p)])[starts], axis=1) for p in (0, 1, 2))
    dequantized = (levels[None, :] * scales.astype(np.float32)[:, None]).astype(np.float64)
    errors = np.einsum("ij,ij->i", dequantized**2, n) - 2 * np.einsum("ij,ij->i", dequantized, first) + second.sum(axis=1)
    return amax, np.maximum(errors, 0.0)


def amax_mse(stats: TensorStats, *, start_bin: int = START_BIN, stride: int = 1) -> float:
    """The first candidate amax of least error (mse_errors), capped at max|x|.
    Defaults: start_bin 128, stride 1."""
    if stats.counts is None:
        return 0.0
    amax, errors = mse_errors(stats, start_bin=start_bin, stride=stride)
    if not len(errors):
        return float(stats.amax)
    best = np.flatnonzero(errors <= _tie_bound(errors))[0]
    return float(min(amax[best], stats.amax))


def compute_amax(stats: TensorStats, method: str, *, percentile: float = 99.99) -> float:
    """The amax of one tensor by `method` (one of METHODS). percentile defaults to 99.99."""
    if method == "max":
        return amax_max(stats)
    if method == "percentile":
        return amax_percentile(stats, percentile)
    if method == "entropy":
        return amax_entropy(stats)
    if method == "mse":
        return amax_mse(stats)
    raise ConfigError(f"unknown calibration method {method!r}; pass one of {', '.join(METHODS)}")
