"""fp16 on the CPU: the deployed fp16 artifact in ONNX Runtime (`ort-fp16`) and an fp16 storage
emulation (`cpu-fp16-emu`). Neither is TensorRT, and neither figure is labelled as TensorRT's.

Why two targets. ONNX Runtime's CPU provider has no fp16 kernels for most ops (Conv, MatMul, Gemm,
Add, Relu, Reshape, Flatten, ...): it wraps each in casts, computes in fp32, and then removes the
cast pairs it inserted itself, so an fp16 tensor between two such ops is never materialized. Run in
ORT, the fp16 artifact therefore shows fp16 weight rounding and whether the file runs at all, not
activation overflow. The emulation puts explicit Cast(fp16)->Cast(fp32) round trips on every edge
where the artifact holds an fp16 value; ORT keeps casts that are in the graph (verified by the
tests: a planted activation above 65504 becomes inf), so storage rounding and overflow show.

The artifact is built once per model by precision.fp16.convert_to_fp16, its fp32 fallback list
driven by the check inputs or by `--fp16-calibration-data`; see `Fp16Settings`.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import weakref
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import onnx_ir.passes.common as ir_passes

from ..errors import CheckError, CheckFailed, CheckSkipped, first_line
from ..precision.fp16 import Fp16Result, _typed_named_copy, convert_to_fp16, not_applicable
from ..runtime import run_model
from .base import Target
from .fp16_bodies import emulate_bodies

FP16_ARTIFACT = "fp16"
EMULATION_ARTIFACT = "fp16-emu"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Fp16Settings:
    """How the fp16 artifact is built.

    `calibration_data` is a .npz whose feeds drive the data-driven fallback. Defaults to None: the
    check inputs drive it. `block_nodes` are node names kept in fp32. Defaults to none. `fallback`
    off converts without the data-driven fallback and without the default sensitive-op list (only
    `block_nodes` and the ops the converter cannot convert stay fp32). Defaults to True.
    """

    calibration_data: Path | None = None
    block_nodes: tuple[str, ...] = ()
    fallback: bool = True

    @classmethod
    def from_extra(cls, extra: Mapping[str, object]) -> Fp16Settings:
        """From RunOptions.extra (the option dests of the precision family); absent keys take defaults."""
        data = extra.get("fp16_calibration_data")
        return cls(
            calibration_data=Path(data) if data else None,
            block_nodes=tuple(extra.get("fp16_block") or ()),
            fallback=not extra.get("fp16_no_fallback", False),
        )

    def describe_fallback(self) -> str:
        if not self.fallback:
            return "off (--fp16-no-fallback): no data-driven fallback, no sensitive-op list"
        source = f"npz:{self.calibration_data}" if self.calibration_data else "the check inputs"
        return f"data-driven over {source}, plus the default sensitive ops"


def convert_with_settings(model: onnx.ModelProto, feeds, settings: Fp16Settings) -> Fp16Result:
    """convert_to_fp16 as `settings` ask; `feeds` drive the fallback unless it is off."""
    if not settings.fallback:
        return convert_to_fp16(model, None, block_ops=(), block_nodes=settings.block_nodes)
    return convert_to_fp16(model, feeds, block_nodes=settings.block_nodes)


# One conversion per model context (the report item and both targets share it); weak, so a model's
# conversion is released with its context.
_CONVERSIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def fp16_conversion(ctx) -> Fp16Result:
    """The fp16 conversion of ctx's model under the run's settings, computed once per context."""
    if ctx not in _CONVERSIONS:
        reason = not_applicable(ctx.loaded.proto)
        if reason:
            raise CheckSkipped(f"no fp16 artifact: {reason}")
        settings = Fp16Settings.from_extra(ctx.options.extra)
        if settings.fallback:
            _ort_runs_or_skip(ctx)
        feeds = ctx.read_feeds(settings.calibration_data, option="--fp16-calibration-data") if settings.calibration_data else ctx.feeds
        _CONVERSIONS[ctx] = _collected(convert_with_settings(ctx.loaded.proto, feeds, settings))
    return _CONVERSIONS[ctx]


def _ort_runs_or_skip(ctx) -> None:
    """The data-driven fallback runs the model in ONNX Runtime: a model it cannot run (a bfloat16
    MatMul on the CPU) gets the reason, not an ONNX Runtime traceback in three items."""
    try:
        ctx.onnx_reference  # noqa: B018 (computed once per model; raises what ONNX Runtime raised)
    except Exception as exc:  # named in one line: the same skip reaches pytest items and bisect's message
        raise CheckSkipped(f"no fp16 artifact: its fp32 fallback is chosen on the model's activations, and ONNX Runtime cannot run the "
                           f"model ({type(exc).__name__}: {first_line(exc)}); --fp16-no-fallback builds it without them") from None


def fp16_artifact(ctx) -> Path:
    """The saved fp16 artifact: the file a strongly typed TensorRT build deploys."""
    return ctx.artifact(FP16_ARTIFACT, lambda: fp16_conversion(ctx).model)


def emulation_artifact(ctx) -> Path:
    return ctx.artifact(EMULATION_ARTIFACT, lambda: _collected(fp16_storage_emulation(ctx.loaded.proto, fp16_conversion(ctx).model)))


def _collected(result):
    """`result`, once the garbage of building it is gone. The conversion and the emulation work on
    onnx-ir models, whose graphs are reference cycles (nodes and values point at each other), so
    they outlive the call until Python's next full collection, with the weight arrays they hold:
    1.5x the model after a conversion, in memory while the target's session is built next."""
    gc.collect()
    return result


def _check_something_converted(ctx) -> None:
    """A skip when the artifact holds no fp16 node (float64 or integer compute, or all in the
    fallback): it is the fp32 model, and its comparison would pass at SQNR inf measuring nothing."""
    if not fp16_conversion(ctx).report.converted_ops:
        raise CheckSkipped("the fp16 artifact converts no node to fp16 (the model computes in float64 or integers, or every node is in "
                           "the fp32 fallback): it is the fp32 model, which the fp32 targets check")


def _as_check_failure(error: CheckError):
    """A bad --fp16-block name or calibration file fails this model's item with the one-line message (pytest refuses
    both when the model loads, pytest_plugin/precision.check_model; this covers the other callers)."""
    return CheckFailed(f"the fp16 artifact cannot be built: {error}")


@dataclasses.dataclass(frozen=True)
class Fp16Edges:
    """Where the artifact holds fp16 values: (node name, input index) pairs and graph output indices."""

    inputs: frozenset[tuple[str, int]]
    outputs: frozenset[int]


def fp16_edges(artifact: onnx.ModelProto, node_names: set[str]) -> Fp16Edges:
    """The inputs of the nodes named in `node_names` (the original model's nodes) and the graph
    outputs that read an fp16 value in `artifact`: an fp16 tensor, or one cast up from fp16 by a
    cast the converter added (what a blocked node reads from a converted producer)."""
    graph = _typed(ir.from_proto(artifact)).graph
    inputs = {
        (node.name, index)
        for node in graph
        if node.name in node_names
        for index, value in enumerate(node.inputs)
        if _reads_fp16(value, node_names)
    }
    outputs = {index for index, value in enumerate(graph.outputs) if _reads_fp16(value, node_names)}
    return Fp16Edges(frozenset(inputs), frozenset(outputs))


def _typed(model: ir.Model) -> ir.Model:
    if any(value.dtype is None for node in model.graph for value in node.outputs if value.name):
        model = ir_passes.ShapeInferencePass()(model).model
    return model


def _reads_fp16(value: ir.Value | None, node_names: set[str]) -> bool:
    if value is None:
        return False
    if value.dtype == ir.DataType.FLOAT16:
        return True
    producer = value.producer()
    return (
        producer is not None
        and producer.op_type == "Cast"
        and producer.name not in node_names
        and producer.inputs[0] is not None
        and producer.inputs[0].dtype == ir.DataType.FLOAT16
    )


def fp16_storage_emulation(model: onnx.ModelProto, artifact: onnx.ModelProto) -> onnx.ModelProto:
    """The fp32 `model` with Cast(fp16)->Cast(fp32) on every edge where `artifact` (its fp16
    conversion by convert_to_fp16) holds an fp16 value; fp32-fallback edges stay exact.

    Nodes are matched by the names convert_to_fp16 gives (it names unnamed nodes the same way).
    Loop/If/Scan bodies by their tensors' types in the artifact (fp16_bodies). The input model is not mutated."""
    emulation = _typed_named_copy(model)
    edges = fp16_edges(artifact, {node.name for node in emulation.graph})
    rounded: dict[ir.Value, ir.Value] = {}

    def rounded_copy(value: ir.Value) -> ir.Value:
        if value.dtype != ir.DataType.FLOAT:
            return value  # fp16 in the model itself (a Cast to fp16 inside): stored so already, nothing to emulate
        if value not in rounded:
            weight = _is_float_weight(value)
            rounded[value] = _rounded_weight(emulation.graph, value) if weight else _append_round_trip(emulation.graph, value)
        return rounded[value]

    for node in list(emulation.graph):
        for index, value in enumerate(node.inputs):
            if (node.name, index) in edges.inputs and value is not None:
                node.replace_input_with(index, rounded_copy(value))
    for index in sorted(edges.outputs):
        _round_graph_output(emulation.graph, index, rounded_copy)
    _drop_unread_weights(emulation.graph, [value for value in rounded if _is_float_weight(value)])
    emulation.graph.sort()
    return emulate_bodies(ir.to_proto(emulation), artifact)


def _is_float_weight(value: ir.Value) -> bool:
    """An fp32 initializer no feed can override (not a graph input)."""
    return value.is_initializer() and not value.is_graph_input() and value.const_value is not None and value.dtype == ir.DataType.FLOAT


def _rounded_weight(graph: ir.Graph, value: ir.Value) -> ir.Value:
    """The weight as fp16 storage gives it back, stored as an fp32 initializer, instead of a
    Cast(fp16)->Cast(fp32) pair that ONNX Runtime would compute at every run, with both casts'
    results in memory at once (1.5x the weight: the peak of the cpu-fp16-emu item on a model of
    large weights). Rounded when the file is written (a LazyTensor, evaluated by ir.to_proto one
    weight at a time, not cached), so no second copy of every weight is held. numpy's float32 ->
    float16 cast rounds as ORT's Cast does (to nearest even, subnormals kept, inf beyond 65504;
    tests/test_target_fp16.py holds them equal bit for bit)."""
    source = value.const_value

    def stored() -> ir.Tensor:
        with np.errstate(over="ignore"):
            return ir.tensor(source.numpy().astype(np.float16).astype(np.float32))

    name = f"{value.name}.fp16_stored"
    lazy = ir.LazyTensor(stored, dtype=ir.DataType.FLOAT, shape=source.shape, name=name)
    rounded = ir.Value(name=name, type=ir.TensorType(ir.DataType.FLOAT), shape=value.shape, const_value=lazy)
    graph.register_initializer(rounded)
    return rounded


def _drop_unread_weights(graph: ir.Graph, weights: list[ir.Value]) -> None:
    """Weights every reader of which now reads the rounded copy: the file keeps only that copy."""
    for value in weights:
        if not value.uses() and not value.is_graph_output():
            graph.initializers.pop(value.name)


def _append_round_trip(graph: ir.Graph, value: ir.Value) -> ir.Value:
    """Cast(value, fp16) -> Cast(fp32): the value as fp16 storage gives it back (rounded, and inf
    beyond 65504)."""
    half = ir.node("Cast", [value], {"to": int(ir.DataType.FLOAT16)}, name=f"{value.name}/fp16_storage/to_fp16")
    back = ir.node("Cast", half.outputs, {"to": int(ir.DataType.FLOAT)}, name=f"{value.name}/fp16_storage/to_fp32")
    for cast, dtype, suffix in ((half, ir.DataType.FLOAT16, "fp16"), (back, ir.DataType.FLOAT, "fp16_stored")):
        cast.outputs[0].name = f"{value.name}.{suffix}"
        cast.outputs[0].type = ir.TensorType(dtype)
        cast.outputs[0].shape = value.shape
    graph.extend([half, back])
    return back.outputs[0]


def _round_graph_output(graph: ir.Graph, index: int, rounded_copy) -> None:
    """The graph output keeps its name and now carries the rounded value."""
    value = graph.outputs[index]
    if value.is_graph_input() or value.is_initializer():
        return  # a pass-through output: the converter keeps it as it is
    stored = rounded_copy(value)
    name = value.name
    value.name = f"{name}.fp32"
    stored.name = name
    graph.outputs[index] = stored


class OrtFp16Target(Target):
    """`ort-fp16`: the fp16 artifact, the file that is deployed, in ONNX Runtime."""

    name = "ort-fp16"
    engine = "onnxruntime"
    precision = "fp16"
    description = (
        "the fp16 ONNX artifact (fp32 fallback list) in ONNX Runtime CPU with all graph optimizations; "
        "ORT's CPU provider has no fp16 kernels for most ops and computes them in fp32, so this shows "
        "fp16 weight rounding and that the file runs, not fp16 activation overflow (see cpu-fp16-emu)"
    )

    def artifact(self, ctx) -> Path:
        try:
            _check_something_converted(ctx)
            return fp16_artifact(ctx)
        except CheckError as error:
            raise _as_check_failure(error) from None

    def run(self, model_path: str | os.PathLike, feeds) -> list[dict[str, np.ndarray]]:
        try:
            return run_model(model_path, feeds, optimized=True, release=True)
        except Exception as exc:
            if not lacks_fp16_kernel(exc):
                raise
            raise CheckSkipped(f"ONNX Runtime's CPU provider cannot run the fp16 artifact ({first_line(exc)}): it has no fp16 kernel "
                               "for one of its ops (a limit of that provider, not of the file); cpu-fp16-emu checks the artifact's fp16 rounding, trt[fp16] its build") from None


def lacks_fp16_kernel(exc: Exception) -> bool:
    """Whether ONNX Runtime refused an fp16 artifact for want of an fp16 kernel (ScatterElements
    with reduction 'add': "MLFloat16 data type is not supported"; "Could not find an implementation
    for ... node"), a limit of its CPU provider, not a fault of the file: an invalid artifact
    (INVALID_GRAPH, a type mismatch) still errs."""
    text = str(exc)
    return "NOT_IMPLEMENTED" in text or "MLFloat16 data type is not supported" in text


class Fp16EmulationTarget(Target):
    """`cpu-fp16-emu`: fp16 storage emulated on the fp32 model, by the fp16 artifact's precision map."""

    name = "cpu-fp16-emu"
    engine = "onnxruntime (fp16 storage emulation)"
    precision = "fp16"
    description = (
        "emulation, not a deployment: the fp32 model with Cast(fp16)->Cast(fp32) on every tensor the "
        "fp16 artifact stores in fp16 (its fp32 fallback list left exact), in ONNX Runtime CPU without "
        "graph optimizations so the casts stay; shows fp16 storage rounding and overflow to inf; "
        "arithmetic inside each op stays fp32"
    )

    def artifact(self, ctx) -> Path:
        try:
            _check_something_converted(ctx)
            return emulation_artifact(ctx)
        except CheckError as error:
            raise _as_check_failure(error) from None

    def run(self, model_path: str | os.PathLike, feeds) -> list[dict[str, np.ndarray]]:
        return run_model(model_path, feeds, optimized=False, release=True)
