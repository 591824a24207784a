"""`ort-int8`: an int8 QDQ model executed by ONNX Runtime on the CPU.

The artifact is the model itself when it already holds Q/DQ nodes (QAT or a quantized export);
its reference is then the model's float counterpart (Q/DQ removed, weights dequantized). Otherwise
the artifact is our quantizer's output from calibration data (quant.pipeline), compared with the
model's own reference.

The feeds it is judged on: the run's inputs when --inputs or --data-loader give real data;
otherwise, with calibration data, a held-out fifth of it (quant.verify.verification_split, the
split `quantize` uses), which the quantizer then does not calibrate on. Random inputs never judge a
calibrated model. ONNX Runtime runs it with every graph optimization but with its Q/DQ as
written (runtime.create_session: ORT's fused int8 kernels saturate on some CPUs), which is the
arithmetic of the QDQ model: an emulation that gives int8 signal on any machine, labelled
onnxruntime, never TensorRT.
"""

from __future__ import annotations

import os
import time
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..context import ReferenceRun
from ..errors import CheckError, CheckFailed, CheckSkipped, first_line
from ..quant.float_counterpart import float_counterpart, has_qdq, integer_ops_reason, non_int8_types, quantizes_activations
from ..quant.verify import VerificationSplit, verification_split
from ..runtime import create_session, output_names, run_feeds
from .base import Target

if TYPE_CHECKING:  # the quantizer is imported where it runs: it imports scipy, and most runs never quantize
    from ..quant.pipeline import Int8Build, Int8Settings

NO_CALIBRATION_REASON = "no calibration data and the model holds no Q/DQ nodes; pass --calibration-data calib.npz"
WEIGHT_ONLY_REASON = ("the model quantizes weights only (no QuantizeLinear on an activation): its float counterpart, the "
                      "reference of a QDQ model, computes the same function; the weight error needs the float original "
                      "(--reference-model ORIGINAL.onnx)")


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


def model_has_qdq(ctx) -> bool:
    return cached(ctx, "has_qdq", lambda: has_qdq(ctx.loaded.proto))


def refuse_integer_ops(ctx) -> None:
    """A model in ONNX Runtime's QOperator or dynamic form fails every int8 item with the reason:
    its Q/DQ (if any) are not the whole quantization, so the float counterpart would be the model
    itself (a pass at SQNR inf), and quantizing it again means nothing."""
    reason = cached(ctx, "integer_ops", lambda: integer_ops_reason(ctx.loaded.proto))
    if reason:
        raise CheckFailed(reason)


def calibration_feeds(ctx) -> list[dict[str, np.ndarray]]:
    """The run's calibration feeds for this model, or a skip with the reason when there are none."""
    path = ctx.options.extra.get("calibration_data")
    if path is None:
        raise CheckSkipped(f"target ort-int8: {NO_CALIBRATION_REASON}")
    return cached(ctx, "calibration_feeds", lambda: ctx.read_feeds(path))


def real_inputs(ctx) -> bool:
    """Whether the run's feeds are real data (--inputs or --data-loader), not generated."""
    return bool(ctx.options.feeds.npz or ctx.options.feeds.data_loader)


def verification(ctx) -> VerificationSplit:
    """The calibration feeds the quantizer sees and the feeds the int8 model is judged on. A model
    with its own Q/DQ is not calibrated: every calibration feed judges it (held_out False)."""
    def compute():
        if model_has_qdq(ctx) and not real_inputs(ctx):
            return VerificationSplit([], calibration_feeds(ctx), False)
        return verification_split(calibration_feeds(ctx), ctx.feeds if real_inputs(ctx) else None)

    return cached(ctx, "verification", compute)


def judged_on_calibration_data(ctx) -> bool:
    """Whether the int8 comparison runs on held-out calibration feeds (no real inputs given)."""
    return ctx.options.extra.get("calibration_data") is not None and not real_inputs(ctx)


def judging_feeds(ctx) -> list:
    return verification(ctx).test if judged_on_calibration_data(ctx) else ctx.feeds


def judging_reference(ctx):
    """The float model's run on the judging feeds (the context's own when those are its feeds)."""
    if not judged_on_calibration_data(ctx):
        return ctx.reference

    def compute():
        started = time.perf_counter()
        session = create_session(ctx.path, optimized=False)
        outputs = run_feeds(session, judging_feeds(ctx))
        return ReferenceRun(output_names(session), outputs, time.perf_counter() - started, model=ctx.loaded.proto)

    return cached(ctx, "judging_reference", compute)


def int8_build(ctx, settings: Int8Settings | None = None) -> Int8Build:
    """Our int8 build of the model under the run's settings (or `settings`), made once."""
    from ..quant.pipeline import quantize_for_tensorrt, settings_from

    settings = settings or settings_from(ctx.options.extra)
    refuse_integer_ops(ctx)
    _ort_runs_or_skip(ctx)
    feeds = verification(ctx).calibration
    try:
        return cached(ctx, f"build:{settings}", lambda: quantize_for_tensorrt(ctx.loaded.proto, feeds, settings))
    except CheckError as exc:  # a model our quantizer cannot take (e.g. opset < 13) is a finding
        raise CheckFailed(f"int8 quantization of the model failed: {exc}") from None


def _ort_runs_or_skip(ctx) -> None:
    """Calibration reads the model's activations in ONNX Runtime: a model it cannot run (an
    invalid graph ORT refuses) gets the reason, not a crash in the quantizer's items."""
    try:
        ctx.onnx_reference  # noqa: B018 (computed once per model; raises what ONNX Runtime raised)
    except Exception as exc:  # named in one line: the same skip reaches pytest items and bisect's message
        raise CheckSkipped(f"no int8 build: it is calibrated on the model's activations, and ONNX Runtime cannot run the model "
                           f"({type(exc).__name__}: {first_line(exc)})") from None


def qdq_reference(ctx):
    """The float counterpart of a QDQ model, run as the reference runs a model (no graph rewrites),
    on the judging feeds."""
    def compute():
        path = ctx.artifact("float", lambda: float_counterpart(ctx.loaded.proto))
        started = time.perf_counter()
        session = create_session(path, optimized=False)
        outputs = run_feeds(session, judging_feeds(ctx))
        return ReferenceRun(output_names(session), outputs, time.perf_counter() - started, model=path)

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
        refuse_integer_ops(ctx)
        if model_has_qdq(ctx) and not quantizes_activations(ctx.loaded.proto):
            # its reference would be the same function: a pass at SQNR inf that measured nothing
            raise CheckSkipped(WEIGHT_ONLY_REASON)
        if model_has_qdq(ctx):
            return ctx.path
        return ctx.artifact("int8", lambda: int8_build(ctx).model)

    def feeds(self, ctx) -> list:
        return judging_feeds(ctx)

    def reference(self, ctx):
        return qdq_reference(ctx) if model_has_qdq(ctx) else judging_reference(ctx)

    def figures(self, ctx) -> dict:
        figures = {"quantized_as": other} if model_has_qdq(ctx) and (other := non_int8_types(ctx.loaded.proto)) else {}
        if not judged_on_calibration_data(ctx):
            calibrated = ctx.options.extra.get("calibration_data") is not None and not model_has_qdq(ctx)
            warning = verification(ctx).overlap_text() if calibrated else ""
            return figures | ({"inputs_warning": warning} if warning else {})
        source = str(ctx.options.extra["calibration_data"])
        if model_has_qdq(ctx):
            return figures | {"inputs": f"the {len(judging_feeds(ctx))} feed(s) of the calibration data '{source}' (the model's own Q/DQ: nothing was calibrated on them)"}
        return {"inputs": verification(ctx).describe(source)}

    def run(self, model_path: str | os.PathLike, feeds) -> list[dict[str, np.ndarray]]:
        return run_feeds(create_session(model_path, optimized=True), feeds)
