"""Calibration statistics: per activation tensor, max|x| and a histogram of |x| over the calibration
feeds, from which quant/ranges.py computes the ranges (amax).

Statistics are streamed: per tensor only the running max|x| and a histogram of |x| are kept, so a
large calibration set never sits in memory. The histogram follows TensorRT's pytorch-quantization
`HistogramCalibrator`: 2048 bins over [0, max|x|] of the first batch, then bins of the same width are
appended when a later batch reaches further. Bin k holds the |x| with floor(|x| / width) = k (the
quotient in float64), so a count does not depend on when bins were appended or merged.

onnxruntime.quantization's calibrators are not used for collection: they keep every intermediate
output of every batch in memory until the end, and their entropy search (num_bins=128,
num_quantized_bins=128 by default) tries a single threshold, i.e. degenerates to max. np.histogram
is not used either: per call it checks and converts what we know already, 3-5x our cost per value.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import onnx
import onnx_ir as ir
import onnx_ir.passes.common as ir_passes

from onnx2trt_check.errors import ConfigError, InputDataError
from onnx2trt_check.runtime import create_session, run_feeds
from onnx2trt_check.transforms.graph_utils import expose_as_outputs

NUM_BINS = 2048
# A histogram that would grow past this many bins (a later batch far beyond the first) has its bins
# merged by a power of two instead, so memory and the range searches stay bounded.
MAX_BINS = 4 * NUM_BINS


@dataclasses.dataclass
class TensorStats:
    """Streaming statistics of one tensor: max|x| and a histogram of |x| with bins of fixed width.

    `counts[k]` counts |x| with floor(|x| / width) = k, i.e. in [k*width, (k+1)*width) up to the
    rounding of the quotient (at most one unit in the last place of a bin edge). Zeros seen before the first nonzero value are
    held in `pending_zeros` (the bin width is not known yet)."""

    amax: float = 0.0
    counts: np.ndarray | None = None
    width: float = 0.0
    pending_zeros: int = 0

    @property
    def edges(self) -> np.ndarray:
        return np.arange(len(self.counts) + 1, dtype=np.float64) * self.width

    def update(self, x: np.ndarray) -> None:
        magnitudes = np.abs(np.asarray(x).ravel())
        batch_max = float(magnitudes.max()) if magnitudes.size else 0.0  # NaN propagates through max
        if not math.isfinite(batch_max):
            raise InputDataError("calibration produced NaN/Inf activations; check the calibration feeds")
        self.amax = max(self.amax, batch_max)
        if self.counts is None and batch_max == 0.0:
            self.pending_zeros += magnitudes.size
            return
        if self.counts is None:
            self._start(batch_max)
        self._grow_to(batch_max)
        self.counts += np.bincount(self._bin_of(magnitudes), minlength=len(self.counts))

    def _bin_of(self, magnitudes: np.ndarray) -> np.ndarray:
        """floor(|x| / width) in float64 (the top value's bin is the last one). Bins merged by a
        power of two keep this rule: floor(floor(q) / 2^k) = floor(q / 2^k)."""
        index = np.divide(magnitudes, self.width, dtype=np.float64).astype(np.intp)
        return np.minimum(index, len(self.counts) - 1, out=index)

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
    return ir.serde.serialize_model(_exposing(model, names))


def _exposing(model: onnx.ModelProto, names: Sequence[str]) -> ir.Model:
    """with_outputs as an onnx-ir model that shares the weights of `model`: a session made from it
    (runtime.create_session) takes them without the protobuf copy serializing would make."""
    # onnx-ir's pass sets large weights aside while onnx infers: onnx.shape_inference.infer_shapes
    # serializes the whole model, which fails at 2 GiB.
    ir_model = ir_passes.ShapeInferencePass()(ir.from_proto(model)).model
    values = {v.name: v for v in ir_model.graph.inputs}
    values.update((v.name, v) for node in ir_model.graph for v in node.outputs)
    for name in names:
        if name not in values:
            raise ConfigError(f"tensor {name!r} to calibrate is not in the graph; pass a node output or graph input name")
    expose_as_outputs(ir_model.graph, [values[name] for name in names])
    return ir_model


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
    return _collect(create_session(_exposing(model, tensor_names), optimized=False), feeds, tensor_names, progress)


def statistics_and_outputs(model: onnx.ModelProto, feeds: Iterable[Mapping[str, np.ndarray]], tensor_names: Sequence[str],
                           others: Sequence[Mapping[str, np.ndarray]], *, progress: bool = False) -> tuple[dict[str, TensorStats], list[dict[str, np.ndarray]]]:
    """collect_statistics over `feeds`, and the model's outputs on `others` (runtime.run_model's,
    bit for bit) from the same session: the automatic calibration's reference on its held-out
    feeds without a session of its own (a float model's session costs 0.003-0.3 s to build)."""
    session = create_session(_exposing(model, tensor_names), optimized=False)
    stats = _collect(session, feeds, tensor_names, progress)
    return stats, run_feeds(session, others, [value.name for value in model.graph.output])


def _collect(session, feeds, tensor_names: Sequence[str], progress: bool) -> dict[str, TensorStats]:
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
