"""Which nodes of a model TensorRT's ONNX parser cannot import, from its published operator table:
the fallback where no TensorRT is installed (with one, `structure::trt_ops` and `ops` ask the real
parser, onnx2trt_check/trt/).

The table is `data/trt_onnx_ops.json`, transcribed from onnx/onnx-tensorrt `docs/operators.md`
(its `source` block names the TensorRT version and the transcription date), then corrected against
the real parser and builder on ONNX's node tests (trt/differential.py; its `corrections` block
says what was measured). No library ships this table in machine-readable form, hence the file.

Errors (the build would fail): an op the table marks unsupported, an ai.onnx op the table does not
list ("unknown", never silently passed), an op in a custom domain (it needs a TensorRT plugin), an
op the chosen flavour lacks (TensorRT-RTX ships no plugin library), and the per-node rules of
trt_op_rules.py (data types of every input and output, build-time constant inputs, output counts,
attribute values). Notes: the table's restriction text, a first input type outside the table's
"Supported Types" column, a computed input TensorRT must fold to a constant, and what the other
flavour would say.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Iterator, Mapping
from importlib import resources

import onnx

from . import trt_op_rules
from .protos import node_label, without_large_weights

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
    constant_inputs: Mapping[int, str] = dataclasses.field(default_factory=dict)
    max_outputs: int | None = None
    attributes: Mapping[str, Mapping] = dataclasses.field(default_factory=dict)
    flavours: Mapping[str, Mapping] = dataclasses.field(default_factory=dict)


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
    "custom_domain", "flavour" (always errors), "dtype", "constant_input", "outputs", "attribute"
    (errors or notes, see trt_op_rules) or "restriction" (a note). `severity` is "error" or "note";
    it defaults to "note" for "restriction" and "error" otherwise."""

    node_name: str
    op_type: str
    domain: str
    kind: str
    reason: str
    severity: str = ""

    def __post_init__(self):
        if not self.severity:
            object.__setattr__(self, "severity", "note" if self.kind == "restriction" else "error")


@functools.cache
def load_op_table() -> OpTable:
    """The packaged table, parsed once per process."""
    text = resources.files("onnx2trt_check").joinpath("data", TABLE_RESOURCE).read_text(encoding="utf-8")
    raw = json.loads(text)
    return OpTable(source=raw["source"], ops={name: _entry(name, row) for name, row in raw["ops"].items()})


def _entry(name: str, row: Mapping) -> OpEntry:
    return OpEntry(
        name,
        bool(row["supported"]),
        tuple(row["types"]),
        row["restrictions"],
        {int(index): role for index, role in row.get("constant_inputs", {}).items()},
        row.get("max_outputs"),
        row.get("attributes", {}),
        row.get("flavours", {}),
    )


FLAVOURS = ("tensorrt", "tensorrt-rtx")


def unsupported_nodes(
    model: onnx.ModelProto, *, include_notes: bool = False, inferred: onnx.ModelProto | None = None, flavour: str = "tensorrt"
) -> list[OpFinding]:
    """Every node (subgraphs and model-local function bodies included) the table says TensorRT's
    parser or builder rejects, in graph order. `include_notes` adds the notes. Defaults to errors
    only. `inferred`, the model after shape inference, saves running inference again when the
    caller has it. `flavour` ("tensorrt" or "tensorrt-rtx") picks the verdict where the two differ.
    Defaults to "tensorrt". The model is not modified."""
    table = load_op_table()
    inferred = inferred if inferred is not None else _inferred(model)
    weights = frozenset(t.name for graph in _graphs(model.graph) for t in graph.initializer)
    facts = trt_op_rules.graph_facts(inferred, list(_graphs(inferred.graph)), weights=weights)
    findings: list[OpFinding] = []
    for node in _nodes_to_check(inferred):
        found = _node_findings(node, table, facts, flavour)
        findings.extend(f for f in found if include_notes or f.severity == "error")
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


def _nodes_to_check(model: onnx.ModelProto) -> Iterator[onnx.NodeProto]:
    """Nodes of the main graph and its subgraphs, then of model-local function bodies. A call to a
    local function is not itself an op: the parser expands the function, so its body is checked."""
    local_functions = {(f.domain, f.name) for f in model.functions}
    bodies = [node for function in model.functions for node in function.node]
    nodes = [node for graph in _graphs(model.graph) for node in graph.node]
    for node in (*nodes, *bodies):
        if (node.domain, node.op_type) not in local_functions:
            yield node


def _node_findings(node: onnx.NodeProto, table: OpTable, facts, flavour: str) -> list[OpFinding]:
    name = node_label(node)

    def finding(kind: str, reason: str, severity: str = "") -> OpFinding:
        return OpFinding(name, node.op_type, node.domain, kind, reason, severity)

    if node.domain not in ONNX_DOMAINS:
        plugin = f"op in custom domain '{node.domain}': needs a TensorRT plugin registered as '{node.op_type}'"
        return [finding("custom_domain", plugin)]
    entry = table.lookup(node.op_type)
    if entry is None:
        return [finding("unknown", f"unknown to the table of {table.citation}")]
    if not entry.supported:
        return [finding("unsupported", f"not supported by {table.citation}")]
    found = [finding(*flavoured) for flavoured in _flavour_findings(entry, flavour)]
    found += [finding(kind, reason, severity) for kind, severity, reason in trt_op_rules.node_rules(node, facts, entry)]
    return found + [finding(kind, reason, severity) for kind, severity, reason in _notes(node, entry, facts.types)]


def _flavour_findings(entry: OpEntry, flavour: str) -> Iterator[tuple[str, str, str]]:
    """An error for the chosen flavour when the table says it lacks the op; a note naming any
    other flavour that does."""
    for key, override in entry.flavours.items():
        if override.get("supported", True):
            continue
        product = "TensorRT-RTX" if key == "tensorrt-rtx" else "TensorRT"
        yield ("flavour", f"{product}: {override['reason']}", "error" if key == flavour else "note")


def _notes(node: onnx.NodeProto, entry: OpEntry, types: Mapping[str, int]) -> Iterator[tuple[str, str, str]]:
    """The restriction text (a note) and the first input's type against the "Supported Types"
    column (an error: the column, corrected by the differential test, decides it)."""
    if entry.restrictions:
        yield "restriction", "note", f"restriction: {entry.restrictions}"
    type_name = _first_input_type_name(node, types)
    if type_name is not None and entry.types and type_name not in entry.types:
        yield "dtype", "error", f"input type {type_name} is not among the supported types {', '.join(entry.types)}"


def _first_input_type_name(node: onnx.NodeProto, types: Mapping[str, int]) -> str | None:
    """The table's name for the first input's element type; None when unknown or DOUBLE."""
    first = node.input[0] if node.input else ""
    return _TABLE_TYPE_NAMES.get(types.get(first)) if first else None
