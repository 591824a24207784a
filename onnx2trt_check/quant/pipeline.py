"""The post-training int8 pipeline: the float model in, a QDQ model TensorRT builds as it is out.

`quantize_for_tensorrt` is the whole pipeline (the `quantize` command, the `ort-int8` and `trt-int8`
targets and the quantization benchmark use it): a model below opset 13 converted to it (checked
against the original: quant/opset_upgrade.py); fold BN into the convs, as TensorRT does before it
quantizes weights; lift Constant nodes to initializers, so ReLU6's bounds (Constant nodes in PyTorch
exports) are visible to equalization; optional cross-layer equalization; calibration (automatic per
tensor by default) and Q/DQ insertion; then optional bias correction of the QDQ model, layer by
layer, each correction kept only where it lowers the layer's error on held-out feeds.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence

import numpy as np
import onnx
import onnx_ir as ir
from onnx_ir.passes.common import LiftConstantsToInitializersPass

from ..errors import ConfigError
from ..protos import in_deployable_form, node_label
from ..transforms.fold_conv_bn import fold_conv_bn
from . import bias_correction, equalize
from .idle_options import idle_quantizer_options
from .insert_qdq import excluded_by
from .objective import Objective, output_sqnr_db
from .opset_upgrade import upgrade_for_qdq
from .quantize import QuantizeReport, quantize_model

# The ReLU6 swap's effect on the float outputs is measured on this many calibration feeds: enough
# for a figure, and bounded so a large calibration set does not run the model twice over.
SWAP_CHECK_FEEDS = 16


@dataclasses.dataclass(frozen=True)
class Int8Settings:
    """How our int8 artifact is made. Defaults: automatic calibration (per tensor the best of max,
    percentile, entropy and mse on held-out feeds), percentile 99.99 (the percentile method's),
    per-channel weights, no equalization (ReLU6 pairs skipped when it is on), no bias correction,
    nothing excluded."""

    method: str = "auto"
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


def check_settings(settings: Int8Settings) -> None:
    """A ConfigError naming the option for an unknown calibration method or ReLU6 mode, a
    percentile outside (0, 100] or an --exclude pattern that is not a regex."""
    from .ranges import METHODS

    for value, option, choices in ((settings.method, "--calibration-method", ("auto", *METHODS)), (settings.cle_relu6, "--cle-relu6", ("skip", "swap_to_relu"))):
        if value not in choices:
            raise ConfigError(f"{option} {value!r} is unknown; choose from {', '.join(choices)}")
    if not 0.0 < settings.percentile <= 100.0:
        raise ConfigError(f"--percentile {settings.percentile} is outside (0, 100]; pass e.g. 99.99")
    _refuse_idle(settings)
    for pattern in settings.exclude:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"--exclude '{pattern}' is not a valid regex ({exc}); escape it or pass the exact node name") from None


def _refuse_idle(settings: Int8Settings) -> None:
    given = {"--percentile": settings.percentile != Int8Settings.percentile, "--calibration-method": settings.method,
             "--cle": settings.cle, "--cle-relu6": settings.cle_relu6 != Int8Settings.cle_relu6}
    if problem := idle_quantizer_options(given):
        raise ConfigError(problem)


def check_exclude_matches(model: onnx.ModelProto, exclude: Sequence[str]) -> None:
    """A ConfigError for an --exclude pattern that names no node of the model: a typo would leave
    the node quantized and the run green. Labels as in every report (graph_utils.node_label): the
    node's name, else `OpType(first output)`."""
    labels = [node_label(node) for node in model.graph.node]
    for pattern in exclude:
        if not any(excluded_by(label, [pattern]) for label in labels):
            raise ConfigError(f"--exclude '{pattern}' matches no node of the model (its nodes are named like "
                              f"{', '.join(repr(label) for label in labels[:3])}; an unnamed node is OpType(first output)); check the spelling")


def quantize_for_tensorrt(model: onnx.ModelProto, calibration_feeds: Sequence[Mapping[str, np.ndarray]], settings: Int8Settings,
                          *, objective: Objective = output_sqnr_db, selection_feeds: Sequence[Mapping[str, np.ndarray]] | None = None) -> Int8Build:
    """The int8 QDQ model of `model` by `settings`, calibrated on `calibration_feeds`; `objective`
    scores candidate ranges for the automatic calibration on `selection_feeds` (a task objective's
    labelled feeds). Defaults to the worst output SQNR on held-out calibration feeds.
    `model` is not mutated."""
    check_exclude_matches(model, settings.exclude)
    model = in_deployable_form(model)
    prepared, steps = prepare_for_quantization(model, calibration_feeds, settings)
    result = quantize_model(
        prepared, calibration_feeds, method=settings.method, percentile=settings.percentile,
        per_channel=settings.per_channel, exclude=settings.exclude, objective=objective, selection_feeds=selection_feeds,
        progress=True,  # a batch counter on stderr, only on a terminal or for long calibrations
    )
    quantized = result.model
    if settings.bias_correction:
        corrected = bias_correction.correct_bias(prepared, quantized, calibration_feeds)
        steps["bias_correction"] = _correction_figures(corrected.report)
        quantized = corrected.model
    return Int8Build(quantized, result.report, steps)


def prepare_for_quantization(model: onnx.ModelProto, feeds: Sequence[Mapping[str, np.ndarray]], settings: Int8Settings) -> tuple[onnx.ModelProto, dict[str, dict]]:
    """The float model the quantizer sees (at opset 13 or later, BN folded, constants lifted,
    optionally equalized) and each step's figures."""
    model, upgrade = upgrade_for_qdq(model, feeds)
    folded = fold_conv_bn(model)
    steps = {"opset_upgrade": upgrade} if upgrade else {}
    steps["fold_conv_bn"] = {"folded": len(folded.report.matches)}
    # An unchanged result is a copy of the input (the transform contract): keep the input instead,
    # so a model with nothing to fold is not held twice through calibration.
    work = _lift_constants(folded.model if folded.modified else model)
    del folded
    if settings.cle:
        result = equalize.equalize(work, relu6=settings.cle_relu6, check_feeds=feeds[:SWAP_CHECK_FEEDS])
        steps["cle"] = {"pairs": len(result.report.matches), "skipped": [f"{', '.join(s.nodes)}: {s.reason}" for s in result.report.skips], **result.report.figures}
        work = result.model
    return work, steps


def _correction_figures(report) -> dict:
    return {**report.figures, "kept": [f"{', '.join(m.nodes)}: {m.detail}" for m in report.matches],
            "skipped": [f"{', '.join(s.nodes)}: {s.reason}" for s in report.skips]}


def _lift_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    work = ir.from_proto(model)
    lifted = LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0)(work)
    return ir.to_proto(work) if lifted.modified else model  # to_proto copies every weight


def report_figures(build: Int8Build) -> dict:
    """The quantizer's report as JSON-ready figures: tensors quantized with their amax, the method
    (and for auto the method chosen per activation, the score of each candidate there and how the
    choice was made), the preparation steps, and every skipped node with its reason."""
    report = build.report
    activations = {t.name: t.amax for t in report.tensors if t.kind == "activation"}
    weights = {t.name: _amax_summary(t.amax, t.axis) for t in report.tensors if t.kind == "weight"}
    return {
        "method": report.method,
        "tensors_quantized": {"activations": len(activations), "weights": len(weights)},
        "activation_amax": activations,
        "activation_method": dict(report.methods),
        "auto_selection": report.selection and {**report.selection, "scores_db": report.scores},
        "weight_amax": weights,
        "skipped": [{"nodes": list(s.nodes), "reason": s.reason} for s in report.skips],
        "steps": build.steps,
        "summary": _summary(report.method, len(activations), len(weights), report.skips),
    }


def _summary(method: str, activations: int, weights: int, skips) -> str:
    """'auto: 3 activation(s), 3 weight(s) quantized; 2 node(s) left float (...)': the skipped
    nodes (ops no rule quantizes, excluded ones, ...) compute in float in the int8 engine."""
    text = f"{method}: {activations} activation(s), {weights} weight(s) quantized"
    left = sum(len(s.nodes) for s in skips)
    return text + (f"; {left} node(s) left float, each with its reason under 'skipped'" if left else "")


def _amax_summary(amax, axis: int | None) -> dict:
    values = np.atleast_1d(np.asarray(amax, np.float64))
    granularity = f"per-channel (axis {axis})" if axis is not None else "per-tensor"
    return {"granularity": granularity, "channels": int(values.size), "min": float(values.min()), "max": float(values.max())}


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


def bisect_command(model: str, calibration_data, settings: Int8Settings, *, inputs=None, input_shapes: Mapping[str, Sequence[int]] | None = None) -> str:
    """The `onnx2trt-check bisect` command line that builds the same int8 artifact and compares it
    layer by layer on the same feeds, shell-quoted."""
    import os
    import shlex

    words = ["onnx2trt-check", "bisect", model if model != "<ModelProto>" else "MODEL.onnx", "--target", "ort-int8",
             "--calibration-data", os.fspath(calibration_data), "--calibration-method", settings.method]
    words += ["--percentile", f"{settings.percentile:g}"] if settings.percentile != Int8Settings.percentile else []
    words += [flag for flag, on in (("--per-tensor", not settings.per_channel), ("--cle", settings.cle), ("--bias-correction", settings.bias_correction)) if on]
    words += ["--cle-relu6", settings.cle_relu6] if settings.cle and settings.cle_relu6 != Int8Settings.cle_relu6 else []
    words += [w for pattern in settings.exclude for w in ("--exclude", pattern)]
    words += ["--inputs", os.fspath(inputs)] if inputs else []
    words += [w for name, shape in (input_shapes or {}).items() for w in ("--input-shape", f"{name}:{'x'.join(map(str, shape))}")]
    return shlex.join(words)
