"""The TensorRT build family of `pytest --model`: real engine builds that need no GPU.

Items (one per precision, in this order):
  trt::build[fp32]   the model
  trt::build[fp16]   its fp16 artifact (the file trt-fp16 and ort-fp16 deploy)
  trt::build[int8]   its int8 QDQ file: the model itself when it holds Q/DQ, else the int8
                     artifact of `--calibration-data` (left out of a run that has neither, and
                     skipped with that hint for a model without Q/DQ in a run that has one)
each built strongly typed by the selected TensorRT flavour (trt/flavour.py; `--trt-flavour`).
They run by default; an explicit `--target` list keeps those of its trt-* targets only.
Figures: build seconds, engine bytes, flavour and version, the parsed network's layer count, the
optimization profile (dynamic inputs from `--input-shape`/the data). Without any TensorRT the
items skip with the install hint; a build that hits a CUDA call on a machine without a GPU skips
with that reason (TensorRT gave no verdict). Builds run in a worker process (trt/isolated.py): a
crash inside TensorRT fails the item instead of ending the run. `structure::trt_parse` and `structure::trt_ops`
live in core.py.
"""

from __future__ import annotations

from ..context import ModelContext, RunOptions
from ..errors import CheckError, CheckFailed, CheckSkipped, ConfigError
from ..quant.float_counterpart import non_int8_types
from ..targets import get_target
from ..targets.fp16 import fp16_artifact
from ..targets.ort_int8 import model_has_qdq
from ..targets.tensorrt import int8_artifact
from ..trt import flavour, isolated, parse
from . import trt_jobs
from .core import Check
from .options import value

PRECISIONS = ("fp32", "fp16", "int8")
NO_INT8_FILE = "no int8 QDQ file: the model holds no Q/DQ nodes; pass --calibration-data to build the int8 artifact"


def read_options(config) -> dict:
    """`--trt-flavour` and ONNX2TRT_CHECK_TRT: validated (a bad value, or a flavour asked for by
    the option but not installed, is a usage error) and made the run's choice, until the run ends (a process may hold several runs:
    api.check, pytester)."""
    choice = value(config, "trt_flavour", None)
    wanted = flavour.requested(choice)  # also a bad ONNX2TRT_CHECK_TRT: a usage error here, not at collection
    if choice:
        if wanted != "auto":
            found = flavour.probe(wanted)
            if not isinstance(found, flavour.Flavour):
                raise ConfigError(f"--trt-flavour {wanted}: {found}")
    flavour.set_choice(choice)
    config.add_cleanup(lambda: flavour.set_choice(None))
    _refuse_trt_targets_without_tensorrt(value(config, "target"))
    return {"trt_flavour": choice}


def _refuse_trt_targets_without_tensorrt(targets) -> None:
    """A trt-* target asked for by name where no TensorRT imports can neither parse, build nor run:
    every item of it skipped and the run exited 0, a green gate that checked no engine. A usage
    error up front (without a GPU, its builds still run and only its accuracy items skip)."""
    asked = [name for name in targets or () if name in TARGET_PRECISION]
    if asked and (reason := flavour.unavailable_reason()):
        raise ConfigError(f"--target {', '.join(asked)}: {reason}; install TensorRT or drop the target")


# The build item each TensorRT target deploys (trt-best builds the int8 file too).
TARGET_PRECISION = {"trt-fp32": "fp32", "trt-fp16": "fp16", "trt-int8": "int8", "trt-best": "int8"}


def checks(options: RunOptions) -> list[Check]:
    """Every precision by default, int8 only where the run has an int8 file to build (calibration
    data or a model with Q/DQ, as for the ort-int8 target); with an explicit `--target` list, those
    of its trt-* targets (`--target ort` alone asks for no TensorRT engine, so none is built)."""
    if options.targets:
        wanted = {TARGET_PRECISION[t] for t in options.targets if t in TARGET_PRECISION}
    else:
        wanted = {"fp32", "fp16"} | ({"int8"} if get_target("ort-int8").unavailable_reason() is None else set())
    return [Check(f"trt[{precision}]", "build", build_check(precision)) for precision in PRECISIONS if precision in wanted]


def selected_flavour() -> flavour.Flavour:
    """The run's flavour, or a skip with the install hint."""
    try:
        return flavour.select()
    except flavour.TrtUnavailable as error:
        raise CheckSkipped(str(error)) from None


def build_check(precision: str):
    def check(ctx: ModelContext) -> dict:
        __tracebackhide__ = True
        chosen = selected_flavour()
        path, what = onnx_file(ctx, precision)
        try:
            result = trt_jobs.build_job(ctx, chosen, path).result()
        except isolated.TrtCrashed as error:
            raise CheckFailed(f"{precision} {what}: {chosen.label} crashed while parsing or building it ({error})", {"tensorrt": chosen.label}) from None
        figures = {"file": what, **result.figures()}
        if result.ok:
            figures["summary"] = f"[{chosen.label}] {figures['build_seconds']:.2f} s, {figures['engine_bytes']:,} bytes, {figures['network_layers']} layers"
        else:  # no engine: '0.00 s, 0 bytes' read as a build that made one (zoo16)
            figures["summary"] = f"[{chosen.label}] no engine ({figures['network_layers']} layers parsed)"
        figures["summary"] += f"; {what}" if precision == "int8" and model_has_qdq(ctx) else ""
        if result.ok and (retyped := parse.retyped_io(result.parse, ctx.loaded.proto)):  # the deployment reads other types
            figures["retyped_io"] = retyped
            figures["summary"] += "; " + "; ".join(retyped)
        if result.needs_gpu:
            raise CheckSkipped(f"{chosen.label} needs a GPU to build this model (its build made a CUDA call): {result.errors[0][:200]}")
        if not result.ok:
            raise CheckFailed(f"{precision} {what}: {result.failure()}", figures)
        return figures

    return check


def session_plugin(config, options: RunOptions):
    """The TensorRT calls queued ahead of their items (trt_jobs.py)."""
    return trt_jobs.session_plugin(config, latency=bool(value(config, "latency", False)))


def onnx_file(ctx: ModelContext, precision: str):
    """The ONNX file the precision deploys, and a word for the report."""
    try:
        if precision == "fp32":
            return ctx.path, "the model"
        if precision == "fp16":
            return fp16_artifact(ctx), "the fp16 artifact"
        if model_has_qdq(ctx):
            other = non_int8_types(ctx.loaded.proto)
            return ctx.path, f"the model's own Q/DQ ({', '.join(other)}, not int8)" if other else "the model's own Q/DQ"
        if not ctx.options.extra.get("calibration_data"):
            raise CheckSkipped(NO_INT8_FILE)
        return int8_artifact(ctx), "the int8 QDQ artifact"
    except CheckError as error:
        raise CheckFailed(f"the {precision} file cannot be made: {error}") from None
