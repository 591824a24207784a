"""Calibration: activation statistics over calibration feeds, and the ranges (amax) computed from them.

Statistics are streamed: per tensor only the running max|x| and a histogram of |x| are kept, so a
large calibration set never sits in memory. The histogram follows TensorRT's pytorch-quantization
`HistogramCalibrator`: 2048 bins over [0, max|x|] of the first batch, then bins of the same width are
appended when a later batch reaches further.

The range methods are pure functions of `TensorStats`:
* `amax_max`: max|x|.
* `amax_percentile`: the given percentile of |x|.
* `amax_entropy`: TensorRT's KL-divergence search (128 levels, thresholds from bin 128 to the last).
* `amax_mse`: the threshold whose quantize-dequantize has the least mean squared error.

onnxruntime.quantization's calibrators are not used for collection: they keep every intermediate
output of every batch in memory until the end, and their entropy search (num_bins=128,
num_quantized_bins=128 by default) tries a single threshold, i.e. degenerates to max.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import onnx
import onnx_ir as ir
import onnx_ir.passes.common as ir_passes
import scipy.special

from onnx2trt_check.errors import ConfigError, InputDataError
from onnx2trt_check.quant.qdq_math import fake_quantize, symmetric_scale
from onnx2trt_check.runtime import create_session
from onnx2trt_check.transforms.graph_utils import expose_as_outputs

NUM_BINS = 2048
# A histogram that would grow past this many bins (a later batch far beyond the first) has its bins
# merged by a power of two instead, so memory and the O(bins^2) entropy search stay bounded.
MAX_BINS = 4 * NUM_BINS
# 8-bit signed: 128 magnitude levels (TensorRT's `1 << (num_bits - 1)`).
NUM_QUANTIZED_BINS = 128
START_BIN = 128
METHODS = ("max", "percentile", "entropy", "mse")


@dataclasses.dataclass
class TensorStats:
    """Streaming statistics of one tensor: max|x| and a histogram of |x| with bins of fixed width.

    `counts[k]` counts |x| in [k*width, (k+1)*width). Zeros seen before the first nonzero value are
    held in `pending_zeros` (the bin width is not known yet)."""

    amax: float = 0.0
    counts: np.ndarray | None = None
    width: float = 0.0
    pending_zeros: int = 0

    @property
    def edges(self) -> np.ndarray:
        return np.arange(len(self.counts) + 1, dtype=np.float64) * self.width

    def update(self, x: np.ndarray) -> None:
        magnitudes = np.abs(np.asarray(x, dtype=np.float64)).ravel()
        if magnitudes.size and not np.all(np.isfinite(magnitudes)):
            raise InputDataError("calibration produced NaN/Inf activations; check the calibration feeds")
        batch_max = float(magnitudes.max()) if magnitudes.size else 0.0
        self.amax = max(self.amax, batch_max)
        if self.counts is None and batch_max == 0.0:
            self.pending_zeros += magnitudes.size
            return
        if self.counts is None:
            self._start(batch_max)
        self._grow_to(batch_max)
        top = len(self.counts) * self.width
        self.counts += np.histogram(magnitudes, bins=len(self.counts), range=(0.0, top))[0]

    def _start(self, batch_max: float) -> None:
        self.width = batch_max / NUM_BINS
        self.counts = np.zeros(NUM_BINS, dtype=np.int64)
        self.counts[0] += self.pending_zeros
        self.pending_zeros = 0

    def _grow_to(self, batch_max: float) -> None:
        needed = np.ceil(batch_max / self.width)  # a float: after a subnormal first batch it overflows int64
        if needed > MAX_BINS:  # merge first: a tiny first batch must not make us allocate `needed` bins
            self._merge_bins(2.0 ** np.ceil(np.log2(needed / MAX_BINS)))
            needed = np.ceil(batch_max / self.width)
        if needed > len(self.counts):
            self.counts = np.concatenate([self.counts, np.zeros(int(needed) - len(self.counts), np.int64)])

    def _merge_bins(self, factor: float) -> None:
        # Exact: `factor` bins of width w add up to one bin of width factor*w, nothing interpolated
        # (a factor beyond the bin count puts everything in one bin, still exactly).
        step = int(min(factor, len(self.counts)))
        self.counts = np.add.reduceat(self.counts, np.arange(0, len(self.counts), step))
        self.width *= factor


# ---------------------------------------------------------------- collection over the model


def with_outputs(model: onnx.ModelProto, names: Sequence[str]) -> onnx.ModelProto:
    """A copy of the model whose graph also outputs the tensors `names`."""
    # onnx-ir's pass sets large weights aside while onnx infers: onnx.shape_inference.infer_shapes
    # serializes the whole model, which fails at 2 GiB.
    ir_model = ir_passes.ShapeInferencePass()(ir.from_proto(model)).model
    values = {v.name: v for v in ir_model.graph.inputs}
    values.update((v.name, v) for node in ir_model.graph for v in node.outputs)
    for name in names:
        if name not in values:
            raise ConfigError(f"tensor {name!r} to calibrate is not in the graph; pass a node output or graph input name")
    expose_as_outputs(ir_model.graph, [values[name] for name in names])
    return ir.serde.serialize_model(ir_model)


def collect_statistics(
    model: onnx.ModelProto,
    feeds: Iterable[Mapping[str, np.ndarray]],
    tensor_names: Sequence[str],
    *,
    progress: bool = False,
) -> dict[str, TensorStats]:
    """Run the model over every feed and accumulate `TensorStats` of each tensor in `tensor_names`
    (graph inputs or node outputs). Only one batch of activations is held at a time. `progress`
    writes a batch counter to stderr when stderr is a terminal or there are many batches."""
    session = create_session(with_outputs(model, tensor_names), optimized=False)
    input_names = [i.name for i in session.get_inputs()]
    outputs = [n for n in tensor_names if n not in input_names]
    stats = {name: TensorStats() for name in tensor_names}
    reporter = _Progress(_length(feeds)) if progress else None
    batches = 0
    for feed in feeds:
        values = dict(zip(outputs, session.run(outputs, dict(feed)))) if outputs else {}
        values.update((n, feed[n]) for n in tensor_names if n in input_names)
        for name, value in values.items():
            stats[name].update(value)
        batches += 1
        if reporter:
            reporter.step(batches)
    if batches == 0:
        raise InputDataError("calibration feeds are empty; pass at least one feed dict")
    if reporter:
        reporter.done(batches)
    return stats


def _length(feeds) -> int | None:
    return len(feeds) if hasattr(feeds, "__len__") else None


class _Progress:
    """A batch counter on stderr: redrawn in place on a terminal, a line per tenth otherwise."""

    MANY_BATCHES = 20

    def __init__(self, total: int | None):
        self.total = total
        self.tty = sys.stderr.isatty()
        self.enabled = self.tty or (total or 0) >= self.MANY_BATCHES

    def step(self, done: int) -> None:
        if not self.enabled:
            return
        of = f"/{self.total}" if self.total else ""
        if self.tty:
            sys.stderr.write(f"\rcalibrating: batch {done}{of}")
        elif self.total and done % max(1, self.total // 10) == 0:
            sys.stderr.write(f"calibrating: batch {done}{of}\n")
        sys.stderr.flush()

    def done(self, batches: int) -> None:
        if self.enabled and self.tty:
            sys.stderr.write(f"\rcalibrating: {batches} batches done\n")


# ---------------------------------------------------------------- range methods


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


def _entropy_divergence(bins: np.ndarray, i: int, num_quantized_bins: int) -> float:
    """KL(reference || quantized) for the threshold at bin i, vectorized from TensorRT's loop."""
    digitized = np.digitize(np.arange(i), np.linspace(0, i, num=num_quantized_bins + 1)) - 1
    nonzero = bins[:i] != 0
    levels = digitized[nonzero]
    level_sums = np.bincount(levels, weights=bins[:i][nonzero], minlength=num_quantized_bins)
    level_nonzeros = np.bincount(levels, minlength=num_quantized_bins)
    level_density = np.divide(level_sums, level_nonzeros, out=np.zeros(num_quantized_bins), where=level_nonzeros > 0)
    candidate = np.where(nonzero, level_density[np.clip(digitized, 0, None)], 0.0)
    reference = bins[:i].astype(np.float64)
    reference[-1] += bins[i:].sum()
    if not candidate.any():
        # TensorRT's loop gets NaN here and its argmin would pick it; an empty candidate is no candidate.
        return np.inf
    # scipy.stats.entropy(reference, candidate) computes exactly this, at 10x the call overhead.
    return float(np.sum(scipy.special.rel_entr(reference / reference.sum(), candidate / candidate.sum())))


def amax_entropy(stats: TensorStats, *, start_bin: int = START_BIN, stride: int = 1) -> float:
    """TensorRT's entropy calibration (pytorch-quantization `_compute_amax_entropy`): for each
    threshold bin i from `start_bin` to the last, quantize the clipped histogram to 128 levels and
    measure the KL divergence; the last threshold of least divergence wins. Capped at max|x|.
    Defaults: start_bin 128, stride 1."""
    if stats.counts is None:
        return 0.0
    bins = stats.counts.astype(np.float64)
    # TensorRT's heuristic: the zero bin (huge after ReLU) is replaced by its neighbour.
    bins[0] = bins[1]
    candidates = np.arange(start_bin, len(bins) + 1, stride)
    divergences = np.array([_entropy_divergence(bins, i, NUM_QUANTIZED_BINS) for i in candidates])
    last_argmin = len(divergences) - 1 - int(np.argmin(divergences[::-1]))
    return float(min(stats.edges[candidates[last_argmin]], stats.amax))


def amax_mse(stats: TensorStats, *, start_bin: int = START_BIN, stride: int = 1) -> float:
    """The bin center, from `start_bin` on, that minimizes the count-weighted squared error of
    symmetric int8 fake quantization of the bin centers (pytorch-quantization `_compute_amax_mse`).
    Defaults: start_bin 128, stride 1."""
    if stats.counts is None:
        return 0.0
    edges = stats.edges
    centers = ((edges[1:] + edges[:-1]) / 2).astype(np.float32)
    candidates = np.arange(start_bin, len(centers), stride)
    errors = [_weighted_qdq_error(centers, stats.counts, centers[i]) for i in candidates]
    return float(min(centers[candidates[int(np.argmin(errors))]], stats.amax))


def _weighted_qdq_error(centers: np.ndarray, counts: np.ndarray, amax: float) -> float:
    error = fake_quantize(centers, symmetric_scale(amax)) - centers
    return float(np.sum(error.astype(np.float64) ** 2 * counts))


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
