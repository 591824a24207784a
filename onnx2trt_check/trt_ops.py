"""Which nodes of a model TensorRT's ONNX parser cannot import, from its published operator table.

The table is `data/trt_onnx_ops.json`, transcribed from onnx/onnx-tensorrt `docs/operators.md`
(its `source` block names the TensorRT version and the transcription date). No library ships this
table in machine-readable form, hence the hand transcription; see docs/research/tensorrt.md.

Errors (the build would fail): an op the table marks unsupported, an ai.onnx op the table does not
list ("unknown", never silently passed), an op in a custom domain (it needs a TensorRT plugin).
Notes (the build may fail, depending on the node): the table's restriction text for the op, and a
first-input data type outside the table's "Supported Types" column.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Iterator, Mapping
from importlib import resources

import onnx

from .protos import without_large_weights

ONNX_DOMAINS = ("", "ai.onnx")
TABLE_RESOURCE = "trt_onnx_ops.json"

# The table's type names for ONNX element types. DOUBLE is absent on purpose: the table's header
# says TensorRT casts DOUBLE down to FLOAT, so a double tensor is not reported as a type mismatch.
_T = onnx.TensorProto
_TABLE_TYPE_NAMES = {
    _T.FLOAT: "FP32",
    _T.FLOAT16: "FP16",
    _T.BFLOAT16: "BF16",
    _T.FLOAT8E4M3FN: "FP8",
    _T.FLOAT4E2M1: "FP4",
    _T.INT4: "INT4",
    _T.INT8: "INT8",
    _T.UINT8: "UINT8",
    _T.INT32: "INT32",
    _T.INT64: "INT64",
    _T.BOOL: "BOOL",
}


@dataclasses.dataclass(frozen=True)
class OpEntry:
    """One row of the table: an ONNX op, whether the parser imports it, its types and restrictions."""

    name: str
    supported: bool
    types: tuple[str, ...]
    restrictions: str


@dataclasses.dataclass(frozen=True)
class OpTable:
    """The whole table and where it came from (`source`: repository, path, tensorrt_version, ...)."""

    source: Mapping[str, object]
    ops: Mapping[str, OpEntry]

    @property
    def tensorrt_version(self) -> str:
        return str(self.source["tensorrt_version"])

    @property
    def citation(self) -> str:
        """E.g. "TensorRT 10.15's ONNX parser (onnx/onnx-tensorrt docs/operators.md)"."""
        return f"TensorRT {self.tensorrt_version}'s ONNX parser ({self.source['repository']} {self.source['path']})"

    def lookup(self, op_type: str) -> OpEntry | None:
        return self.ops.get(op_type)


@dataclasses.dataclass(frozen=True)
class OpFinding:
    """One node TensorRT's parser may not import. `kind` is one of "unsupported", "unknown",
    "custom_domain" (severity "error") or "restriction", "dtype" (severity "note")."""

    node_name: str
    op_type: str
    domain: str
    kind: str
    reason: str

    @property
    def severity(self) -> str:
        return "note" if self.kind in ("restriction", "dtype") else "error"


@functools.cache
def load_op_table() -> OpTable:
    """The packaged table, parsed once per process."""
    text = resources.files("onnx2trt_check").joinpath("data", TABLE_RESOURCE).read_text(encoding="utf-8")
    raw = json.loads(text)
    ops = {
        name: OpEntry(name, bool(row["supported"]), tuple(row["types"]), row["restrictions"])
        for name, row in raw["ops"].items()
    }
    return OpTable(source=raw["source"], ops=ops)


def unsupported_nodes(model: onnx.ModelProto, *, include_notes: bool = False, inferred: onnx.ModelProto | None = None) -> list[OpFinding]:
    """Every node (subgraphs and model-local function bodies included) the table says TensorRT's
    parser cannot import, in graph order. `include_notes` adds the restriction and data-type notes
    of supported ops. Defaults to errors only. `inferred`, the model after shape inference, saves
    running inference again when the caller has it. The model is not modified."""
    table = load_op_table()
    inferred = inferred if inferred is not None else _inferred(model)
    types = _element_types(inferred)
    findings: list[OpFinding] = []
    for index, node in enumerate(_nodes_to_check(inferred)):
        findings.extend(_node_findings(node, index, table, types, include_notes=include_notes))
    return findings


def _inferred(model: onnx.ModelProto) -> onnx.ModelProto:
    # Shape inference fills value types so the data-type note can see them; it returns a copy. The
    # weights are set aside (typed inputs instead): it serializes the model, which fails at 2 GiB.
    try:
        return onnx.shape_inference.infer_shapes(without_large_weights(model, 1024)[0])
    except onnx.shape_inference.InferenceError:
        return model  # an unchecked model still gets its op check; only the dtype notes get thinner


def _graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """A graph and every subgraph (If/Loop/Scan bodies) inside it, depth first."""
    yield graph
    for node in graph.node:
        for attribute in node.attribute:
            for subgraph in [attribute.g] if attribute.HasField("g") else attribute.graphs:
                yield from _graphs(subgraph)


def _element_types(model: onnx.ModelProto) -> dict[str, int]:
    types: dict[str, int] = {}
    for graph in _graphs(model.graph):
        for value in (*graph.input, *graph.value_info, *graph.output):
            if value.type.HasField("tensor_type"):
                types[value.name] = value.type.tensor_type.elem_type
        types.update((t.name, t.data_type) for t in graph.initializer)
    return types


def _nodes_to_check(model: onnx.ModelProto) -> Iterator[onnx.NodeProto]:
    """Nodes of the main graph and its subgraphs, then of model-local function bodies. A call to a
    local function is not itself an op: the parser expands the function, so its body is checked."""
    local_functions = {(f.domain, f.name) for f in model.functions}
    bodies = [node for function in model.functions for node in function.node]
    nodes = [node for graph in _graphs(model.graph) for node in graph.node]
    for node in (*nodes, *bodies):
        if (node.domain, node.op_type) not in local_functions:
            yield node


def _node_findings(node: onnx.NodeProto, index: int, table: OpTable, types: dict[str, int], *, include_notes: bool) -> list[OpFinding]:
    name = node.name or f"<unnamed {node.op_type} #{index}>"

    def finding(kind: str, reason: str) -> OpFinding:
        return OpFinding(name, node.op_type, node.domain, kind, reason)

    if node.domain not in ONNX_DOMAINS:
        plugin = f"op in custom domain '{node.domain}': needs a TensorRT plugin registered as '{node.op_type}'"
        return [finding("custom_domain", plugin)]
    entry = table.lookup(node.op_type)
    if entry is None:
        return [finding("unknown", f"unknown to the table of {table.citation}")]
    if not entry.supported:
        return [finding("unsupported", f"not supported by {table.citation}")]
    if not include_notes:
        return []
    return [finding(kind, reason) for kind, reason in _notes(node, entry, types)]


def _notes(node: onnx.NodeProto, entry: OpEntry, types: dict[str, int]) -> Iterator[tuple[str, str]]:
    if entry.restrictions:
        yield "restriction", f"restriction: {entry.restrictions}"
    type_name = _first_input_type_name(node, types)
    if type_name is not None and entry.types and type_name not in entry.types:
        yield "dtype", f"input type {type_name} is not among the supported types {', '.join(entry.types)}"


def _first_input_type_name(node: onnx.NodeProto, types: dict[str, int]) -> str | None:
    """The table's name for the first input's element type; None when unknown or DOUBLE."""
    first = node.input[0] if node.input else ""
    return _TABLE_TYPE_NAMES.get(types.get(first)) if first else None
