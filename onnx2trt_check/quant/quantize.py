"""Post-training int8 quantization for TensorRT: plan the Q/DQ placement, calibrate the activations
it quantizes, insert the Q/DQ nodes. The result is an ONNX QDQ model that TensorRT builds as it is
(explicit quantization) and that ONNX Runtime runs on any machine.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

import numpy as np
import onnx

from onnx2trt_check.errors import ConfigError, ModelError
from onnx2trt_check.quant.auto_range import auto_ranges
from onnx2trt_check.quant.calibrate import collect_statistics
from onnx2trt_check.quant.insert_qdq import LINEAR_OPS, QdqPlan, QuantizedTensor, insert_qdq, plan_qdq
from onnx2trt_check.quant.objective import Objective, output_sqnr_db
from onnx2trt_check.quant.ranges import METHODS, compute_amax
from onnx2trt_check.transforms.base import Skip

AUTO = "auto"
CALIBRATION_METHODS = (AUTO, *METHODS)


@dataclasses.dataclass
class QuantizeReport:
    """Every quantized tensor with its amax and scale, the range method of each activation (auto
    picks one per tensor; `selection` says how), and every candidate node skipped, with why."""

    method: str
    tensors: list[QuantizedTensor] = dataclasses.field(default_factory=list)
    skips: list[Skip] = dataclasses.field(default_factory=list)
    methods: dict[str, str] = dataclasses.field(default_factory=dict)
    scores: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    selection: dict | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class QuantizeResult:
    model: onnx.ModelProto
    report: QuantizeReport


def check_options(method: str, percentile: float) -> None:
    if method not in CALIBRATION_METHODS:
        raise ConfigError(f"unknown calibration method {method!r}; pass one of {', '.join(CALIBRATION_METHODS)}")
    if not 0.0 < percentile <= 100.0:
        raise ConfigError(f"percentile {percentile} is outside (0, 100]; pass e.g. 99.99")


def quantize_model(
    model: onnx.ModelProto,
    calibration_feeds: Iterable[Mapping[str, np.ndarray]],
    *,
    method: str = AUTO,
    percentile: float = 99.99,
    per_channel: bool = True,
    exclude: Iterable[str] = (),
    objective: Objective = output_sqnr_db,
    selection_feeds: Iterable[Mapping[str, np.ndarray]] | None = None,
    progress: bool = False,
) -> QuantizeResult:
    """The int8 QDQ model of `model`, activations calibrated over `calibration_feeds` (an iterable
    of {input name: array}) by `method`: "auto" (per tensor the best of the others on held-out
    feeds by `objective`, or on `selection_feeds` when given: quant/auto_range.py), "max",
    "percentile", "entropy" or "mse".
    `exclude` holds node names or regexes left in float (unnamed nodes: `OpType(first output)`).
    `model` is not mutated. Defaults: auto, percentile 99.99 (its percentile method), per-channel
    weights, nothing excluded, the worst output SQNR as the objective, no progress display."""
    check_options(method, percentile)
    plan = plan_qdq(model, per_channel=per_channel, exclude=exclude)
    _check_something_to_quantize(plan)
    report = QuantizeReport(method, skips=list(plan.skips))
    amax = {}
    if plan.activations and method == AUTO:
        found = auto_ranges(model, plan, list(calibration_feeds), percentile=percentile, objective=objective,
                            selection_feeds=None if selection_feeds is None else list(selection_feeds), progress=progress)
        amax, report.selection = found.amax, {**found.figures(), "objective": _objective_text(objective), "on_selection_feeds": selection_feeds is not None}
        report.methods = {t: c.method for t, c in found.choices.items()}
        report.scores = {t: c.scores for t, c in found.choices.items()}
    elif plan.activations:
        stats = collect_statistics(model, calibration_feeds, plan.activations, progress=progress)
        amax = {name: compute_amax(stats[name], method, percentile=percentile) for name in plan.activations}
        report.methods = dict.fromkeys(plan.activations, method)
    quantized_model, report.tensors = insert_qdq(model, plan, amax)
    return QuantizeResult(quantized_model, report)


def _check_something_to_quantize(plan: QdqPlan) -> None:
    """A ModelError when no tensor would get Q/DQ: the "int8" model would be the float one, written
    and judged (SQNR inf) as if quantized."""
    if plan.targets:
        return
    reasons = "; ".join(f"{', '.join(skip.nodes)}: {skip.reason}" for skip in plan.skips[:3])
    more = f" (and {len(plan.skips) - 3} more)" if len(plan.skips) > 3 else ""
    why = reasons + more if reasons else f"no {'/'.join(LINEAR_OPS)} node in the main graph (subgraphs and functions are not quantized)"
    raise ModelError(f"nothing in the model can be quantized: {why}")


def _objective_text(objective: Objective) -> str:
    """What the automatic calibration maximized, for its report."""
    describe = getattr(objective, "describe", None)
    return describe() if describe is not None else "output SQNR (dB)" if objective is output_sqnr_db else getattr(objective, "__name__", "a custom objective")
