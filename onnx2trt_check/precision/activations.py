"""Running statistics of intermediate activations, collected in ONNX Runtime.

A copy of the model exposes the selected float tensors as graph outputs; every feed is run once and
only per-tensor running statistics are kept (never the activations of many feeds at once, so the
peak memory is one feed's selected activations). Used by the fp16 fallback list, the bisect tool
and int8 calibration.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

import numpy as np
import onnx
import onnx_ir as ir
import onnx_ir.passes.common as ir_passes

from onnx2trt_check.errors import ConfigError, InputDataError, ModelError
from onnx2trt_check.runtime import create_session
from onnx2trt_check.transforms.graph_utils import expose_as_outputs

# 2**-14: below it fp16 has only subnormals (fewer significant bits, down to 2**-24, then zero).
FP16_SMALLEST_NORMAL = 2.0**-14
FLOAT_DTYPES = frozenset({ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.DOUBLE, ir.DataType.BFLOAT16})


@dataclasses.dataclass(frozen=True)
class TensorStats:
    """Statistics of every value a tensor took over the feeds seen so far.

    `nonzero`, `underflow` and `max_abs` count finite values only; NaN and Inf are counted apart.
    `underflow` counts the finite non-zero values with |x| below the fp16 smallest normal (2**-14).
    """

    count: int = 0
    nonzero: int = 0
    underflow: int = 0
    nan: int = 0
    inf: int = 0
    max_abs: float = 0.0

    @classmethod
    def of(cls, array: np.ndarray) -> TensorStats:
        values = np.asarray(array)
        magnitude = np.abs(values)
        finite = magnitude[np.isfinite(magnitude)]
        nan = int(np.count_nonzero(np.isnan(values)))
        return cls(
            count=int(values.size),
            nonzero=int(np.count_nonzero(finite)),
            underflow=int(np.count_nonzero((finite > 0) & (finite < FP16_SMALLEST_NORMAL))),
            nan=nan,
            inf=int(values.size - finite.size - nan),
            max_abs=float(finite.max()) if finite.size else 0.0,
        )

    def merged(self, other: TensorStats) -> TensorStats:
        """The statistics of both sets of values together."""
        return TensorStats(
            count=self.count + other.count,
            nonzero=self.nonzero + other.nonzero,
            underflow=self.underflow + other.underflow,
            nan=self.nan + other.nan,
            inf=self.inf + other.inf,
            max_abs=max(self.max_abs, other.max_abs),
        )

    @property
    def underflow_fraction(self) -> float:
        """Share of the finite non-zero values that are fp16 subnormal or zero; 0.0 if none."""
        return self.underflow / self.nonzero if self.nonzero else 0.0

    @property
    def has_nonfinite(self) -> bool:
        return bool(self.nan or self.inf)


def collect_activation_stats(
    model: onnx.ModelProto | ir.Model,
    feeds: Iterable[Mapping[str, np.ndarray]],
    *,
    tensors: Iterable[str] | None = None,
) -> dict[str, TensorStats]:
    """Statistics of float tensors of the top-level graph over all feeds, by tensor name.

    `tensors` selects graph inputs or node outputs by name. Defaults to every float graph input and
    every float node output (initializers are weights, not activations). Runs the ORT reference
    (no graph optimizations), so every tensor exists as written. The input model (a proto or an
    onnx-ir model, whose weights are then used without a copy) is not mutated.
    """
    probe = _typed_copy(model)
    available = _float_tensors(probe.graph)
    names = list(available) if tensors is None else _checked_selection(tensors, available, probe.graph)
    input_names = {value.name for value in probe.graph.inputs}
    computed = [name for name in names if name not in input_names]
    expose_as_outputs(probe.graph, [available[name] for name in computed])
    session = create_session(probe, optimized=False)  # the weights handed over, not serialized
    stats = {name: TensorStats() for name in names}
    seen = 0
    for feed in feeds:
        _merge_feed(stats, session, computed, feed, [name for name in names if name in input_names])
        seen += 1
    if not seen:
        raise InputDataError("feeds is empty; pass at least one feed (a dict of input name -> array)")
    return stats


def _merge_feed(stats: dict[str, TensorStats], session, computed: list[str], feed, inputs: list[str]) -> None:
    """One feed's statistics merged into `stats`. A function of its own so that feed's activations
    (every float tensor of the graph) are released before the next feed runs, not while it runs:
    two feeds' activations at once were the peak of the fp16 conversion (ResNet-50-sized: +480 MB
    on 100 MB of weights)."""
    arrays = dict(zip(computed, session.run(computed, dict(feed)))) if computed else {}
    arrays.update({name: feed[name] for name in inputs})
    for name, array in arrays.items():
        stats[name] = stats[name].merged(TensorStats.of(array))


def _typed_copy(model: onnx.ModelProto | ir.Model) -> ir.Model:
    """An IR copy of the model in which every node output has a type (inferred where missing); it
    shares the weights of `model`."""
    copy = model.clone() if isinstance(model, ir.Model) else ir.from_proto(model)
    if any(value.type is None for node in copy.graph for value in node.outputs if value.name):
        # onnx-ir's pass hands large initializers to onnx's inference as inputs, so it stays cheap.
        copy = ir_passes.ShapeInferencePass()(copy).model
    return copy


def _float_tensors(graph: ir.Graph) -> dict[str, ir.Value]:
    """Float graph inputs and node outputs of the top-level graph, in graph order."""
    inputs = [value for value in graph.inputs if not value.is_initializer()]
    outputs = [value for node in graph for value in node.outputs]
    return {value.name: value for value in inputs + outputs if value.name and value.dtype in FLOAT_DTYPES}


def _checked_selection(tensors: Iterable[str], available: Mapping[str, ir.Value], graph: ir.Graph) -> list[str]:
    names = list(dict.fromkeys(tensors))
    known = {value.name for node in graph for value in node.outputs} | {value.name for value in graph.inputs}
    for name in names:
        if name not in known:
            raise ConfigError(f"tensor {name!r} is not a graph input or node output; pass names from the graph")
        if name not in available:
            raise ModelError(f"tensor {name!r} has no inferred float type; only float tensors have statistics")
    return names


