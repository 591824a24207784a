"""`ort-int8`: an int8 QDQ model executed by ONNX Runtime on the CPU.

The artifact is the model itself when it already holds Q/DQ nodes (QAT or a quantized export);
its reference is then the model's float counterpart (Q/DQ removed, weights dequantized). Otherwise
the artifact is our quantizer's output from calibration data, compared with the model's own
reference. ONNX Runtime runs it with every graph optimization, which turns the Q/DQ groups into its
int8 kernels: an emulation that gives int8 signal on any machine, labelled onnxruntime, never
TensorRT.

`quantize_for_tensorrt` is the whole post-training pipeline (the CLI command and the benchmark use
it as well): fold BN into the convs, as TensorRT does before it quantizes weights; lift Constant
nodes to initializers, so ReLU6's bounds (Constant nodes in PyTorch exports) are visible to
equalization; optional cross-layer equalization; optional bias correction of the layers the plan
quantizes; then calibration and Q/DQ insertion.
"""

from __future__ import annotations

import dataclasses
import os
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
from onnx_ir.passes.common import LiftConstantsToInitializersPass

from ..errors import CheckError
from ..quant import bias_correction, equalize
from ..quant.float_counterpart import float_counterpart, has_qdq
from ..quant.insert_qdq import plan_qdq
from ..quant.quantize import QuantizeReport, quantize_model
from ..runtime import create_session, output_names, run_feeds
from ..transforms.fold_conv_bn import fold_conv_bn
from ..transforms.graph_utils import node_label
from .base import Target

NO_CALIBRATION_REASON = "no calibration data and the model holds no Q/DQ nodes; pass --calibration-data calib.npz"
# The ReLU6 swap's effect on the float outputs is measured on this many calibration feeds: enough
# for a figure, and bounded so a large calibration set does not run the model twice over.
SWAP_CHECK_FEEDS = 16


@dataclasses.dataclass(frozen=True)
class Int8Settings:
    """How our int8 artifact is made. Defaults: entropy calibration (TensorRT's), percentile 99.99
    (used by "percentile" only), per-channel weights, no equalization (ReLU6 pairs skipped when it
    is on), no bias correction, nothing excluded."""

    method: str = "entropy"
    percentile: float = 99.99
    per_channel: bool = True
    cle: bool = False
    cle_relu6: str = "skip"
    bias_correction: bool = False
    exclude: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """Short name of the configuration, e.g. 'percentile-99.99 per-tensor+cle+bc'."""
        method = f"percentile-{self.percentile:g}" if self.method == "percentile" else self.method
        extras = ["per-channel" if self.per_channel else "per-tensor"]
        extras += ["cle"] * self.cle + ["bc"] * self.bias_correction
        return f"{method} {'+'.join(extras)}"


@dataclasses.dataclass
class Int8Build:
    """Our int8 QDQ model, the quantizer's report, and the figures of each preparation step."""

    model: onnx.ModelProto
    report: QuantizeReport
    steps: dict[str, dict]


def quantize_for_tensorrt(model: onnx.ModelProto, calibration_feeds: Sequence[Mapping[str, np.ndarray]], settings: Int8Settings) -> Int8Build:
    """The int8 QDQ model of `model` by `settings`, calibrated on `calibration_feeds`. `model` is
    not mutated."""
    prepared, steps = prepare_for_quantization(model, calibration_feeds, settings)
    result = quantize_model(
        prepared, calibration_feeds, method=settings.method, percentile=settings.percentile,
        per_channel=settings.per_channel, exclude=settings.exclude,
        progress=True,  # a batch counter on stderr, only on a terminal or for long calibrations
    )
    return Int8Build(result.model, result.report, steps)


def prepare_for_quantization(model: onnx.ModelProto, feeds: Sequence[Mapping[str, np.ndarray]], settings: Int8Settings) -> tuple[onnx.ModelProto, dict[str, dict]]:
    """The float model the quantizer sees (BN folded, constants lifted, optionally equalized and
    bias-corrected) and each step's figures."""
    folded = fold_conv_bn(model)
    steps = {"fold_conv_bn": {"folded": len(folded.report.matches)}}
    work = _lift_constants(folded.model)
    if settings.cle:
        result = equalize.equalize(work, relu6=settings.cle_relu6, check_feeds=feeds[:SWAP_CHECK_FEEDS])
        steps["cle"] = {"pairs": len(result.report.matches), "skipped": [f"{', '.join(s.nodes)}: {s.reason}" for s in result.report.skips], **result.report.figures}
        work = result.model
    if settings.bias_correction:
        quantizer = bias_correction.per_channel_int8 if settings.per_channel else bias_correction.per_tensor_int8
        result = bias_correction.correct_bias(work, feeds, weight_quantizer=quantizer, nodes=_weight_quantized_layers(work, settings))
        steps["bias_correction"] = {"layers": len(result.report.matches)}
        work = result.model
    return work, steps


def _lift_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    work = ir.from_proto(model)
    LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0)(work)
    return ir.to_proto(work)


def _weight_quantized_layers(model: onnx.ModelProto, settings: Int8Settings) -> list[str]:
    """Labels (as bias_correction names nodes) of the Conv/Gemm whose weights the quantizer will
    quantize: correcting an excluded layer would add the error it corrects for."""
    plan = plan_qdq(model, per_channel=settings.per_channel, exclude=settings.exclude)
    nodes = list(ir.from_proto(model).graph)
    indices = dict.fromkeys(t.node for t in plan.targets if t.kind == "weight")
    return [node_label(nodes[i]) for i in indices if nodes[i].op_type in ("Conv", "Gemm")]


def report_figures(build: Int8Build) -> dict:
    """The quantizer's report as JSON-ready figures: tensors quantized with their amax, the method,
    the preparation steps, and every skipped node with its reason."""
    report = build.report
    activations = {t.name: t.amax for t in report.tensors if t.kind == "activation"}
    weights = {t.name: _amax_summary(t.amax, t.axis) for t in report.tensors if t.kind == "weight"}
    return {
        "method": report.method,
        "tensors_quantized": {"activations": len(activations), "weights": len(weights)},
        "activation_amax": activations,
        "weight_amax": weights,
        "skipped": [{"nodes": list(s.nodes), "reason": s.reason} for s in report.skips],
        "steps": build.steps,
    }


def _amax_summary(amax, axis: int | None) -> dict:
    values = np.atleast_1d(np.asarray(amax, np.float64))
    granularity = f"per-channel (axis {axis})" if axis is not None else "per-tensor"
    return {"granularity": granularity, "channels": int(values.size), "min": float(values.min()), "max": float(values.max())}


# ---------------------------------------------------------------- per-model state of a run

# Per ModelContext, computed once: the calibration feeds, our build, the QDQ reference. Weak keys,
# so the plugin releasing a model's context releases them too.
_PER_MODEL: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def cached(ctx, key: str, compute):
    """`compute()` once per model context and key."""
    store = _PER_MODEL.setdefault(ctx, {})
    if key not in store:
        store[key] = compute()
    return store[key]


def settings_from(extra: Mapping[str, object]) -> Int8Settings:
    """The Int8Settings of a run from the quant family's options (defaults where absent)."""
    defaults = Int8Settings()
    return Int8Settings(
        method=extra.get("calibration_method") or defaults.method,
        percentile=float(extra.get("calibration_percentile") or defaults.percentile),
        per_channel=not extra.get("per_tensor", False),
        cle=bool(extra.get("cle", False)),
        cle_relu6=extra.get("cle_relu6") or defaults.cle_relu6,
        bias_correction=bool(extra.get("bias_correction", False)),
        exclude=tuple(extra.get("quant_exclude") or ()),
    )


def model_has_qdq(ctx) -> bool:
    return cached(ctx, "has_qdq", lambda: has_qdq(ctx.loaded.proto))


def calibration_feeds(ctx) -> list[dict[str, np.ndarray]]:
    """The run's calibration feeds for this model, or a skip with the reason when there are none."""
    path = ctx.options.extra.get("calibration_data")
    if path is None:
        from ..checks import (
            CheckSkipped,  # checks imports the target registry: import at use
        )

        raise CheckSkipped(f"target ort-int8: {NO_CALIBRATION_REASON}")
    from ..data import read_feeds

    return cached(ctx, "calibration_feeds", lambda: read_feeds(path, ctx.specs))


def int8_build(ctx, settings: Int8Settings | None = None) -> Int8Build:
    """Our int8 build of the model under the run's settings (or `settings`), made once."""
    settings = settings or settings_from(ctx.options.extra)
    feeds = calibration_feeds(ctx)
    try:
        return cached(ctx, f"build:{settings}", lambda: quantize_for_tensorrt(ctx.loaded.proto, feeds, settings))
    except CheckError as exc:  # a model our quantizer cannot take (e.g. opset < 13) is a finding
        from ..checks import CheckFailed

        raise CheckFailed(f"int8 quantization of the model failed: {exc}") from None


def qdq_reference(ctx):
    """The float counterpart of a QDQ model, run as the reference runs a model (no graph rewrites)."""
    from ..context import (
        ReferenceRun,  # context imports the target registry: import at use
    )

    def compute():
        path = ctx.artifact("float", lambda: float_counterpart(ctx.loaded.proto))
        started = time.perf_counter()
        session = create_session(path, optimized=False)
        outputs = run_feeds(session, ctx.feeds)
        return ReferenceRun(output_names(session), outputs, time.perf_counter() - started)

    return cached(ctx, "qdq_reference", compute)


class OrtInt8Target(Target):
    """`ort-int8`. Available when the run has calibration data or a model with Q/DQ nodes (the
    quant family tells it with `configure`); a model of a run where neither holds is skipped."""

    name = "ort-int8"
    engine = "onnxruntime"  # an emulation of int8 execution: never shown as a TensorRT figure
    description = "int8 QDQ model on ONNX Runtime CPU (ours from calibration, or the model's own Q/DQ)"
    precision = "int8"

    def __init__(self):
        self._reason: str | None = NO_CALIBRATION_REASON

    def configure(self, *, calibration_data: bool, qdq_model: bool) -> None:
        """Whether this run has calibration data, and whether any of its models holds Q/DQ nodes."""
        self._reason = None if calibration_data or qdq_model else NO_CALIBRATION_REASON

    def unavailable_reason(self) -> str | None:
        return self._reason

    def artifact(self, ctx) -> Path:
        if model_has_qdq(ctx):
            return ctx.path
        return ctx.artifact("int8", lambda: int8_build(ctx).model)

    def reference(self, ctx):
        return qdq_reference(ctx) if model_has_qdq(ctx) else ctx.reference

    def run(self, model_path: str | os.PathLike, feeds) -> list[dict[str, np.ndarray]]:
        return run_feeds(create_session(model_path, optimized=True), feeds)
