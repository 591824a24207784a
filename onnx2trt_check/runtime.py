"""ONNX Runtime on the CPU for every part of the project that executes a graph: the reference
(graph optimizations off), the `ort` target (all on), transforms' and quantizers' own checks.

Session options are decided here, once. This module depends on nothing else of the package but
protos (a leaf), so library code (transforms, quant, bisect) can run models without importing the
target registry.
"""

from __future__ import annotations

import ctypes
import functools
import os
from collections.abc import Iterable, Mapping

import numpy as np
import onnx
import onnxruntime as ort

from onnx2trt_check.protos import raw_data_bytes

# An onnx-ir Model is accepted too (typed loosely here, so this leaf module does not import onnx-ir).
ModelSource = str | os.PathLike | bytes | onnx.ModelProto


def create_session(model: ModelSource, *, optimized: bool, threads: int = 0) -> ort.InferenceSession:
    """An ORT CPU session. `optimized=False` is the reference: no graph rewrites, so what runs is
    the graph as written. `threads=0` lets ORT choose. `model` may also be an onnx-ir Model: its
    weights are handed over as they are, with no protobuf copy of them (ir.to_proto would make one)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimized else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    options.intra_op_num_threads = threads
    # Fatal only: a run that fails raises with ORT's message, which the caller reports; ORT's own
    # error log printed it to the user's terminal a second time, also for runs tried and replaced
    # (a batched run falls back to per-feed runs; a batch probe the model itself fails).
    options.log_severity_level = 4
    # Q/DQ runs as written (dequantize, float op, quantize), never fused into ORT's int8 kernels:
    # those are ORT's per-CPU choice, and on x86 with AVX2 but no VNNI its u8s8 kernels saturate
    # int16 pair sums (measured here: a QDQ MatMul off by 4.6 on outputs of 10, 11.7 dB), which
    # is neither the model's nor TensorRT's arithmetic (int32 accumulation).
    options.add_session_config_entry("session.disable_quant_qdq", "1")
    weights = []
    if not isinstance(model, str | bytes | os.PathLike | onnx.ModelProto):
        model, weights = _ir_without_weights(model)
    elif isinstance(model, onnx.ModelProto):
        model, weights = _without_weights(model)
    if weights:
        options.add_external_initializers([name for name, _ in weights], [value for _, value in weights])
    if isinstance(model, onnx.ModelProto):
        model = model.SerializeToString()
    elif isinstance(model, os.PathLike):
        model = os.fspath(model)
    disabled = _WRONG_ON_FLOAT8 if optimized else ()
    session = ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"], disabled_optimizers=disabled)
    session._onnx2trt_check_weights = weights  # ORT reads them in place: they must live as long as the session
    return session


# ORT's rewrites that drop a Relu/Clip in front of a QuantizeLinear whose zero point is 0 and read
# every such Q as clamping at 0: true of uint8 (and of int8 at -128, where the result is the same
# either way), false of float8, which is signed: ORT 1.32 dropped the Relu before a float8e4m3fn Q
# (zoo12 fp8_qdq_op21: 4.9 dB from its float function instead of 32.7). Keeping them costs nothing
# in values where they are right.
_WRONG_ON_FLOAT8 = ("ReluQuantRewrite", "ClipQuantRewrite")

# Initializers above this size go to ORT as OrtValues instead of through protobuf: serializing a
# 100 MB model for ORT to parse again cost 0.3 s per session, handing it the arrays 0.06 s.
_HANDED_OVER_BYTES = 64 * 1024
_IN_MEMORY = "onnx2trt_check-in-memory"  # a location ORT never reads: the arrays override it
# Element types numpy holds natively (bfloat16 and the float8 types would need ml_dtypes).
_HANDED_OVER_TYPES = frozenset(
    getattr(onnx.TensorProto, t) for t in ("FLOAT", "FLOAT16", "DOUBLE", "INT8", "UINT8", "INT16", "UINT16", "INT32", "INT64", "BOOL")
)


def _without_weights(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[tuple[str, ort.OrtValue]]]:
    """The model with its large initializers as external-data stubs, and those initializers as
    OrtValues (add_external_initializers replaces the stubs by name)."""
    graph = model.graph
    inputs = {i.name for i in graph.input}
    large = [
        t for t in graph.initializer
        if t.name not in inputs and t.data_type in _HANDED_OVER_TYPES and t.HasField("raw_data") and raw_data_bytes(t) > _HANDED_OVER_BYTES
    ]
    if not large:
        return model, []
    names = {t.name for t in large}
    initializers = [t for t in graph.initializer if t.name not in names] + [_stub(t) for t in large]
    shell = onnx.helper.make_graph(graph.node, graph.name, graph.input, graph.output, initializers, value_info=graph.value_info)
    light = onnx.helper.make_model(shell, opset_imports=model.opset_import, ir_version=model.ir_version, functions=model.functions)
    weights = [(t.name, ort.OrtValue.ortvalue_from_numpy(onnx.numpy_helper.to_array(t))) for t in large]
    return light, weights


def _ir_without_weights(model) -> tuple[onnx.ModelProto, list[tuple[str, ort.OrtValue]]]:
    """An onnx-ir Model as a proto whose large initializers are external-data stubs, and those
    initializers as OrtValues over their arrays: one copy of a proto-backed weight (its raw_data),
    none of a numpy-backed one. The model is not modified: a clone (which shares the tensors) gets
    the stubs."""
    import onnx_ir as ir

    shell = model.clone()
    inputs = set(shell.graph.inputs)
    weights = []
    for name, value in shell.graph.initializers.items():
        tensor = value.const_value
        if value in inputs or tensor is None or int(tensor.dtype) not in _HANDED_OVER_TYPES or tensor.nbytes <= _HANDED_OVER_BYTES:
            continue
        if isinstance(tensor, ir.ExternalTensor):
            continue  # data in a file ORT reads itself
        weights.append((name, ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(tensor.numpy()))))
        value.const_value = ir.ExternalTensor(_IN_MEMORY, 0, tensor.nbytes, tensor.dtype, shape=tensor.shape, name=name)
    return ir.to_proto(shell), weights


def _stub(tensor: onnx.TensorProto) -> onnx.TensorProto:
    stub = onnx.TensorProto(name=tensor.name, data_type=tensor.data_type, dims=tensor.dims, data_location=onnx.TensorProto.EXTERNAL)
    stub.external_data.add(key="location", value=_IN_MEMORY)
    return stub


def output_names(session: ort.InferenceSession) -> list[str]:
    return [o.name for o in session.get_outputs()]


def run_feeds(session: ort.InferenceSession, feeds: Iterable[Mapping[str, np.ndarray]], names: list[str] | None = None) -> list[dict[str, np.ndarray]]:
    """Run every feed; one dict of named outputs per feed (`names`, defaults to every output)."""
    names = output_names(session) if names is None else names
    return [{name: _owned(value) for name, value in zip(names, session.run(names, dict(feed)))} for feed in feeds]


def _owned(value):
    """An output array that owns its memory. ORT's arrays are views into its CPU arena, and a view
    keeps the whole arena alive after the session is gone: every activation buffer of the run
    (measured: the fp16 emulation of a 512 MB MatMul held 800 MB through its four small outputs)."""
    return np.array(value) if isinstance(value, np.ndarray) and not value.flags.owndata else value


def run_model(
    model: ModelSource, feeds: Iterable[Mapping[str, np.ndarray]], *, optimized: bool = False, release: bool = False
) -> list[dict[str, np.ndarray]]:
    """One-shot convenience for tests and transforms: a session, every feed, the outputs.
    `release=True` gives the session's memory back to the system before returning
    (release_freed_memory): worth its cost (up to 0.1 s with a 100 MB model's heap) where a large
    session is freed once, as a target's, not in a loop of small ones. Defaults to False."""
    outputs = run_feeds(create_session(model, optimized=optimized), feeds)
    if release:
        release_freed_memory()
    return outputs


def release_freed_memory() -> None:
    """Give the free pages of the C heap back to the system: glibc's malloc_trim(0), where the C
    library is glibc (elsewhere nothing). A session's weights, arena and graph are freed into
    glibc's heaps, which keep the pages for later reuse, by the thread that freed them only:
    ORT's worker threads have heaps of their own. A run of the ResNet-50-sized model kept up to
    100 MB of freed pages after each session; the next model or session then came on top.
    Costs 1-100 ms, growing with the heap."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl): nothing to trim
        return None
