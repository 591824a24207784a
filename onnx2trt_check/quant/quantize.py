"""Post-training int8 quantization for TensorRT: plan the Q/DQ placement, calibrate the activations
it quantizes, insert the Q/DQ nodes. The result is an ONNX QDQ model that TensorRT builds as it is
(explicit quantization) and that ONNX Runtime runs on any machine.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

import numpy as np
import onnx

from onnx2trt_check.errors import ConfigError
from onnx2trt_check.quant.calibrate import METHODS, collect_statistics, compute_amax
from onnx2trt_check.quant.insert_qdq import QuantizedTensor, insert_qdq, plan_qdq
from onnx2trt_check.transforms.base import Skip


@dataclasses.dataclass
class QuantizeReport:
    """Every quantized tensor with its amax and scale, and every candidate node skipped, with why."""

    method: str
    tensors: list[QuantizedTensor] = dataclasses.field(default_factory=list)
    skips: list[Skip] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class QuantizeResult:
    model: onnx.ModelProto
    report: QuantizeReport


def _check_options(method: str, percentile: float) -> None:
    if method not in METHODS:
        raise ConfigError(f"unknown calibration method {method!r}; pass one of {', '.join(METHODS)}")
    if not 0.0 < percentile <= 100.0:
        raise ConfigError(f"percentile {percentile} is outside (0, 100]; pass e.g. 99.99")


def quantize_model(
    model: onnx.ModelProto,
    calibration_feeds: Iterable[Mapping[str, np.ndarray]],
    *,
    method: str = "entropy",
    percentile: float = 99.99,
    per_channel: bool = True,
    exclude: Iterable[str] = (),
    progress: bool = False,
) -> QuantizeResult:
    """The int8 QDQ model of `model`, activations calibrated over `calibration_feeds` (an iterable
    of {input name: array}, consumed once) by `method` ("entropy", "max", "percentile" or "mse").
    `exclude` holds node names or regexes left in float. `model` is not mutated.
    Defaults: entropy (TensorRT's), percentile 99.99 (used by "percentile" only), per-channel
    weights, nothing excluded, no progress display."""
    _check_options(method, percentile)
    plan = plan_qdq(model, per_channel=per_channel, exclude=exclude)
    amax = {}
    if plan.activations:
        stats = collect_statistics(model, calibration_feeds, plan.activations, progress=progress)
        amax = {name: compute_amax(stats[name], method, percentile=percentile) for name in plan.activations}
    quantized_model, tensors = insert_qdq(model, plan, amax)
    return QuantizeResult(quantized_model, QuantizeReport(method, tensors, list(plan.skips)))
