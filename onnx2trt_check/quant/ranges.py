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
from onnx2trt_check.quant.calibrate import MAX_BINS, TensorStats
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
    starts = _level_start_table(len(bins))[start_bin::stride]  # level j holds bins starts[j] <= k < starts[j+1]
    level_counts, level_bins = _level_sums(below, starts), _level_sums(nonzero, starts)
    tail = total - below[candidates]
    last_bin = bins[candidates - 1]
    # In place from here (each matrix is candidates x 128: their allocations were a fifth of the time).
    log_density = np.divide(level_counts, level_bins, out=np.ones_like(level_counts), where=level_bins > 0)
    np.log(log_density, out=log_density)
    level_counts[:, -1] += tail  # the reference's count per level: bin i-1 lies in the last level (i >= 128)
    cross = np.sum(np.multiply(level_counts, log_density, out=log_density), axis=1)
    own = bin_entropy[candidates - 1] + _x_log_x(last_bin + tail)
    with np.errstate(divide="ignore"):
        divergence = (own - cross) / total - np.log(total) + np.log(below[candidates])
    impossible = (below[candidates] == 0) | ((last_bin == 0) & (tail > 0))
    return candidates, np.where(impossible, np.inf, np.maximum(divergence, 0.0))


def _level_sums(prefix: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Per candidate (row) and level, the sum of the bins the level holds, from the prefix sums."""
    edges = prefix[starts]
    return np.subtract(edges[:, 1:], edges[:, :-1])


# _level_starts of every candidate from 0 up to the largest histogram seen so far: it depends on
# the candidate only, and computing it was a fifth of a search's time. Grown by doubling up to
# MAX_BINS + 1 rows (8.5 MB); a longer histogram (not one of calibrate's) gets its own.
_level_start_rows = np.zeros((0, NUM_QUANTIZED_BINS + 1), np.intp)


def _level_start_table(last: int) -> np.ndarray:
    """_level_starts(np.arange(last + 1)), rows 0..last (a view of the shared table)."""
    global _level_start_rows
    if last > MAX_BINS:
        return _level_starts(np.arange(last + 1))
    table = _level_start_rows  # read once: another thread may replace it meanwhile (with an equal prefix)
    if len(table) <= last:
        table = _level_start_rows = _level_starts(np.arange(min(max(last + 1, 2 * len(table)), MAX_BINS + 1)))
    return table[: last + 1]


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
    starts = _mse_level_starts(scales, levels, stats.width, len(centers))
    counts, values = stats.counts.astype(np.float64), centers.astype(np.float64)
    n, first, second = (_level_sums(np.concatenate([[0.0], np.cumsum(counts * values**p)]), starts) for p in (0, 1, 2))
    dequantized = (levels[None, :] * scales.astype(np.float32)[:, None]).astype(np.float64)
    errors = np.einsum("ij,ij->i", dequantized**2, n) - 2 * np.einsum("ij,ij->i", dequantized, first) + second.sum(axis=1)
    return amax, np.maximum(errors, 0.0)


def _mse_level_starts(scales: np.ndarray, levels: np.ndarray, width: float, bins: int) -> np.ndarray:
    """Per candidate scale, the first bin of each level and `bins` last: centers (k + 1/2) * width
    from the boundaries (L - 1/2) * scale on, computed in place (the matrices are candidates x 128)."""
    starts = np.empty((len(scales), len(levels) + 1))
    starts[:, 0], starts[:, -1] = 0.0, bins
    inner = starts[:, 1:-1]
    np.multiply.outer(scales, levels[1:] - 0.5, out=inner)
    inner /= width
    inner -= 0.5
    np.clip(np.ceil(inner, out=inner), 0, bins, out=inner)
    return starts.astype(np.intp)


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
