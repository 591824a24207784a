"""Which nodes TensorRT cannot take, from the best source installed: the real parser of the
selected flavour, else the op table (trt_ops.py). Shared by `structure::trt_ops` and `onnx2trt-check ops`.
"""

from __future__ import annotations

import dataclasses
import os

import onnx

from .. import trt_ops
from . import flavour, isolated
from .parse import ParseResult, parse_model


@dataclasses.dataclass(frozen=True)
class OpsReport:
    """`source` names what answered ("TensorRT-RTX 1.7.1.116 ONNX parser" or the table's citation);
    `errors` are one line per rejected node, `notes` the table's notes (restrictions, types)."""

    source: str
    errors: tuple[str, ...]
    notes: tuple[str, ...]
    parse: ParseResult | None = None

    def figures(self) -> dict:
        return {"source": self.source, "errors": list(self.errors), "notes": list(self.notes)}


def check_ops(path: str | os.PathLike, proto: onnx.ModelProto, *, inferred: onnx.ModelProto | None = None,
              parse: ParseResult | None = None, choice: str | None = None) -> OpsReport:
    """The parser's verdict when a flavour is installed (`parse`, when the caller already has it),
    else the table's errors; the table's notes either way (the table is checked as the installed
    flavour, or as TensorRT 10 where none is). `choice` picks the flavour (flavour.select).
    Defaults to the run's choice."""
    try:
        chosen = flavour.select(choice)
    except flavour.TrtUnavailable:
        chosen = None
    findings = trt_ops.unsupported_nodes(proto, include_notes=True, inferred=inferred, flavour=chosen.key if chosen else "tensorrt")
    notes = tuple(_line(f) for f in findings if f.severity == "note")
    table_errors = tuple(_line(f) for f in findings if f.severity == "error")
    table = f"the op table of {trt_ops.load_op_table().citation}"
    if chosen is None:
        return OpsReport(f"{table} (no TensorRT installed: {flavour.INSTALL_HINT})", table_errors, notes)
    result = parse if parse is not None else isolated.call(parse_model, os.path.abspath(path), chosen)
    if result.needs_gpu:  # the parser gave no verdict here: the table answers
        return OpsReport(f"{table} ({chosen.label} ONNX parser needs a GPU for this model, none here)", table_errors, notes, result)
    return OpsReport(f"{chosen.label} ONNX parser", tuple(issue.line() for issue in result.issues), notes, result)


def _line(finding: trt_ops.OpFinding) -> str:
    return f"node '{finding.node_name}' ({finding.domain or 'ai.onnx'}::{finding.op_type}): {finding.reason}"
