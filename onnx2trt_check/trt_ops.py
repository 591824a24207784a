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
import onnx_ir as ir

ONNX_DOMAINS = ("", "ai.onnx")
TABLE_RESOURCE = "trt_onnx_ops.json"

# The table's type names for ONNX element types. DOUBLE is absent on purpose: the table's header
# says TensorRT casts DOUBLE down to FLOAT, so a double tensor is not reported as a type mismatch.
_TABLE_TYPE_NAMES = {
    ir.DataType.FLOAT: "FP32",
    ir.DataType.FLOAT16: "FP16",
    ir.DataType.BFLOAT16: "BF16",
    ir.DataType.FLOAT8E4M3FN: "FP8",
    ir.DataType.FLOAT4E2M1: "FP4",
    ir.DataType.INT4: "INT4",
    ir.DataType.INT8: "INT8",
    ir.DataType.UINT8: "UINT8",
    ir.DataType.INT32: "INT32",
    ir.DataType.INT64: "INT64",
    ir.DataType.BOOL: "BOOL",
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


def unsupported_nodes(model: onnx.ModelProto, *, include_notes: bool = False) -> list[OpFinding]:
    """Every node (subgraphs and model-local function bodies included) the table says TensorRT's
    parser cannot import, in graph order. `include_notes` adds the restriction and data-type notes
    of supported ops. Defaults to errors only. The model is not modified."""
    table = load_op_table()
    findings: list[OpFinding] = []
    for index, node in enumerate(_nodes_to_check(_inferred_ir(model))):
        findings.extend(_node_findings(node, index, table, include_notes=include_notes))
    return findings


def _inferred_ir(model: onnx.ModelProto) -> ir.Model:
    # Shape inference fills value types so the data-type note can see them; it returns a copy.
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except onnx.shape_inference.InferenceError:
        pass  # an unchecked model still gets its op check; only the dtype notes get thinner
    return ir.from_proto(model)


def _nodes_to_check(model: ir.Model) -> Iterator[ir.Node]:
    """Nodes of the main graph and its subgraphs, then of model-local function bodies. A call to a
    local function is not itself an op: the parser expands the function, so its body is checked."""
    local_functions = {(domain, name) for domain, name, _overload in model.functions}
    graphs = [model.graph, *model.functions.values()]
    for graph in graphs:
        for node in ir.traversal.RecursiveGraphIterator(graph):
            if (node.domain, node.op_type) not in local_functions:
                yield node


def _node_findings(node: ir.Node, index: int, table: OpTable, *, include_notes: bool) -> list[OpFinding]:
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
    return [finding(kind, reason) for kind, reason in _notes(node, entry)]


def _notes(node: ir.Node, entry: OpEntry) -> Iterator[tuple[str, str]]:
    if entry.restrictions:
        yield "restriction", f"restriction: {entry.restrictions}"
    type_name = _first_input_type_name(node)
    if type_name is not None and entry.types and type_name not in entry.types:
        yield "dtype", f"input type {type_name} is not among the supported types {', '.join(entry.types)}"


def _first_input_type_name(node: ir.Node) -> str | None:
    """The table's name for the first input's element type; None when unknown or DOUBLE."""
    first = node.inputs[0] if node.inputs else None
    if first is None or first.dtype is None:
        return None
    return _TABLE_TYPE_NAMES.get(first.dtype)
