"""The TensorRT targets of the registry: trt-fp32, trt-fp16, trt-int8, trt-best (engine "tensorrt").

Each one decides, per model, which ONNX file to build and how (`plan_build`, a pure function of the
TensorRT major version and what is available), then hands the build to targets.trt.TrtTarget
(Polygraphy loaders). The decisions (docs: "Precision is an ONNX artifact"):

* trt-fp32: the model, no precision flag.
* trt-fp16: the fp16 artifact (the file ort-fp16 and cpu-fp16-emu check), strongly typed, on
  TensorRT 10 and 11 alike: the artifact carries the fp32 fallback list, which the builder's fp16
  flag would ignore. On TensorRT 10, `--trt-flags` builds the fp32 model with the fp16 flag instead.
* trt-int8: a QDQ file, strongly typed: the model when it has Q/DQ nodes, else the int8 artifact of
  the ort-int8 target (targets/ort_int8.py: the quantizer's output over `--calibration-data`, the
  same file ort-int8 runs). A model with its own Q/DQ is compared with its float counterpart. On TensorRT 10,
  `--trt-flags` builds the fp32 model with the int8 flag and Polygraphy's Calibrator over the
  calibration data (implicit quantization).
* trt-best: TensorRT 10 only: the QDQ file (or, with `--trt-flags`, the calibrated fp32 model)
  with the fp16 and int8 builder flags, weakly typed, so TensorRT picks fp16 for the layers outside
  Q/DQ. TensorRT 11 builds strongly typed networks only, where "best" would need an fp16+QDQ
  artifact that the suite does not build: skipped there with that reason.

Nothing here imports tensorrt: unavailable_reason() is targets.trt.trt_unavailable_reason(), and
the core skips the item with it before any plan is made.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..data import source_file
from ..errors import CheckSkipped
from .base import Target
from .fp16 import fp16_artifact
from .ort_int8 import int8_build, model_has_qdq, qdq_reference
from .trt import (
    TrtBuildOptions,
    TrtTarget,
    describe_path,
    file_sha256,
    installed_flavour,
    trt_unavailable_reason,
)

NO_QDQ_ARTIFACT = "no QDQ artifact: pass --calibration-data"
NO_CALIBRATION = "no calibration data for TensorRT's int8 calibrator: pass --calibration-data"
TOLERANCE_PROFILE = {"fp32": "fp32", "fp16": "fp16", "int8": "int8", "best": "int8"}


@dataclasses.dataclass(frozen=True, kw_only=True)
class BuildInputs:
    """What the plan depends on besides the precision.

    `trt_major`: the installed TensorRT's major version; `flavour`: "tensorrt" or "tensorrt-rtx"
    (strongly typed only, like TensorRT 11). `model_has_qdq`: the model has Q/DQ nodes.
    `int8_artifact`: an int8 QDQ artifact can be built (quantizer and calibration data present).
    `calibration`: calibration data was given. `use_flags`: `--trt-flags` asked for TensorRT 10's
    builder-flag path. All default to the plain case: TensorRT 10, nothing available, no flags.
    """

    trt_major: int = 10
    flavour: str = "tensorrt"
    model_has_qdq: bool = False
    int8_artifact: bool = False
    calibration: bool = False
    use_flags: bool = False

    @property
    def strongly_typed_only(self) -> bool:
        return self.flavour == "tensorrt-rtx" or self.trt_major >= 11

    @property
    def product(self) -> str:
        return "TensorRT-RTX" if self.flavour == "tensorrt-rtx" else f"TensorRT {self.trt_major}"

    def options(self, precision: str, **build) -> TrtBuildOptions:
        return TrtBuildOptions(precision=precision, trt_major=self.trt_major, flavour=self.flavour, **build)


@dataclasses.dataclass(frozen=True)
class BuildPlan:
    """Which file to build ("model", "fp16" or "int8" artifact) with which options; or, when
    `skip_reason` is set, why this target cannot be built for this model."""

    artifact: str = ""
    options: TrtBuildOptions | None = None
    calibrated: bool = False
    skip_reason: str = ""

    @property
    def path(self) -> str:
        return describe_path(self.options, calibrated=self.calibrated) if self.options else ""


def plan_build(precision: str, inputs: BuildInputs) -> BuildPlan:
    """The build for trt-<precision> (see the module docstring for each decision)."""
    planners = {"fp32": _plan_fp32, "fp16": _plan_fp16, "int8": _plan_int8, "best": _plan_best}
    return planners[precision](inputs)


def _plan_fp32(inputs: BuildInputs) -> BuildPlan:
    return BuildPlan("model", inputs.options("fp32"))


def _plan_fp16(inputs: BuildInputs) -> BuildPlan:
    if inputs.use_flags:
        if inputs.strongly_typed_only:
            return BuildPlan(skip_reason=_no_flags(inputs))
        return BuildPlan("model", inputs.options("fp16"))
    return BuildPlan("fp16", inputs.options("fp16", strongly_typed=True))


def _plan_int8(inputs: BuildInputs) -> BuildPlan:
    strongly_typed = inputs.options("int8", strongly_typed=True)
    if inputs.model_has_qdq:
        return BuildPlan("model", strongly_typed)
    if inputs.use_flags:
        return _calibrated_flag_plan("int8", inputs)
    if inputs.int8_artifact:
        return BuildPlan("int8", strongly_typed)
    return BuildPlan(skip_reason=NO_QDQ_ARTIFACT)


def _plan_best(inputs: BuildInputs) -> BuildPlan:
    if inputs.strongly_typed_only:
        return BuildPlan(
            skip_reason=f"{inputs.product} builds strongly typed networks only; trt-best would need "
            "an fp16+QDQ artifact, which is not built: use trt-fp16 and trt-int8"
        )
    flags = inputs.options("best")
    if inputs.model_has_qdq:
        return BuildPlan("model", flags)
    if inputs.use_flags:
        return _calibrated_flag_plan("best", inputs)
    if inputs.int8_artifact:
        return BuildPlan("int8", flags)
    return BuildPlan(skip_reason=NO_QDQ_ARTIFACT)


def _calibrated_flag_plan(precision: str, inputs: BuildInputs) -> BuildPlan:
    """TensorRT 10 implicit int8: the fp32 model, the int8 flag, Polygraphy's Calibrator."""
    if inputs.strongly_typed_only:
        return BuildPlan(skip_reason=_no_flags(inputs))
    if not inputs.calibration:
        return BuildPlan(skip_reason=NO_CALIBRATION)
    return BuildPlan("model", inputs.options(precision), calibrated=True)


def _no_flags(inputs: BuildInputs) -> str:
    return f"{inputs.product} has no builder precision flags or calibrator; drop --trt-flags to build the ONNX artifacts"


def int8_artifact(ctx) -> Path:
    """The int8 QDQ artifact, built once by the ort-int8 target's quantizer (the same file ort-int8 runs)."""
    return ctx.artifact("int8", lambda: int8_build(ctx).model)


class TensorRtTarget(Target):
    """trt-<precision>: a TensorRT engine built as `plan_build` decides, run by Polygraphy's TrtRunner.

    `artifact(ctx)` makes the plan and remembers the build for that file, so `run(path, feeds)`
    (which gets no context) builds exactly what was planned."""

    engine = "tensorrt"

    def __init__(self, trt_precision: str, description: str):
        self.trt_precision = trt_precision
        self.name = f"trt-{trt_precision}"
        self.precision = TOLERANCE_PROFILE[trt_precision]
        self.description = description
        self._builds: dict[str, TrtTarget] = {}
        self._paths: dict[str, str] = {}  # model -> describe_path text of its engine's build

    def unavailable_reason(self) -> str | None:
        return trt_unavailable_reason()

    def plan(self, ctx) -> BuildPlan:
        """The plan for ctx's model on the selected TensorRT flavour (imports it)."""
        major, key = installed_trt()
        return plan_build(self.trt_precision, build_inputs(ctx, trt_major=major, flavour=key))

    def artifact(self, ctx) -> Path:
        plan = self.plan(ctx)
        path, build = self.prepare(ctx, plan=plan, engine_cache=True)
        self._builds[os.fspath(path)] = build
        self._paths[os.fspath(ctx.path)] = plan.path
        return path

    def figures(self, ctx) -> dict:
        """Which build path the model's engine took (strongly typed artifact, or TensorRT 10's
        builder flags), for the accuracy item's figures."""
        path = self._paths.get(os.fspath(ctx.path))
        return {"path": path} if path else {}

    def prepare(self, ctx, *, plan: BuildPlan, engine_cache: bool) -> tuple[Path, TrtTarget]:
        """The file `plan` builds and the TrtTarget that builds it. Skips (CheckSkipped) a plan with
        a skip reason."""
        if plan.skip_reason:
            raise CheckSkipped(f"{self.name}: {plan.skip_reason}")
        extra = ctx.options.extra
        options = _with_calibration_id(plan.options, extra) if plan.calibrated else plan.options
        build = TrtTarget(
            options,
            data_loader=calibration_feeds(ctx) if plan.calibrated else None,
            engine_cache_dir=extra.get("engine_cache") if engine_cache else None,
        )
        return planned_artifact(ctx, plan.artifact), build

    def reference(self, ctx):
        """A model with its own Q/DQ is compared with its float counterpart (as ort-int8 does)."""
        if self.trt_precision in ("int8", "best") and model_has_qdq(ctx):
            return qdq_reference(ctx)
        return ctx.reference

    def run(self, model_path: str | os.PathLike, feeds) -> list[dict[str, np.ndarray]]:
        return self._builds[os.fspath(model_path)].run(model_path, feeds)

    def run_exposed(self, model_path: str | os.PathLike, feeds):
        """Bisection: the planned build with every tensor marked (see TrtTarget.run_exposed)."""
        return self._builds[os.fspath(model_path)].run_exposed(model_path, feeds)

    def timed_runner(self, model_path: str | os.PathLike, feed):
        """Latency: the planned build's engine, activated once (see TrtTarget.timed_runner)."""
        return self._builds[os.fspath(model_path)].timed_runner(model_path, feed)


def installed_trt() -> tuple[int, str]:
    """(major version, flavour key) of the selected TensorRT flavour (imports it)."""
    chosen = installed_flavour()
    return chosen.major, chosen.key


def build_inputs(ctx, *, trt_major: int, flavour: str = "tensorrt") -> BuildInputs:
    extra = ctx.options.extra
    calibration = bool(extra.get("calibration_data"))
    return BuildInputs(
        trt_major=trt_major,
        flavour=flavour,
        model_has_qdq=model_has_qdq(ctx),
        int8_artifact=calibration,
        calibration=calibration,
        use_flags=bool(extra.get("trt_flags")),
    )


def planned_artifact(ctx, artifact: str) -> Path:
    """The ONNX file of a plan: the model, the fp16 artifact, or the ort-int8 target's int8 artifact."""
    if artifact == "fp16":
        return fp16_artifact(ctx)
    if artifact == "int8":
        return int8_artifact(ctx)
    return ctx.path


def calibration_feeds(ctx) -> list[dict[str, np.ndarray]]:
    """The `--calibration-data` feeds, for Polygraphy's Calibrator (never the check inputs)."""
    return ctx.read_feeds(ctx.options.extra["calibration_data"])


def _with_calibration_id(options: TrtBuildOptions, extra: Mapping[str, object]) -> TrtBuildOptions:
    # A calibrated engine is cached only under the name of its calibration data.
    return dataclasses.replace(options, calibration_id=file_sha256(source_file(extra["calibration_data"])))


TRT_TARGETS = (
    TensorRtTarget("fp32", "TensorRT fp32 engine of the model (no precision flags)"),
    TensorRtTarget("fp16", "TensorRT engine of the fp16 artifact, strongly typed (TensorRT 10 with --trt-flags: fp16 builder flag on the fp32 model)"),
    TensorRtTarget("int8", "TensorRT engine of a QDQ file (the model's own Q/DQ or the int8 artifact), strongly typed (TensorRT 10 with --trt-flags: int8 flag and Polygraphy's Calibrator)"),
    TensorRtTarget("best", "TensorRT 10 engine of the QDQ file with the fp16 and int8 builder flags (TensorRT picks fp16 outside Q/DQ)"),
)
